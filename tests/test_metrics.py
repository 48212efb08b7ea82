"""Official LaMP scoring, with hand-computed expected values and an independent check."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from harness.metrics import METRIC_DIRECTION, aggregate, per_example_scores, score, score_files
from harness.registries import TASKS

LAMP1, LAMP2, LAMP3, LAMP7 = (TASKS.get(n) for n in ("lamp1", "lamp2", "lamp3", "lamp7"))


def test_classification_hand_computed():
    # golds: [1] [1] [2] [2]; preds: [1] (right), "1" (out of label -> wrong), [2] (right), [1] (wrong)
    m = score(LAMP1, ["[1]", "1", " [2] ", "[1]"], ["[1]", "[1]", "[2]", "[2]"])
    assert m["accuracy"] == pytest.approx(0.5)
    # class [1]: tp=1 fp=1 fn=1 -> F1 0.5; class [2]: tp=1 fp=0 fn=1 -> F1 2/3
    assert m["f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_macro_f1_averages_over_the_full_label_list():
    # Only "comedy" occurs; the other 14 LaMP-2 labels count as F1 = 0.
    m = score(LAMP2, ["comedy", "comedy"], ["comedy", "comedy"])
    assert m == {"accuracy": 1.0, "f1": pytest.approx(1 / 15)}


def test_empty_and_unknown_predictions_are_wrong():
    m = score(LAMP2, ["", "Comedy", "comedy."], ["comedy", "comedy", "comedy"])
    assert m["accuracy"] == 0.0 and m["f1"] == 0.0


def test_lamp3_parsing_and_fallback():
    preds = ["5", " 3.5 ", "great", "", "awful"]
    golds = ["4", "3", "2", "4", "3"]
    # errors: |5-4|=1, |3.5-3|=.5, "great" w/ gold 2 -> 5.0 (farther) -> 3,
    # "" w/ gold 4 -> 1.0 -> 3, "awful" w/ gold 3 -> tie -> 5.0 -> 2
    errors = np.array([1, 0.5, 3, 3, 2])
    m = score(LAMP3, preds, golds)
    assert m["mae"] == pytest.approx(errors.mean())
    assert m["rmse"] == pytest.approx(np.sqrt((errors ** 2).mean()))


def test_rouge_hand_computed():
    assert score(LAMP7, ["the cat sat"], ["the cat sat"]) == {"rouge-1": 1.0, "rouge-L": 1.0}
    assert score(LAMP7, ["dog runs"], ["the cat sat"]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    assert score(LAMP7, [""], ["the cat sat"]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    # pred "the cat ran home", gold "the cat sat": overlap 2; P=2/4, R=2/3 -> F=4/7; LCS also 2.
    m = score(LAMP7, ["the cat ran home"], ["the cat sat"])
    assert m["rouge-1"] == pytest.approx(4 / 7) and m["rouge-L"] == pytest.approx(4 / 7)
    # word order matters for L only: "sat cat the" -> unigram F 1, LCS 1 -> F 1/3
    m = score(LAMP7, ["sat cat the"], ["the cat sat"])
    assert m["rouge-1"] == pytest.approx(1.0) and m["rouge-L"] == pytest.approx(1 / 3)


def _tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def _f(overlap: float, n_pred: int, n_gold: int) -> float:
    if not overlap:
        return 0.0
    p, r = overlap / n_pred, overlap / n_gold
    return 2 * p * r / (p + r)


def test_against_an_independent_implementation_on_random_predictions():
    rng = random.Random(7)
    labels = list(LAMP2.labels)
    golds = [rng.choice(labels) for _ in range(300)]
    preds = [rng.choice(labels + ["nonsense", ""]) for _ in range(300)]
    confusion = np.zeros((16, 16))
    for p, g in zip(preds, golds):
        confusion[labels.index(p) if p in labels else 15, labels.index(g)] += 1
    f1s = []
    for c in range(15):
        tp = confusion[c, c]
        fp = confusion[c].sum() - tp
        fn = confusion[:, c].sum() - tp
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    m = score(LAMP2, preds, golds)
    assert m["accuracy"] == pytest.approx(np.trace(confusion[:15, :15]) / 300, abs=1e-12)
    assert m["f1"] == pytest.approx(np.mean(f1s), abs=1e-12)

    words = "the a cat dog sat ran home fast slow big red".split()
    gen_g = [" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(200)]
    gen_p = [" ".join(rng.choices(words, k=rng.randint(0, 8))) for _ in range(200)]
    r1, rl = [], []
    for p, g in zip(gen_p, gen_g):
        tp_, tg = _tokens(p), _tokens(g)
        overlap = sum(min(tp_.count(w), tg.count(w)) for w in set(tp_))
        r1.append(_f(overlap, len(tp_), len(tg)))
        rl.append(_f(_lcs(tp_, tg), len(tp_), len(tg)))
    m = score(LAMP7, gen_p, gen_g)
    assert m["rouge-1"] == pytest.approx(np.mean(r1), abs=1e-9)
    assert m["rouge-L"] == pytest.approx(np.mean(rl), abs=1e-9)


def test_aggregate_over_indices_equals_scoring_the_subset():
    preds, golds = ["comedy", "action", "x", "classic"], ["comedy", "classic", "action", "classic"]
    parts = per_example_scores(LAMP2, preds, golds)
    idx = np.array([0, 0, 3, 2])
    assert aggregate(LAMP2, parts, idx) == score(LAMP2, [preds[i] for i in idx], [golds[i] for i in idx])


def test_directions_and_empty_input():
    assert METRIC_DIRECTION["mae"] is False and METRIC_DIRECTION["rouge-L"] is True
    with pytest.raises(ValueError, match="no examples"):
        score(LAMP7, [], [])


def test_score_files_aligns_by_id_and_names_problems(tmp_path):
    golds = tmp_path / "golds.json"
    golds.write_text(json.dumps({"task": "LaMP_2", "golds": [{"id": "a", "output": "comedy"},
                                                             {"id": "b", "output": "action"}]}))
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"task": "LaMP_2", "golds": [{"id": "b", "output": "action"},
                                                             {"id": "a", "output": "sci-fi"}]}))
    assert score_files(LAMP2, preds, golds)["accuracy"] == 0.5
    preds.write_text(json.dumps({"task": "LaMP_2", "golds": [{"id": "b", "output": "action"},
                                                             {"id": "z", "output": "x"}]}))
    with pytest.raises(ValueError, match=r"1 gold ids have no prediction in .*preds.json \(e.g. \['a'\]\)"):
        score_files(LAMP2, preds, golds)
    preds.write_text(json.dumps({"task": "LaMP_3", "golds": []}))
    with pytest.raises(ValueError, match='field "task" is \'LaMP_3\', expected \'LaMP_2\''):
        score_files(LAMP2, preds, golds)
