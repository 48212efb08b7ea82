"""``coffee-order``: a task plugin, complete with its data, a metric and a RAG prompt.

Each customer has a usual drink and orders it most of the time; the question gives an
occasion ("on a rainy afternoon") and asks which drink this customer orders. The
customer's profile (earlier orders with their occasions) is what makes the question
answerable, which is the shape of every LaMP task: without the profile a model can
only guess among eight drinks.

What a task plugin brings, in the order a reader meets it below:

1. its own metric, registered before the ``TaskSpec`` that declares it;
2. its own RAG prompt style, so the retrieval methods can render its profile items;
3. a ``load_split`` that returns a :class:`harness.api.Split`;
4. the ``TaskSpec`` itself, named by the ``persona_bench.tasks`` entry point.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from harness.api import DataSource, Example, Split, TaskSpec
from harness.metrics import Metric, register_metric
from harness.prompting import PromptStyle
from harness.registries import register_prompt_style
from tasks.lamp import after, fields, parse_label

DRINKS: tuple[str, ...] = (
    "espresso", "americano", "latte", "cappuccino", "flat white", "mocha", "iced tea", "hot chocolate",
)
#: Drinks that are close to each other: a wrong drink from the right group earns half.
GROUPS: dict[str, str] = {
    "espresso": "black coffee", "americano": "black coffee",
    "latte": "milk coffee", "cappuccino": "milk coffee", "flat white": "milk coffee", "mocha": "milk coffee",
    "iced tea": "no coffee", "hot chocolate": "no coffee",
}
OCCASIONS: tuple[str, ...] = (
    "before the morning meeting", "on a rainy afternoon", "after lunch", "while working late",
    "with a friend on Saturday", "on the way to the gym", "after a long walk", "on a hot day",
)
USERS_PER_SPLIT = 40
PROFILE_SIZE = 10
USUAL_SHARE = 0.7  # how often a customer orders their usual drink
DATA_SEED = 0  # fixed: every run sees the same questions, whatever its own seed


# -- 1. the task's own metric ---------------------------------------------------------------------
def partial_credit(prediction: str, gold: str) -> float:
    """1 for the right drink, 0.5 for a drink of the same group, else 0 (stripped strings)."""
    if prediction == gold:
        return 1.0
    group = GROUPS.get(prediction)
    return 0.5 if group is not None and group == GROUPS.get(gold) else 0.0


register_metric(Metric("partial-credit", higher_is_better=True, aggregation="mean", per_example=partial_credit,
                       description="1 for the right drink, 0.5 for one of the same group"))


# -- 2. the task's own RAG prompt style -------------------------------------------------------------
def _before_input(items: str, text: str) -> str:
    return f"{items}. {text}"


register_prompt_style("coffee", PromptStyle(
    text_field="occasion", item='"{order}" is the order "{occasion}" ', overhead='"{order}" is the order " " ',
    assemble=_before_input,
))


# -- 3. the data --------------------------------------------------------------------------------------
def _customer(rng: random.Random, split: str, u: int) -> Example:
    usual = rng.choice(DRINKS)

    def order() -> str:
        return usual if rng.random() < USUAL_SHARE else rng.choice(DRINKS)

    profile = tuple(
        {"id": f"{split}-{u}-{j}", "occasion": rng.choice(OCCASIONS), "order": order(), "date": f"2024-01-{j + 1:02d}"}
        for j in range(PROFILE_SIZE)
    )
    occasion = rng.choice(OCCASIONS)
    return Example(id=f"{split}-{u}", input=TASK_TEMPLATE.format(occasion=occasion), profile=profile,
                   output=order(), user_id=f"{split}-u{u}")


def load_split(task: TaskSpec, data: str, split: str, *, seed: int = 0) -> Split:
    """``--data auto`` (or ``synthetic``): generated in memory; a folder: LaMP-format files."""
    if data not in ("auto", "synthetic"):
        from tasks.loader import load_split as load_files

        return load_files(task, Path(data).expanduser(), split)
    if split not in ("train", "dev", "test"):
        raise ValueError(f"{task.name} has splits train, dev and test, not {split!r}")
    rng = random.Random(f"{DATA_SEED}-{split}")
    examples = tuple(_customer(rng, split, u) for u in range(USERS_PER_SPLIT))
    payload = json.dumps([[e.id, e.input, e.output, list(e.profile)] for e in examples], sort_keys=True)
    source = DataSource(kind="synthetic", location=f"{__name__} (generated in memory)",
                        checksum=hashlib.sha256(payload.encode()).hexdigest(),
                        detail={"generator": __name__, "seed": DATA_SEED, "users": USERS_PER_SPLIT,
                                "usual_share": USUAL_SHARE})
    return Split(task=task.name, name=split, examples=examples, source=source)


# -- 4. the task ----------------------------------------------------------------------------------------
TASK_TEMPLATE = ("Which drink does this customer order? Just answer with one of [" + ", ".join(DRINKS)
                 + "] without explanation. occasion: {occasion}")

TASK = TaskSpec(
    name="coffee-order",
    lamp_name="Coffee_Order",
    description="Which drink a customer orders on an occasion, from their earlier orders (example plugin)",
    kind="classification",
    metrics=("accuracy", "f1", "partial-credit"),
    item_fields=("occasion", "order"),
    input_template=TASK_TEMPLATE,
    query=after("occasion:"),
    corpus_text=fields("occasion"),
    item_output_field="order",
    item_template=None,  # an item renders through input_template: it carries {occasion}
    labels=DRINKS,
    max_new_tokens=8,
    parse_output=parse_label(DRINKS),
    prompt_style="coffee",
    load_split=load_split,
    source="persona-bench example plugin (generated data)",
    has_synthetic_data=False,  # the built-in generator cannot make it; load_split does
    data_note="generated in memory by the plugin's own load_split: pass --data auto",
    version=1,
)
