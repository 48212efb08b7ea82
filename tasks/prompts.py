"""LaMP's official retrieval-augmented prompts, token budget included.

Each task renders its k retrieved profile items with a fixed sentence pattern, joins them
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

import logging
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.api import TaskSpec

log = logging.getLogger(__name__)

JOINER = ", and "
SEPARATOR_TOKENS = 2  # the official reserve per ", and "
START_FACTOR = 0.6


def after_title(items: str, text: str) -> str:
    """LaMP-1: splice ``", and " + items`` right after the first "title" of the input."""
    at = text.find("title")
    if at == -1:
        return text
    return text[: at + 5] + JOINER + items + text[at + 5 :]


@dataclass(frozen=True)
class PromptStyle:
    """One task's official item sentence and budget rules.

    ``item`` is the sentence written per item, with ``{<text_field>}`` standing for the
    truncated text; ``overhead`` is the sentence whose token count is reserved per item
    (or a fixed count); ``reserve`` tokens plus the tokens of ``reserve_text`` are kept
    once for the glue; ``assemble(items, input)`` builds the prompt.
    """

    text_field: str
    item: str
    overhead: str | int
    assemble: Callable[[str, str], str]
    reserve: int = 1
    reserve_text: str = ""

    def fields(self) -> set[str]:
        templates = [self.item] + ([self.overhead] if isinstance(self.overhead, str) else [])
        return {name for t in templates for _, name, _, _ in string.Formatter().parse(t) if name}


def _before(suffix: str) -> Callable[[str, str], str]:
    return lambda items, text: f"{items}{suffix}{text}"


PROMPT_STYLES: dict[str, PromptStyle] = {
    "lamp1": PromptStyle("title", '"{title}"', overhead=2, assemble=after_title, reserve=0),
    "lamp2": PromptStyle("description", 'the tag for the movie: "{description}" is "{tag}" ',
                         overhead='the tag for the movie: " " is "{tag}" ', assemble=_before(". ")),
    "lamp3": PromptStyle("text", '{score} is the score for "{text}" ',
                         overhead='{score} is the score for " " ', assemble=_before(". ")),
    "lamp4": PromptStyle("text", '"{title}" is the title for "{text}" ',
                         overhead='"{title}" is the title for " " ', assemble=_before(". ")),
    "lamp5": PromptStyle("abstract", '"{title}" is a title for "{abstract}" ',
                         overhead='"{title}" is a title " " ', assemble=_before(". Following the given patterns "),
                         reserve_text="Following the given patterns"),
    "lamp6": PromptStyle("text", '"{title}" is the title for "{text}" ',
                         overhead='"{title}" is the title for " " ', assemble=_before(". ")),
    "lamp7": PromptStyle("text", '"{text}" ', overhead='"" ',
                         assemble=_before(" are written by a person. Following the given patterns "),
                         reserve_text="are written by user. Following the given patterns"),
}


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
    if task.prompt_style not in PROMPT_STYLES:
        raise ValueError(f"task {task.name!r} has no official RAG prompt (prompt_style={task.prompt_style!r}; "
                         f"known: {', '.join(PROMPT_STYLES)})")
    style = PROMPT_STYLES[task.prompt_style]
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
