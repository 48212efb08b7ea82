"""LaMP's official retrieval-augmented prompt styles, one per task, as data.

Each entry is the sentence LaMP writes per retrieved profile item, the sentence whose
tokens it reserves per item, and how the items are put around the input, transcribed
from ``LaMP/prompts/prompts.py`` (``create_*_prompt``). Importing this module registers
them in :data:`harness.registries.PROMPT_STYLES`; the rendering and its token-budget
truncation are the engine's (:func:`harness.prompting.render_prompt`), shared with any
task plugin's own style.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.prompting import JOINER, PromptStyle
from harness.registries import PROMPT_STYLES


def after_title(items: str, text: str) -> str:
    """LaMP-1: splice ``", and " + items`` right after the first "title" of the input."""
    at = text.find("title")
    if at == -1:
        return text
    return text[: at + 5] + JOINER + items + text[at + 5 :]


def _before(suffix: str) -> Callable[[str, str], str]:
    """LaMP-2..7: the joined items, then ``suffix``, then the input."""
    return lambda items, text: f"{items}{suffix}{text}"


LAMP_PROMPT_STYLES: dict[str, PromptStyle] = {
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

for _name, _style in LAMP_PROMPT_STYLES.items():
    PROMPT_STYLES.register(_name, _style)
