"""Official LaMP scoring: hand-computed values, official quirks, and independent re-implementations."""

from __future__ import annotations

import json
import math
import random
import re

import numpy as np
import pytest

from harness.metrics import KIND_METRICS, METRIC_DIRECTION, aggregate, per_example_scores, score, score_files
from tasks.lamp import LAMP_TASKS

TASK = {t.name: t for t in LAMP_TASKS}
LAMP1, LAMP2, LAMP3, LAMP4, LAMP7 = (TASK[n] for n in ("lamp1", "lamp2", "lamp3", "lamp4", "lamp7"))


# -- classification ------------------------------------------------------------------------
def test_classification_hand_computed_with_stripping_and_out_of_label_predictions():
    # golds [1] [1] [2] [2]; preds: right, "1" (not a label -> -1), right after strip, wrong
    m = score(LAMP1, ["[1]", "1", " [2]\n", "[1]"], [" [1]", "[1]", "[2]", "[2] "])
    assert m["accuracy"] == 0.5
    # [1]: tp=1 fp=1 fn=1 -> 2/4; [2]: tp=1 fp=0 fn=1 -> 2/3
    assert m["f1"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)


def test_minus_one_prediction_is_a_false_negative_only():
    # golds [1] [2] [2]; preds "" (-1), [2], "[3]" (-1)
    # [1]: tp=0 fp=0 fn=1 -> 0; [2]: tp=1 fp=0 fn=1 -> 2/3. The -1s are no label's false positive.
    m = score(LAMP1, ["", "[2]", "[3]"], ["[1]", "[2]", "[2]"])
    assert m["accuracy"] == pytest.approx(1 / 3, abs=1e-15)
    assert m["f1"] == pytest.approx((0 + 2 / 3) / 2, abs=1e-15)


def test_macro_f1_averages_over_the_full_label_list_including_unseen_labels():
    # Only "comedy" occurs: F1 1 for it, 0 for the 14 labels never gold nor predicted.
    assert score(LAMP2, ["comedy", "comedy"], ["comedy", "comedy"]) == {"accuracy": 1.0, "f1": pytest.approx(1 / 15)}
    # comedy: tp=1 fp=1 fn=0 -> 2/3; action: tp=0 fn=1 -> 0; 13 unseen labels -> 0.
    m = score(LAMP2, ["comedy", "comedy"], ["comedy", "action"])
    assert m == {"accuracy": 0.5, "f1": pytest.approx((2 / 3) / 15, abs=1e-15)}


def test_case_punctuation_and_empty_predictions_are_wrong():
    m = score(LAMP2, ["", "Comedy", "comedy.", "  comedy  "], ["comedy"] * 4)
    assert m["accuracy"] == 0.25
    assert m["f1"] == pytest.approx((2 * 1 / (1 + 4)) / 15, abs=1e-15)  # comedy: tp=1, #pred=1, #gold=4


def test_off_label_gold_matches_minus_one_prediction_as_officially():
    # The official script maps an off-list gold to -1 too, and accuracy compares indices.
    m = score(LAMP2, ["whatever", "comedy"], ["not a tag", "comedy"])
    assert m["accuracy"] == 1.0
    assert m["f1"] == pytest.approx(1 / 15)


