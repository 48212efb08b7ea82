"""The seven LaMP tasks as data: templates, label sets, queries, fields and metrics.

Input templates and retrieval queries follow the official LaMP code
(``LaMP/prompts/prompts.py`` and ``prompts/utils.py``); label lists follow
``eval/evaluation.py``.

Generation caps (``max_new_tokens``, also the cap on training targets) are the PPlug
reference's ``max_new_len`` (``code/run_all_t5.sh``): 128 new tokens, 10 for LaMP-3.
``history_text`` and ``persona_query`` are what the reference embeds per task
(``embedding.py`` / ``aggr_id.py: process``, ``code/PersonalDataset_profile.py:
process_qry``). Version 2: these caps (were 4 to 64) and the PPlug fields. The ``small``
profile keeps the earlier caps (``small_max_new_tokens``, 4 to 64), a documented CPU
reduction (docs/fidelity.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from harness.api import TaskSpec
from tasks.sources import load_lamp_split

LAMP2_TAGS: tuple[str, ...] = (
    "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia",
    "dark comedy", "classic", "psychology", "fantasy", "romance", "thought-provoking",
    "social commentary", "violence", "true story",
)


# -- official query extraction (LaMP/prompts/utils.py) -------------------------------------
def quoted_strings(text: str) -> list[str]:
    """Strings between pairs of double quotes, in order (``extract_strings_between_quotes``)."""
    out: list[str] = []
    inside, current = False, ""
    for char in text:
        if char == '"':
            if inside:
                out.append(current)
                current = ""
            inside = not inside
        elif inside:
            current += char
    return out


def after(marker: str):
    """``extract_after_<marker>``: the stripped text after the first ``marker``.

    The official helpers return ``None`` when the marker is missing; we fall back to the
    whole input so a retriever always has a query.
    """

    def extract(text: str) -> str:
        idx = text.find(marker)
        return text.strip() if idx == -1 else text[idx + len(marker):].strip()

    return extract


def citation_query(text: str) -> str:
    """LaMP-1: the two candidate references joined by a space (quotes 2 and 3)."""
    quoted = quoted_strings(text)
    return f"{quoted[1]} {quoted[2]}" if len(quoted) >= 3 else text.strip()


def author_title(text: str) -> str:
    """LaMP-1's PPlug query: the author's own paper title, the first quoted string.

    The reference code reads the text between ``title "`` and the next ``",`` of the
    input (``code/PersonalDataset_profile.py: process_qry``); that is the first quoted
    string of LaMP-1's template. Without quotes the whole input is the query.
    """
    quoted = quoted_strings(text)
    return quoted[0] if quoted else text.strip()


def fields(*names: str, sep: str = " "):
    def render(item: Mapping[str, Any]) -> str:
        return sep.join(str(item[n]) for n in names)

    return render


# -- output parsing: one method-independent cleanup of raw generations ---------------------
def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def parse_label(labels: tuple[str, ...]):
    """Map a generation to the label it names, else leave it (it will score as wrong).

    An exact label wins; otherwise the label mentioned earliest (longest on ties), so
    "Tag: dark comedy." becomes "dark comedy". Scoring stays official: anything that is
    not exactly a label counts as -1.
    """

    def parse(text: str) -> str:
        line = unquote(first_line(text)).rstrip(".")
        if line in labels:
            return line
        lowered = line.lower()
        hits = []
        for label in labels:
            m = re.search(r"(?<![\w-])" + re.escape(label.lower()) + r"(?![\w-])", lowered)
            if m:
                hits.append((m.start(), -len(label), label))
        return min(hits)[2] if hits else line

    return parse


def parse_rating(text: str) -> str:
    """LaMP-3: the first rating 1..5 in the text; otherwise the text (official fallback).

    "nan" and "inf" parse as floats but crash the official scorer; they become "" so the
    official unparsable-rating rule applies instead.
    """
    line = first_line(text)
    m = re.search(r"(?<![\d.])([1-5])(?:\.0+)?(?![\d.])", line)
    if m:
        return m.group(1)
    try:
        return line if math.isfinite(float(line)) else ""
    except ValueError:
        return line


def parse_generation(text: str) -> str:
    return unquote(first_line(text))


def parse_citation(text: str) -> str:
    m = re.search(r"\[\s*([12])\s*\]", text)
    if m:
        return f"[{m.group(1)}]"
    m = re.match(r"\s*([12])\b", text)
    return f"[{m.group(1)}]" if m else first_line(text)


LAMP_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        name="lamp1", lamp_name="LaMP_1", description="Personalized citation identification",
        kind="classification", metrics=("accuracy", "f1"), item_fields=("title", "abstract"),
        input_template=(
            'For an author who has written the paper with the title "{title}", which reference '
            'is related? Just answer with [1] or [2] without explanation. [1]: "{ref1}" [2]: "{ref2}"'
        ),
        query=citation_query, corpus_text=fields("title", "abstract"),
        item_output_field="title",
        item_template="Generate a title for the following abstract of a paper: {abstract}",
        labels=("[1]", "[2]"), max_new_tokens=128, small_max_new_tokens=8, parse_output=parse_citation, prompt_style="lamp1",
        history_text=fields("title", "abstract"), persona_query=author_title, version=2,
        load_split=load_lamp_split,
    ),
    TaskSpec(
        name="lamp2", lamp_name="LaMP_2", description="Personalized movie tagging",
        kind="classification", metrics=("accuracy", "f1"), item_fields=("description", "tag"),
        input_template=(
            "Which tag does this movie relate to among the following tags? Just answer with the "
            "tag name without further explanation. tags: [" + ", ".join(LAMP2_TAGS) + "] "
            "description: {description}"
        ),
        query=after("description:"), corpus_text=fields("description"),
        item_output_field="tag", item_template=None,
        labels=LAMP2_TAGS, max_new_tokens=128, small_max_new_tokens=8, parse_output=parse_label(LAMP2_TAGS), prompt_style="lamp2",
        history_text=fields("description"), version=2,
        load_split=load_lamp_split,
    ),
    TaskSpec(
        name="lamp3", lamp_name="LaMP_3", description="Personalized product rating",
        kind="regression", metrics=("mae", "rmse"), item_fields=("text", "score"),
        input_template=(
            "What is the score of the following review on a scale of 1 to 5? just answer with "
            "1, 2, 3, 4, or 5 without further explanation. review: {text}"
        ),
        query=after("review:"), corpus_text=fields("text"),
        item_output_field="score", item_template=None,
        labels=("1", "2", "3", "4", "5"), max_new_tokens=10, small_max_new_tokens=4, parse_output=parse_rating, prompt_style="lamp3",
        history_text=fields("text"), version=2,
        load_split=load_lamp_split,
    ),
    TaskSpec(
        name="lamp4", lamp_name="LaMP_4", description="Personalized news headline generation",
        kind="generation", metrics=("rouge-1", "rouge-L"), item_fields=("text", "title"),
        input_template="Generate a headline for the following article: {text}",
        query=after("article:"), corpus_text=fields("title", "text"),
        item_output_field="title", item_template=None,
        max_new_tokens=128, small_max_new_tokens=32, parse_output=parse_generation, prompt_style="lamp4",
        history_text=fields("text", "title"), version=2,
        load_split=load_lamp_split,
    ),
    TaskSpec(
        name="lamp5", lamp_name="LaMP_5", description="Personalized scholarly title generation",
        kind="generation", metrics=("rouge-1", "rouge-L"), item_fields=("title", "abstract"),
        input_template="Generate a title for the following abstract of a paper: {abstract}",
        query=after("paper:"), corpus_text=fields("title", "abstract"),
        item_output_field="title", item_template=None,
        max_new_tokens=128, small_max_new_tokens=32, parse_output=parse_generation, prompt_style="lamp5",
        history_text=fields("title", "abstract"), version=2,
        load_split=load_lamp_split,
    ),
    TaskSpec(
        name="lamp6", lamp_name="LaMP_6", description="Personalized email subject generation (Avocado; loader only)",
        kind="generation", metrics=("rouge-1", "rouge-L"), item_fields=("text", "title"),
        input_template="Generate a subject for the following email: {text}",
        query=after(":"), corpus_text=fields("text"),
        item_output_field="title", item_template=None,
        max_new_tokens=128, small_max_new_tokens=32, parse_output=parse_generation, prompt_style="lamp6",
        history_text=fields("text"), version=2,
        load_split=load_lamp_split,
        extra={"synthetic": False, "note": "Avocado is licensed (LDC2015T03); bring your own files"},
    ),
    TaskSpec(
        name="lamp7", lamp_name="LaMP_7", description="Personalized tweet paraphrasing",
        kind="generation", metrics=("rouge-1", "rouge-L"), item_fields=("text",),
        input_template="Paraphrase the following tweet without any explanation before or after it: {text}",
        query=after(":"), corpus_text=fields("text"),
        item_output_field="text", item_template=None,
        max_new_tokens=128, small_max_new_tokens=64, parse_output=parse_generation, prompt_style="lamp7",
        history_text=fields("text"), version=2,
        load_split=load_lamp_split,
    ),
)
