"""One retrieve-and-render path: ``k`` profile items per input in LaMP's official prompt.

Every method that puts retrieved profile items into the LLM's prompt (the RAG baselines,
OPPU with ``k > 0``, PPlug+RAG, ROPG/RSPG) goes through :func:`augmented_prompts`, so
they share one retrieval call per batch, one prompt renderer
(:func:`harness.prompting.render_prompt`) and one budget rule:

    **The budget rule.** A method has one input budget ``B`` (its own ``max_input_tokens``,
    never more than the run's, see :func:`input_budget`). The prompt is rendered for
    ``B`` tokens by LaMP's official truncation of item text, and the same ``B`` is the
    LLM's input cut-off (``ctx.generate(..., max_input_tokens=B)``, or the ``loss`` of a
    trained method). LaMP does exactly this: ``create_prompt_generator(..., max_length)``
    renders for ``--max_length`` and the collator/preprocessor cuts the rendered prompt at
    the same ``--max_length`` (``LaMP/evaluate_llm.py``, ``LaMP/data/datasets.py:
    create_preprocessor``).

Each :class:`AugmentedPrompt` also says which profile items it holds (``item_ids``), so a
caller can hand them to ``ctx.record_retrieved`` for the per-example audit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.api import Example, TaskSpec
from harness.prompting import render_prompt

if TYPE_CHECKING:
    from harness.api import RunContext
    from harness.retrieval import Retriever


@dataclass(frozen=True)
class AugmentedPrompt:
    """A rendered prompt and the ids of the profile items in it, best first."""

    text: str
    item_ids: tuple[str, ...]


def item_id(item: Mapping[str, Any], index: int) -> str:
    """A profile item's id; an item without one is named by its profile position (``#3``)."""
    value = item.get("id")
    return str(value) if value is not None else f"#{index}"


def input_budget(ctx: RunContext, method_budget: int | None = None) -> int:
    """The one input budget of a method: its own, never above the run's ``max_input_tokens``.

    The run's generation setting is a ceiling for every method of the run (what the LLM
    will be given at most); a method whose reference uses a smaller budget (LaMP's RAG:
    256) renders and decodes within that smaller one.
    """
    run_budget = ctx.generation.max_input_tokens
    return run_budget if method_budget is None else min(method_budget, run_budget)


def augmented_prompts(task: TaskSpec, retriever: Retriever | None, examples: Sequence[Example], k: int,
                      tokenizer: Any, max_input_tokens: int) -> list[AugmentedPrompt]:
    """Retrieve ``k`` items from each example's own profile and render LaMP's prompt.

    ``k <= 0`` (or an empty profile) gives the plain input with no items, LaMP's k=0.
    The retriever is called once for the whole batch (a dense retriever encodes the batch
    in one pass); it only ever sees the example's own profile, never another user's.
    ``max_input_tokens`` is the budget of the rule above: pass the same number to the LLM.
    """
    if k <= 0:
        return [AugmentedPrompt(e.input, ()) for e in examples]
    if retriever is None:
        raise ValueError(f"k={k} items asked for but no retriever given")
    hits = retriever.retrieve(task, [e.input for e in examples], [list(e.profile) for e in examples], k)
    out = []
    for example, found in zip(examples, hits):
        text = render_prompt(task, example.input, [h.item for h in found], tokenizer, max_length=max_input_tokens)
        # The official renderer gives the bare input back when no item fits the budget
        # (or LaMP-1's input has no "title" to splice after): then no item is in the prompt.
        ids = tuple(item_id(h.item, h.index) for h in found) if text != example.input else ()
        out.append(AugmentedPrompt(text, ids))
    return out