# -- LaMP-3 --------------------------------------------------------------------------------
def test_lamp3_parsing_and_official_fallback():
    preds = ["5", " 3.5 ", "great", "", "awful", "4", "nope", "1e0"]
    golds = ["4", "3", "2", "4", "3", " 4 ", "1", "2.0"]
    # |5-4|=1; |3.5-3|=.5; "great" vs 2 -> 5.0 (farther) -> 3; "" vs 4 -> 1.0 -> 3;
    # "awful" vs 3 -> tie, official gives 5.0 -> 2; |4-4|=0; "nope" vs 1 -> 5.0 -> 4; |1-2|=1
    errors = [1, 0.5, 3, 3, 2, 0, 4, 1]
    m = score(LAMP3, preds, golds)
    assert m["mae"] == pytest.approx(14.5 / 8, abs=1e-15)
    assert m["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 8), abs=1e-15)
    assert m["rmse"] == pytest.approx(math.sqrt(40.25 / 8), abs=1e-15)


@pytest.mark.parametrize("gold, expected", [("2", 5.0), ("1", 5.0), ("4", 1.0), ("5", 1.0), ("3", 5.0), ("2.5", 5.0), ("3.5", 1.0)])
def test_lamp3_fallback_is_the_farther_end(gold, expected):
    parts = per_example_scores(LAMP3, ["great"], [gold])
    assert parts["mae"][0] == abs(expected - float(gold))


def test_lamp3_non_finite_or_unparsable_numbers_are_refused_clearly():
    with pytest.raises(ValueError, match=r"prediction 1 \('nan'\) parses to nan"):
        score(LAMP3, ["3", "nan"], ["3", "4"])
    with pytest.raises(ValueError, match=r"prediction 0 \('-inf'\)"):
        score(LAMP3, ["-inf"], ["3"])
    with pytest.raises(ValueError, match=r"gold 0 \('four'\) is not a number"):
        score(LAMP3, ["4"], ["four"])


# -- ROUGE ---------------------------------------------------------------------------------
def test_rouge_hand_computed():
    assert score(LAMP7, ["the cat sat"], ["the cat sat"]) == {"rouge-1": 1.0, "rouge-L": 1.0}
    assert score(LAMP7, ["dog runs"], ["the cat sat"]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    assert score(LAMP7, [""], ["the cat sat"]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    assert score(LAMP7, ["  "], [""]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    # rouge_score lowercases and splits on non-alphanumerics; no stemming ("cats" != "cat").
    assert score(LAMP7, ["  The CAT, sat!\n"], ["the cat sat"]) == {"rouge-1": 1.0, "rouge-L": 1.0}
    m = score(LAMP7, ["the cats sat"], ["the cat sat"])
    assert m["rouge-1"] == pytest.approx(2 / 3) and m["rouge-L"] == pytest.approx(2 / 3)
    # pred "the cat ran home", gold "the cat sat": overlap 2, P=2/4, R=2/3 -> F=4/7; LCS 2 too.
    m = score(LAMP7, ["the cat ran home"], ["the cat sat"])
    assert m["rouge-1"] == pytest.approx(4 / 7) and m["rouge-L"] == pytest.approx(4 / 7)
    # order matters only for L: "sat cat the" -> unigram F 1; LCS 1 -> P=R=1/3 -> F 1/3.
    m = score(LAMP7, ["sat cat the"], ["the cat sat"])
    assert m["rouge-1"] == pytest.approx(1.0) and m["rouge-L"] == pytest.approx(1 / 3)
    # clipped counts: pred "a a a b" vs gold "a b b": overlap min(3,1)+min(1,2)=2 -> P=2/4,
    # R=2/3 -> 4/7; LCS("a a a b","a b b")=2 ("a b") -> 4/7. Exact mean over the three pairs.
    m = score(LAMP4, ["a a a b", "the cat sat", "dog"], ["a b b", "the cat sat", "cat"])
    assert m["rouge-1"] == pytest.approx((4 / 7 + 1 + 0) / 3, abs=1e-15)
    assert m["rouge-L"] == pytest.approx((4 / 7 + 1 + 0) / 3, abs=1e-15)


# -- independent implementations -----------------------------------------------------------
def _tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def _f(overlap: int, n_pred: int, n_gold: int) -> float:
    if not overlap:
        return 0.0
    p, r = overlap / n_pred, overlap / n_gold
    return 2 * p * r / (p + r)


def _random_classification(seed: int, n: int):
    rng = random.Random(seed)
    labels = list(LAMP2.labels)
    golds = [rng.choice(labels[:10]) for _ in range(n)]  # labels[10:] are never gold
    preds = [rng.choice(labels[:12] + ["nonsense", "", " Comedy"]) for _ in range(n)]
    return preds, golds


def test_classification_against_a_confusion_matrix():
    preds, golds = _random_classification(7, 300)
    labels = list(LAMP2.labels)
    confusion = np.zeros((16, 15))  # rows: predicted label, last row = off the list; cols: gold
    for p, g in zip(preds, golds):
        confusion[labels.index(p) if p in labels else 15, labels.index(g)] += 1
    f1s = []
    for c in range(15):
        tp = confusion[c, c]
        fp = confusion[c].sum() - tp
        fn = confusion[:, c].sum() - tp
        f1s.append(0.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    m = score(LAMP2, preds, golds)
    assert m["accuracy"] == pytest.approx(np.trace(confusion[:15]) / 300, abs=1e-12)
    assert m["f1"] == pytest.approx(np.mean(f1s), abs=1e-12)
    assert 0 < m["f1"] < m["accuracy"] < 1  # the check is not vacuous


def test_classification_matches_sklearn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    labels = list(LAMP2.labels)
    for seed in range(5):
        preds, golds = _random_classification(seed, 200)
        p = [labels.index(x.strip()) if x.strip() in labels else -1 for x in preds]
        g = [labels.index(x) for x in golds]
        m = score(LAMP2, preds, golds)
        assert m["accuracy"] == pytest.approx(metrics.accuracy_score(g, p), abs=1e-12)
        expected = metrics.f1_score(g, p, labels=list(range(15)), average="macro", zero_division=0)
        assert m["f1"] == pytest.approx(expected, abs=1e-12)
    # LaMP-1 with a -1 prediction (a three-valued y), and a single class only.
    p, g = ["[1]", "x", "[2]", "[2]"], ["[1]", "[2]", "[1]", "[2]"]
    assert score(LAMP1, p, g)["f1"] == pytest.approx(
        metrics.f1_score([0, 1, 0, 1], [0, -1, 1, 1], labels=[0, 1], average="macro", zero_division=0), abs=1e-12)
    assert score(LAMP1, ["[1]"], ["[1]"])["f1"] == pytest.approx(
        metrics.f1_score([0], [0], labels=[0, 1], average="macro", zero_division=0), abs=1e-12)


def test_regression_against_an_independent_computation():
    rng = random.Random(3)
    golds = [str(rng.randint(1, 5)) for _ in range(400)]
    preds = [rng.choice(["1", "2", "3", "4", "5", " 2.5", "x", "", "five"]) for _ in range(400)]
    errors = []
    for p, g in zip(preds, golds):
        y = int(g)
        try:
            v = float(p)
        except ValueError:
            v = 1.0 if y >= 4 else 5.0  # ratings 4, 5 are nearer 5; 1, 2 and the tie 3 get 5
        errors.append(abs(v - y))
    m = score(LAMP3, preds, golds)
    assert m["mae"] == pytest.approx(sum(errors) / 400, abs=1e-12)
    assert m["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 400), abs=1e-12)


def test_rouge_against_an_independent_implementation():
    rng = random.Random(11)
    words = "the a cat dog sat ran home fast slow big red The, CAT! dog's 42".split()
    golds = [" ".join(rng.choices(words, k=rng.randint(1, 10))) for _ in range(300)]
    preds = [" ".join(rng.choices(words, k=rng.randint(0, 10))) for _ in range(300)]
    r1, rl = [], []
    for p, g in zip(preds, golds):
        tp, tg = _tokens(p), _tokens(g)
        overlap = sum(min(tp.count(w), tg.count(w)) for w in set(tp))
        r1.append(_f(overlap, len(tp), len(tg)))
        rl.append(_f(_lcs(tp, tg), len(tp), len(tg)))
    m = score(LAMP7, preds, golds)
    assert m["rouge-1"] == pytest.approx(np.mean(r1), abs=1e-12)
    assert m["rouge-L"] == pytest.approx(np.mean(rl), abs=1e-12)
    assert m["rouge-L"] < m["rouge-1"]  # order matters for L on random text


# -- per-example parts and resampling ------------------------------------------------------
CASES = [
    (LAMP2, ["comedy", "action", "x", "classic", "", "action"], ["comedy", "classic", "action", "classic", "comedy", "action"]),
    (LAMP3, ["5", "2", "bad", "4.5", "1", ""], ["4", "2", "3", "5", "1", "4"]),
    (LAMP7, ["the cat", "a dog ran", "", "sat cat the", "red", "big red dog"],
     ["the cat sat", "a dog", "cat", "the cat sat", "red", "dog"]),
]


@pytest.mark.parametrize("task, preds, golds", CASES, ids=[c[0].name for c in CASES])
def test_aggregate_over_any_resample_equals_scoring_that_resample(task, preds, golds):
    parts = per_example_scores(task, preds, golds)
    assert aggregate(task, parts) == score(task, preds, golds)
    rng = np.random.default_rng(0)
    for idx in [np.array([0, 0, 3, 2]), [5, 1], *rng.integers(0, len(golds), size=(20, len(golds)))]:
        expected = score(task, [preds[i] for i in idx], [golds[i] for i in idx])
        got = aggregate(task, parts, idx)
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key], abs=1e-12)


@pytest.mark.parametrize("task, preds, golds", CASES, ids=[c[0].name for c in CASES])
def test_per_example_parts_are_the_metric_contributions(task, preds, golds):
    parts = per_example_scores(task, preds, golds)
    m = score(task, preds, golds)
    assert all(len(v) == len(golds) for v in parts.values())
    for metric in m:
        if metric == "f1":
            continue
        values = parts[metric]
        assert m[metric] == pytest.approx(math.sqrt(values.mean()) if metric == "rmse" else values.mean(), abs=1e-12)
    if task is LAMP2:
        assert parts["accuracy"].tolist() == [1, 0, 0, 1, 0, 1]
        assert parts["pred_index"].tolist() == [2, 3, -1, 7, -1, 3]
    if task is LAMP3:
        assert parts["mae"].tolist() == [1, 0, 2, 0.5, 0, 3]  # "bad" vs 3 -> 5; "" vs 4 -> 1
        assert parts["rmse"].tolist() == [1, 0, 4, 0.25, 0, 9]


def test_metric_keys_values_and_directions():
    examples = {"classification": ("[1]", "[1]"), "regression": ("3", "4"), "generation": ("a b", "a")}
    for task in LAMP_TASKS:
        pred, gold = examples[task.kind] if task.name != "lamp2" else ("comedy", "comedy")
        m = score(task, [pred], [gold])
        assert tuple(m) == task.metrics == KIND_METRICS[task.kind]
        assert all(type(v) is float for v in m.values())  # plain floats, JSON-ready
        assert set(m) <= set(METRIC_DIRECTION)
    assert METRIC_DIRECTION == {"accuracy": True, "f1": True, "mae": False, "rmse": False,
                                "rouge-1": True, "rouge-L": True}


def test_refusals():
    with pytest.raises(ValueError, match="no examples"):
        score(LAMP7, [], [])
    with pytest.raises(ValueError, match="2 predictions for 1 golds"):
        score(LAMP2, ["comedy", "action"], ["comedy"])
    with pytest.raises(ValueError, match="resample is empty"):
        aggregate(LAMP7, per_example_scores(LAMP7, ["a"], ["a"]), [])


# -- score_files ---------------------------------------------------------------------------
def _write(path, task, records):
    path.write_text(json.dumps({"task": task, "golds": [{"id": i, "output": o} for i, o in records]}))
    return path


def test_score_files_aligns_by_id(tmp_path):
    golds = _write(tmp_path / "golds.json", "LaMP_2", [("a", "comedy"), ("b", "action"), ("c", "classic")])
    preds = _write(tmp_path / "preds.json", "LaMP_2", [("c", "classic "), ("b", "action"), ("a", "sci-fi")])
    assert score_files(LAMP2, preds, golds) == score(LAMP2, ["sci-fi", "action", "classic"], ["comedy", "action", "classic"])
    # numbers as outputs are read as their text, like the official str(x)
    g3 = tmp_path / "g3.json"
    g3.write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": "1", "output": "4"}, {"id": "2", "output": "2"}]}))
    p3 = tmp_path / "p3.json"
    p3.write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": "2", "output": 3}, {"id": "1", "output": 4.0}]}))
    assert score_files(LAMP3, p3, g3) == {"mae": 0.5, "rmse": math.sqrt(0.5)}


def test_score_files_names_missing_and_extra_ids(tmp_path):
    golds = _write(tmp_path / "golds.json", "LaMP_2", [(f"g{i}", "comedy") for i in range(8)])
    preds = _write(tmp_path / "preds.json", "LaMP_2", [("g1", "comedy"), ("z1", "comedy")])
    with pytest.raises(ValueError) as err:
        score_files(LAMP2, preds, golds)
    msg = str(err.value)
    assert f"7 gold ids from {golds} have no prediction in {preds}: 'g0', 'g2', 'g3', 'g4', 'g5', ..." in msg
    assert f"1 ids in {preds} are not in {golds}: 'z1'" in msg


def test_score_files_task_and_format_errors(tmp_path):
    golds = _write(tmp_path / "golds.json", "LaMP_2", [("a", "comedy")])
    preds = _write(tmp_path / "preds.json", "LaMP_3", [("a", "comedy")])
    with pytest.raises(ValueError, match=r"predictions file .*preds.json: field \"task\" is 'LaMP_3', expected 'LaMP_2'"):
        score_files(LAMP2, preds, golds)
    with pytest.raises(ValueError, match=r"golds file .*golds.json: field \"task\" is 'LaMP_2', expected 'LaMP_3'"):
        score_files(LAMP3, preds, golds)
    _write(preds, "LaMP_2", [("a", "comedy"), ("a", "action")])
    with pytest.raises(ValueError, match=r"preds.json: record 1 repeats id 'a'"):
        score_files(LAMP2, preds, golds)
    preds.write_text('{"task": "LaMP_2", "golds": [{"id": "a"}]}')
    with pytest.raises(ValueError, match=r'preds.json: record 0 needs fields "id" and "output"'):
        score_files(LAMP2, preds, golds)
    preds.write_text('{"task": "LaMP_2", ')
    with pytest.raises(ValueError, match=r"preds.json: invalid JSON"):
        score_files(LAMP2, preds, golds)
    with pytest.raises(FileNotFoundError, match=r"predictions file .*nowhere.json does not exist"):
        score_files(LAMP2, tmp_path / "nowhere.json", golds)
    _write(preds, "LaMP_2", [])
    _write(golds, "LaMP_2", [])
    with pytest.raises(ValueError, match=r"golds file .*golds.json: no records to score"):
        score_files(LAMP2, preds, golds)


# -- the metric registry --------------------------------------------------------------------
def test_builtin_metrics_record_direction_and_aggregation():
    from harness.metrics import METRICS, get_metric, higher_is_better, metric_direction

    assert {name: higher_is_better(name) for name in METRIC_DIRECTION} == METRIC_DIRECTION
    assert metric_direction("mae") == "lower" and metric_direction("rouge-L") == "higher"
    assert [get_metric(m).aggregation for m in ("accuracy", "f1", "mae", "rmse")] == [
        "mean", "macro-f1", "mean", "root-mean"]
    for kind, names in KIND_METRICS.items():
        assert all(get_metric(n).kinds == (kind,) for n in names)
    assert set(KIND_METRICS["classification"]) | set(KIND_METRICS["regression"]) <= set(METRICS.names())


def test_unknown_metric_is_a_registry_error():
    from harness.metrics import metric_direction
    from harness.registry import RegistryError

    with pytest.raises(RegistryError, match=r"unknown metric 'acuracy'\. Did you mean 'accuracy'"):
        metric_direction("acuracy")


def test_metric_definitions_are_checked():
    from harness.metrics import Metric

    with pytest.raises(ValueError, match=r"metric 'bleu': a metric no official scorer produces needs per_example"):
        Metric("bleu", True)
    with pytest.raises(ValueError, match=r"macro-f1 is the official F1's aggregation"):
        Metric("f1-again", True, "macro-f1", per_example=lambda p, g: 1.0)
    with pytest.raises(ValueError, match=r"aggregation must be one of mean, root-mean, macro-f1, got 'median'"):
        Metric("m", True, "median", per_example=lambda p, g: 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"higher_is_better must be True or False"):
        Metric("m", "yes", per_example=lambda p, g: 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kinds \['ranking'\] are not task kinds"):
        Metric("m", True, kinds=("ranking",))


def _exact(prediction: str, gold: str) -> float:
    return float(prediction == gold)


def _length_gap(prediction: str, gold: str) -> float:
    return float(len(prediction) - len(gold)) ** 2  # root-mean: per-example squares, like RMSE


@pytest.fixture
def own_metrics():
    """Two plugin metrics, removed again afterwards so other tests see the built-ins only."""
    from harness.metrics import METRICS, Metric, register_metric

    exact = register_metric(Metric("exact", True, "mean", per_example=_exact))
    gap = register_metric(Metric("length-gap", False, "root-mean", per_example=_length_gap))
    yield exact, gap
    METRICS.unregister("exact")
    METRICS.unregister("length-gap")


def test_a_task_plugin_brings_its_own_metric_and_official_scores_are_unchanged(own_metrics):
    import dataclasses

    task = dataclasses.replace(LAMP7, name="own", metrics=("rouge-1", "rouge-L", "exact", "length-gap"))
    preds, golds = ["a b c", " same ", "xy"], ["a b", "same", "xyz"]
    m = score(task, preds, golds)
    assert {k: m[k] for k in ("rouge-1", "rouge-L")} == score(LAMP7, preds, golds)
    assert m["exact"] == pytest.approx(1 / 3)  # stripped before the plugin sees them
    assert m["length-gap"] == pytest.approx(math.sqrt((4 + 0 + 1) / 3))
    parts = per_example_scores(task, preds, golds)
    assert parts["exact"].tolist() == [0.0, 1.0, 0.0]
    assert aggregate(task, parts, [1, 1])["exact"] == 1.0  # resamples recompute it too
    assert aggregate(task, parts, [0, 2])["length-gap"] == pytest.approx(math.sqrt(2.5))


def test_register_metric_refuses_clashes_and_accepts_the_same_definition(own_metrics):
    from harness.metrics import METRICS, Metric, register_metric
    from harness.registry import RegistryTypeError

    register_metric(Metric("exact", True, "mean", per_example=lambda p, g: float(p == g)))  # re-imported module
    with pytest.raises(ValueError, match="metric 'exact' is already registered"):
        register_metric(Metric("exact", False, "mean", per_example=_exact))
    with pytest.raises(ValueError, match="metric 'accuracy' is already registered"):
        register_metric(Metric("accuracy", False, "mean", per_example=_exact))
    with pytest.raises(RegistryTypeError, match=r"metric 'exact-2' cannot be registered: the Metric is called 'exact'"):
        METRICS.register("exact-2", own_metrics[0])


def test_a_metric_of_another_kind_is_refused_when_scoring():
    import dataclasses

    task = dataclasses.replace(LAMP7, name="own")
    object.__setattr__(task, "metrics", ("rouge-1", "accuracy"))  # bypass the spec's own check
    with pytest.raises(ValueError, match=r"task own: metric 'accuracy' is produced only for classification"):
        score(task, ["a"], ["a"])
