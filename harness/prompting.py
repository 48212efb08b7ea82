"""The engine that renders LaMP's official retrieval-augmented prompts, token budget included.

A task names its prompt style (``TaskSpec.prompt_style``); the style itself — the sentence
written per item and the budget reserves — is task data, registered in
:data:`harness.registries.PROMPT_STYLES` (LaMP's seven by :mod:`tasks.prompts`, others by
task plugins). This module holds what every style shares: the :class:`PromptStyle` type
and the official truncation rule, so the engine never depends on a particular task.

Each style renders its k retrieved profile items with a fixed sentence pattern, joins them
with ``", and "`` and puts them before the input (LaMP-1 splices them into the input
after the word "title"). Item text is truncated so the prompt fits ``max_length``
tokens, by the official rules (``LaMP/prompts/prompts.py``), reproduced exactly because
the truncation changes what the model reads:

* the input keeps ``min(len(tok(input)), int(factor * max_length))`` tokens of the
  budget, starting with ``factor = 0.6``; the rest goes to the items;
* one token is reserved for the joining ". " (not for LaMP-1), plus the tokens of a
  fixed suffix sentence for LaMP-5 and LaMP-7, and 2 per ", and " separator;
* each item gets an equal share, minus the tokens of its sentence pattern (counted on a
  reference spelling of that pattern, which for LaMP-5 and LaMP-7 differs slightly from
  the spelling then written — as in the official code); a share an item does not use
  rolls over to the next item;
* the item text is cut with ``tokenizer(text, max_length=share, truncation=True)`` and
  decoded with special tokens skipped, so the tokenizer's own conventions (special
  tokens counted in ``len(tokenizer(x)["input_ids"])``, lower-casing for uncased
  WordPiece, no truncation when ``max_length`` is 0) apply exactly as in LaMP;
* when a share comes out negative the tokenizer raises, and the whole rendering is
  retried with ``factor`` lowered by 0.1 (more room for items); below 0 the input is
  returned alone.

Token counts use the given tokenizer, as LaMP uses the backbone's: pass the backbone's
tokenizer (``ctx.llm().tokenizer``). Methods do not call this directly: they go through
:func:`harness.augment.augmented_prompts`, which retrieves, renders and applies the one
budget rule (the rendering budget is also the LLM's input cut-off, as in LaMP).
"""

from __future__ import annotations

import dataclasses
import logging
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.registries import PROMPT_STYLES

if TYPE_CHECKING:
    from harness.api import TaskSpec

log = logging.getLogger(__name__)

JOINER = ", and "
SEPARATOR_TOKENS = 2  # the official reserve per ", and "
START_FACTOR = 0.6


@dataclass(frozen=True, eq=False)
class PromptStyle:
    """One task's official item sentence and budget rules.

    ``item`` is the sentence written per item, with ``{<text_field>}`` standing for the
    truncated text; ``overhead`` is the sentence whose token count is reserved per item
    (or a fixed count); ``reserve`` tokens plus the tokens of ``reserve_text`` are kept
    once for the glue; ``assemble(items, input)`` builds the prompt.

    Two styles are equal when their definitions are (callables compared by where they
    are defined and what they close over): a module imported twice registers new
    function objects for the same style, which the registry must take as the same entry.
    """

    text_field: str
    item: str
    overhead: str | int
    assemble: Callable[[str, str], str]
    reserve: int = 1
    reserve_text: str = ""

    def fields(self) -> set[str]:
        """The item fields the style's templates read (each item must have them)."""
        templates = [self.item] + ([self.overhead] if isinstance(self.overhead, str) else [])
        return {name for t in templates for _, name, _, _ in string.Formatter().parse(t) if name}

    @property
    def description(self) -> str:
        """One line for ``bench list prompt-styles``: what each item becomes."""
        return f"each item as {self.item!r}"

    def definition(self) -> tuple[Any, ...]:
        """The style's fields, each callable as its defining place plus its closure values."""
        return tuple(_callable_definition(v) if callable(v) else v
                     for v in (getattr(self, f.name) for f in dataclasses.fields(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PromptStyle):
            return NotImplemented
        return self.definition() == other.definition()

    def __hash__(self) -> int:
        return hash((self.text_field, self.item, self.overhead, self.reserve, self.reserve_text))


def _callable_definition(fn: Callable[..., Any]) -> tuple[Any, ...]:
    """Where ``fn`` is defined and the values it closes over (``before(". ")`` differs from
    ``before(" are written ")``, though both are the same nested function)."""
    values = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell (a name not yet bound in the enclosing scope)
            values.append(None)
    return (getattr(fn, "__module__", None), getattr(fn, "__qualname__", repr(fn)), tuple(values))


def n_tokens(tokenizer: Any, text: str) -> int:
    """``len(tokenizer(text)["input_ids"])``: LaMP's count, special tokens included."""
    return len(tokenizer(text)["input_ids"])


def _render_items(style: PromptStyle, text: str, items: Sequence[Mapping[str, Any]], tokenizer: Any,
                  budget: int) -> str:
    """One attempt at the official item rendering within ``budget`` tokens.

    Raises whatever the tokenizer raises for a negative ``max_length`` (the caller's cue
    to give the items more room).
    """
    reserved = style.reserve + (n_tokens(tokenizer, style.reserve_text) if style.reserve_text else 0)
    share = (budget - reserved - SEPARATOR_TOKENS * (len(items) - 1)) // len(items)
    saved = 0
    parts = []
    for item in items:
        overhead = style.overhead if isinstance(style.overhead, int) else n_tokens(
            tokenizer, style.overhead.format(**item))
        ids = tokenizer(item[style.text_field], max_length=share + saved - overhead, truncation=True)["input_ids"]
        saved += share - len(ids) - overhead
        cut = tokenizer.batch_decode([ids], skip_special_tokens=True)[0]
        parts.append(style.item.format(**{**item, style.text_field: cut}))
    return style.assemble(JOINER.join(parts), text)


def render_prompt(task: TaskSpec, input: str, items: Sequence[Mapping[str, Any]], tokenizer: Any,
                  max_length: int = 512) -> str:
    """The official LaMP prompt for ``input`` with ``items`` (best first) in ``max_length`` tokens.

    With no items the input is returned unchanged (LaMP's k=0).
    """
    if not items:
        return input
    if task.prompt_style is None or task.prompt_style not in PROMPT_STYLES:
        raise ValueError(f"task {task.name!r} has no official RAG prompt (prompt_style={task.prompt_style!r}; "
                         f"known: {', '.join(PROMPT_STYLES)})")
    style: PromptStyle = PROMPT_STYLES.get(task.prompt_style)
    for i, item in enumerate(items):
        missing = style.fields() - set(item)
        if missing:
            raise KeyError(f"{task.name} prompt: profile item {i} (id {item.get('id')!r}) lacks {sorted(missing)}")
    input_tokens = n_tokens(tokenizer, input)
    factor = START_FACTOR
    while factor >= 0:
        budget = max_length - min(input_tokens, int(factor * max_length))
        try:
            return _render_items(style, input, items, tokenizer, budget)
        except Exception:  # noqa: BLE001 - the official loop retries on any tokenizer error
            factor -= 0.1
    log.warning("%s: %d items cannot fit in %d tokens; using the input alone", task.name, len(items), max_length)
    return input
