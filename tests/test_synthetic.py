"""The synthetic generator: official schema, determinism, and a planted per-user signal."""

from __future__ import annotations

import statistics
from collections import Counter

import pytest

from harness.metrics import score
from harness.registries import TASKS
from tasks.loader import load_split
from tasks.synthetic import SIGNAL_DOC, generate

SMALL = {"train": 20, "dev": 150, "test": 5}
ALL = sorted(SIGNAL_DOC)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = {}
    for name in ALL:
        folder = tmp_path_factory.mktemp(name)
        generate(TASKS.get(name), folder, seed=3, n_users=SMALL, profile_size=(10, 30))
        out[name] = folder
    return out


@pytest.mark.parametrize("name", ALL)
def test_official_schema_templates_and_ids(data, name):
    task = TASKS.get(name)
    dev = load_split(task, data[name], "dev")  # the validating loader accepts it
    assert len(dev.examples) == SMALL["dev"]
    assert len({e.id for e in dev.examples}) == len(dev.examples)
    prefix = task.input_template.split("{")[0]
    for e in dev.examples:
        assert e.input.startswith(prefix) and e.output and e.user_id
        assert 1 <= len(e.profile) <= 30
        assert all(set(task.item_fields) <= set(item) and "date" in item for item in e.profile)
        assert task.query(e.input) and task.query(e.input) != e.input
        if task.labels:
            assert e.output in task.labels
    assert load_split(task, data[name], "test").examples[0].output is None


def test_deterministic_by_seed(tmp_path):
    task = TASKS.get("lamp7")
    a, b, c = (generate(task, tmp_path / d, seed=s, n_users=SMALL) for d, s in (("a", 1), ("b", 1), ("c", 2)))
    for f in ("train_questions.json", "dev_questions.json", "dev_outputs.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
        assert (a / f).read_bytes() != (c / f).read_bytes()


def test_time_based_users_share_ids_and_user_based_do_not(tmp_path):
    task = TASKS.get("lamp2")
    timed = load_split(task, generate(task, tmp_path / "t", n_users=SMALL), "dev")
    assert max(Counter(e.user_id for e in timed.examples).values()) > 1
    users = load_split(task, generate(task, tmp_path / "u", n_users=SMALL, time_based=False), "dev")
    assert all(e.user_id is None for e in users.examples)


def test_lamp2_profile_majority_beats_global_majority(data):
    task = TASKS.get("lamp2")
    dev = load_split(task, data["lamp2"], "dev").examples
    golds = [e.output for e in dev]
    personal = [Counter(i["tag"] for i in e.profile).most_common(1)[0][0] for e in dev]
    overall = [Counter(golds).most_common(1)[0][0]] * len(dev)
    assert score(task, personal, golds)["accuracy"] > score(task, overall, golds)["accuracy"] + 0.3


def test_lamp3_rater_bias_is_in_the_profile(data):
    task = TASKS.get("lamp3")
    dev = load_split(task, data["lamp3"], "dev").examples
    golds = [e.output for e in dev]
    sentiment = {p: s for s, ps in __import__("tasks.synthetic", fromlist=["x"]).SENTIMENT_PHRASES.items() for p in ps}

    def text_sentiment(text: str) -> int:
        return next(s for p, s in sentiment.items() if p.capitalize() in text)

    base = [str(text_sentiment(e.input)) for e in dev]

    def personal(e) -> str:
        bias = statistics.mean(int(i["score"]) - text_sentiment(i["text"]) for i in e.profile)
        return str(min(5, max(1, text_sentiment(e.input) + round(bias))))

    assert score(task, [personal(e) for e in dev], golds)["mae"] < score(task, base, golds)["mae"] - 0.3


@pytest.mark.parametrize("name", ["lamp4", "lamp7"])
def test_style_markers_appear_in_profile_and_gold(data, name):
    task = TASKS.get(name)
    dev = load_split(task, data[name], "dev").examples
    field = task.item_output_field
    # The last word of the gold (a style marker or content) recurs in the user's own items
    # far more often than in another user's items.
    own = sum(any(e.output.split()[-1] in str(i[field]) for i in e.profile) for e in dev)
    other = sum(any(e.output.split()[-1] in str(i[field]) for i in dev[(k + 7) % len(dev)].profile)
                for k, e in enumerate(dev) if dev[(k + 7) % len(dev)].user_id != e.user_id)
    assert own > other
