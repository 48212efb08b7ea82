"""The synthetic generator: official files, templates, ids, determinism, and the planted signal.

The signal tests are black-box where they can be: a simple baseline that reads the user's
profile must beat the same baseline without it, scored with the official metrics, on the
files as written. Only lamp3's exact mechanism (score = text sentiment + a constant bias)
is checked with the generator's own sentiment phrases.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import statistics
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from harness.api import Example
from harness.metrics import score
from harness.registries import TASKS
from tasks import synthetic, synthetic_words
from tasks.lamp import LAMP2_TAGS, quoted_strings
from tasks.loader import load_split

TASK_NAMES = tuple(f"lamp{k}" for k in range(1, 8))
SIZES = {"train": 30, "dev": 200, "test": 5}
PROFILE = (10, 30)
FILES = ("dev_outputs.json", "dev_questions.json", "test_questions.json", "train_outputs.json",
         "train_questions.json")
TOKEN = re.compile(r"[a-z0-9]+")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: synthetic.generate(TASKS.get(name), tmp_path_factory.mktemp(name), seed=7, n_users=SIZES,
                                     profile_size=PROFILE) for name in TASK_NAMES}


def read(folder: Path, split: str, kind: str) -> Any:
    return json.loads((folder / f"{split}_{kind}.json").read_text(encoding="utf-8"))


def dev_examples(folders: dict[str, Path], name: str) -> tuple[Example, ...]:
    return load_split(TASKS.get(name), folders[name], "dev").examples


def tokens(text: str) -> set[str]:
    return set(TOKEN.findall(text.lower()))


def template_fields(template: str, text: str) -> dict[str, str]:
    """Invert ``template.format(**fields)``; fails the test when ``text`` does not fit."""
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
    match = re.fullmatch(pattern, text, flags=re.S)
    assert match, f"input does not follow the template: {text[:120]!r}"
    return match.groupdict()


# -- files, schema, templates, ids ----------------------------------------------------------
@pytest.mark.parametrize("name", TASK_NAMES)
def test_files_follow_the_official_schema(folders, name):
    task, folder = TASKS.get(name), folders[name]
    assert sorted(p.name for p in folder.iterdir()) == list(FILES)  # no test outputs, no temp files left
    for split in synthetic.SPLITS:
        questions = read(folder, split, "questions")
        assert len(questions) == SIZES[split]
        for q in questions:
            assert set(q) == {"id", "input", "profile", "user_id"}
            assert all(isinstance(q[k], str) and q[k] for k in ("id", "input", "user_id"))
            assert PROFILE[0] <= len(q["profile"]) <= PROFILE[1]
            for item in q["profile"]:
                assert set(item) == {"id", "date", *task.item_fields}
                assert all(isinstance(v, str) and v for v in item.values())
                assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", item["date"]) and date.fromisoformat(item["date"])
                if name == "lamp3":
                    assert item["score"] in task.labels
        assert len(load_split(task, folder, split).examples) == SIZES[split]  # the validating loader agrees
        if split == "test":
            continue
        outputs = read(folder, split, "outputs")
        assert set(outputs) == {"task", "golds"} and outputs["task"] == task.lamp_name
        assert [g["id"] for g in outputs["golds"]] == [q["id"] for q in questions]  # one gold each, same order
        assert all(set(g) == {"id", "output"} and isinstance(g["output"], str) and g["output"]
                   for g in outputs["golds"])
        if task.labels:
            assert {g["output"] for g in outputs["golds"]} <= set(task.labels)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_inputs_use_the_official_template_and_query_extraction(folders, name):
    task = TASKS.get(name)
    for q in read(folders[name], "dev", "questions"):
        fields = template_fields(task.input_template, q["input"])
        assert task.input_template.format(**fields) == q["input"]
        expected = f"{fields['ref1']} {fields['ref2']}" if name == "lamp1" else next(iter(fields.values())).strip()
        assert task.query(q["input"]) == expected


def test_classification_golds_cover_the_label_set(folders):
    lamp1 = Counter(g["output"] for g in read(folders["lamp1"], "dev", "outputs")["golds"])
    assert 0.35 <= lamp1["[1]"] / SIZES["dev"] <= 0.65  # the related reference's position is random
    lamp2 = {g["output"] for g in read(folders["lamp2"], "dev", "outputs")["golds"]}
    assert len(lamp2) >= 12
    lamp3 = {i["score"] for q in read(folders["lamp3"], "dev", "questions") for i in q["profile"]}
    assert lamp3 == {"1", "2", "3", "4", "5"}


@pytest.mark.parametrize("name", TASK_NAMES)
def test_ids_are_unique_and_a_shared_item_keeps_its_id(folders, name):
    question_ids: list[str] = []
    items: dict[str, dict[str, str]] = {}
    for split in synthetic.SPLITS:
        for q in read(folders[name], split, "questions"):
            question_ids.append(q["id"])
            ids = [i["id"] for i in q["profile"]]
            assert len(set(ids)) == len(ids)
            for item in q["profile"]:
                assert items.setdefault(item["id"], item) == item  # one id, one item
    assert len(set(question_ids)) == len(question_ids)
    assert not set(question_ids) & set(items)


def test_time_based_users_ask_several_questions_along_one_timeline(folders):
    task = TASKS.get("lamp4")
    golds = {g["id"]: g["output"] for g in read(folders["lamp4"], "dev", "outputs")["golds"]}
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for q in read(folders["lamp4"], "dev", "questions"):
        by_user[q["user_id"]].append(q)
    assert max(len(qs) for qs in by_user.values()) == 3
    pairs = [pair for qs in by_user.values() for pair in zip(qs, qs[1:])]
    assert len(pairs) >= 20
    for earlier, later in pairs:
        later_items = {i["id"]: i for i in later["profile"]}
        assert {i["id"] for i in earlier["profile"]} < set(later_items)
        # The earlier question, with its gold, is now part of the user's history, dated
        # after everything the earlier question could see.
        text = template_fields(task.input_template, earlier["input"])["text"]
        own = [i for i in later_items.values() if i["text"] == text and i["title"] == golds[earlier["id"]]]
        assert len(own) == 1
        assert all(i["date"] <= own[0]["date"] for i in earlier["profile"])


def test_user_based_questions_each_have_their_own_user(tmp_path):
    task = TASKS.get("lamp2")
    folder = synthetic.generate(task, tmp_path, n_users={"train": 4, "dev": 25, "test": 2}, profile_size=(5, 8),
                                time_based=False)
    questions = read(folder, "dev", "questions")
    assert all(set(q) == {"id", "input", "profile"} for q in questions)
    profiles = [{i["id"] for i in q["profile"]} for q in questions]
    assert all(a.isdisjoint(b) for a, b in itertools.combinations(profiles, 2))
    assert all(e.user_id is None for e in load_split(task, folder, "dev").examples)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_same_seed_same_bytes_other_seed_other_data(tmp_path, name):
    task = TASKS.get(name)
    kwargs: dict[str, Any] = {"n_users": {"train": 6, "dev": 6, "test": 3}, "profile_size": (4, 9)}
    a = synthetic.generate(task, tmp_path / "a", seed=1, **kwargs)
    b = synthetic.generate(task, tmp_path / "b", seed=1, **kwargs)
    c = synthetic.generate(task, tmp_path / "c", seed=2, **kwargs)
    for file in FILES:
        assert (a / file).read_bytes() == (b / file).read_bytes()
    for file in ("train_questions.json", "dev_questions.json", "test_questions.json"):
        assert (a / file).read_bytes() != (c / file).read_bytes()


def test_default_sizes_are_big_enough_to_learn_from():
    # Issue 14.1: LaMP-like train splits for trained methods, dev splits that separate methods.
    assert synthetic.DEFAULT_SIZES["train"] >= 2000 and synthetic.DEFAULT_SIZES["dev"] >= 300
    low, high = synthetic.DEFAULT_PROFILE_SIZE
    assert 10 <= low <= high


def test_missing_splits_take_the_defaults(tmp_path, monkeypatch):
    # The real defaults take seconds to write; the rule is the same at any size.
    monkeypatch.setattr(synthetic, "DEFAULT_SIZES", {"train": 7, "dev": 5, "test": 3})
    folder = synthetic.generate(TASKS.get("lamp7"), tmp_path, n_users={"dev": 4})
    low, high = synthetic.DEFAULT_PROFILE_SIZE
    for split, count in {"train": 7, "dev": 4, "test": 3}.items():
        questions = read(folder, split, "questions")
        assert len(questions) == count
        assert all(low <= len(q["profile"]) <= high for q in questions)
    assert set(synthetic.SIGNAL_DOC) == set(TASK_NAMES) and all(synthetic.SIGNAL_DOC.values())
    assert all(name in synthetic.__doc__ for name in TASK_NAMES)


def test_a_new_generator_version_never_reuses_an_old_cache(monkeypatch):
    from tasks.sources import synthetic_dir

    task = TASKS.get("lamp3")
    monkeypatch.setattr(synthetic, "DEFAULT_SIZES", {"train": 3, "dev": 3, "test": 1})
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", "test-old")
    old = synthetic_dir(task, 5)
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", "test-new")
    new = synthetic_dir(task, 5)
    assert old != new and json.loads((new / "synthetic.json").read_text())["version"] == "test-new"
    # The version also seeds every user, so the new files are new data, not a copy.
    assert (old / "dev_questions.json").read_bytes() != (new / "dev_questions.json").read_bytes()
    assert synthetic_dir(task, 5) == new  # and the new cache is reused


def test_the_engine_holds_no_word_lists():
    """Vocabulary lives in tasks.synthetic_words; the engine keeps behaviour only (issue 13.7)."""
    def strings(value: Any) -> bool:
        return isinstance(value, str) or isinstance(value, tuple) and all(strings(v) for v in value)

    def vocabulary(value: Any) -> bool:
        entries = tuple(value.values()) if isinstance(value, dict) else value
        return isinstance(entries, tuple) and len(entries) >= 5 and all(strings(v) for v in entries)

    allowed = {"SIGNAL_DOC", "LAMP2_TAGS"}  # the docs of the signal; the task's label set (from tasks.lamp)
    lists = [name for name, value in vars(synthetic).items()
             if vocabulary(value) and name not in allowed and not name.startswith("__")]
    assert lists == []
    assert vocabulary(synthetic_words.NAMES) and vocabulary(synthetic_words.TAG_CUES)  # the check can see them
    assert synthetic_words.TAG_CUES.keys() == set(LAMP2_TAGS)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no synthetic generator"):
        synthetic.generate(dataclasses.replace(TASKS.get("lamp2"), name="mine"), tmp_path)
    with pytest.raises(ValueError, match="profile_size"):
        synthetic.generate(TASKS.get("lamp2"), tmp_path, profile_size=(9, 3))
    with pytest.raises(ValueError, match="n_users"):
        synthetic.generate(TASKS.get("lamp2"), tmp_path, n_users={"validation": 3})
    assert not list(tmp_path.iterdir())


# -- the planted signal ---------------------------------------------------------------------
def test_lamp1_profile_picks_the_related_reference_the_title_does_not(folders):
    task, examples = TASKS.get("lamp1"), dev_examples(folders, "lamp1")

    def guess(e: Example, use_profile: bool) -> str:
        title, ref1, ref2 = quoted_strings(e.input)[:3]
        only1, only2 = tokens(ref1) - tokens(ref2), tokens(ref2) - tokens(ref1)
        if use_profile:  # how many of the author's papers use each reference's distinctive words
            seen = Counter(w for i in e.profile for w in tokens(f"{i['title']} {i['abstract']}"))
            score1, score2 = sum(seen[w] for w in only1), sum(seen[w] for w in only2)
        else:
            score1, score2 = len(only1 & tokens(title)), len(only2 & tokens(title))
        return "[2]" if score2 > score1 else "[1]"

    golds = [e.output for e in examples]
    personal = score(task, [guess(e, True) for e in examples], golds)["accuracy"]
    title_only = score(task, [guess(e, False) for e in examples], golds)["accuracy"]
    assert personal >= 0.85 and personal >= title_only + 0.2, (personal, title_only)


def test_lamp2_users_most_frequent_tag_beats_the_global_one(folders):
    task, examples = TASKS.get("lamp2"), dev_examples(folders, "lamp2")
    train = load_split(task, folders["lamp2"], "train").examples
    overall = Counter(i["tag"] for e in train for i in e.profile).most_common(1)[0][0]
    golds = [e.output for e in examples]
    personal = score(task, [Counter(i["tag"] for i in e.profile).most_common(1)[0][0] for e in examples], golds)
    global_ = score(task, [overall] * len(examples), golds)
    assert personal["accuracy"] >= global_["accuracy"] + 0.4, (personal, global_)
    assert personal["f1"] > global_["f1"] + 0.3


def test_lamp3_users_offset_beats_the_global_mean(folders):
    task, examples = TASKS.get("lamp3"), dev_examples(folders, "lamp3")
    train = load_split(task, folders["lamp3"], "train").examples
    global_mean = statistics.mean(int(e.output) for e in train)
    profile_mean = statistics.mean(int(i["score"]) for e in train for i in e.profile)
    golds = [e.output for e in examples]
    personal = [str(global_mean + statistics.mean(int(i["score"]) for i in e.profile) - profile_mean)
                for e in examples]
    plain = score(task, [str(global_mean)] * len(examples), golds)["mae"]
    offset = score(task, personal, golds)["mae"]
    assert offset <= plain - 0.1, (offset, plain)


def test_lamp3_score_is_text_sentiment_plus_a_constant_rater_bias(folders):
    task, examples = TASKS.get("lamp3"), dev_examples(folders, "lamp3")
    openings = [(re.compile(".+?".join(map(re.escape, o.split("{product}")))), stars)
                for stars, (texts, _, _) in synthetic_words.SENTIMENT.items() for o in texts]

    def stars(text: str) -> int:
        return next(s for pattern, s in openings if pattern.match(text))

    def with_bias(e: Example) -> str:
        bias = Counter(int(i["score"]) - stars(i["text"]) for i in e.profile).most_common(1)[0][0]
        return str(min(5, max(1, stars(task.query(e.input)) + bias)))

    golds = [e.output for e in examples]
    text_only = score(task, [str(stars(task.query(e.input))) for e in examples], golds)["mae"]
    personal = score(task, [with_bias(e) for e in examples], golds)["mae"]
    assert personal <= 0.2 and personal <= text_only - 0.3, (personal, text_only)


def signatures(examples: tuple[Example, ...], field: str) -> list[set[str]]:
    """Per question: words in >= 80% of the user's profile outputs but <= 25% of everyone's."""
    everyone: Counter[str] = Counter()
    for e in examples:
        for item in e.profile:
            everyone.update(tokens(item[field]))
    total = sum(len(e.profile) for e in examples)
    out = []
    for e in examples:
        own = Counter(w for item in e.profile for w in tokens(item[field]))
        out.append({w for w, n in own.items() if n >= 0.8 * len(e.profile) and everyone[w] <= 0.25 * total})
    return out


@pytest.mark.parametrize("name", ["lamp4", "lamp5", "lamp6", "lamp7"])
def test_style_markers_are_in_profile_and_gold_but_not_in_the_input(folders, name):
    task, examples = TASKS.get(name), dev_examples(folders, name)
    marks = signatures(examples, task.item_output_field)
    assert sum(bool(m) for m in marks) >= 0.95 * len(examples)
    # The user's marker is in the gold, and cannot be copied from the input.
    assert sum(bool((m & tokens(e.output)) - tokens(e.input)) for e, m in zip(examples, marks)) >= 0.9 * len(examples)
    # Knowing it pays: the input's text plus the user's markers beats the text alone.
    golds = [e.output for e in examples]
    plain = score(task, [task.query(e.input) for e in examples], golds)["rouge-1"]
    styled = score(task, [f"{task.query(e.input)} {' '.join(sorted(m))}" for e, m in zip(examples, marks)],
                   golds)["rouge-1"]
    assert styled >= plain + 0.04, (styled, plain)
