"""Does a method's LaMP-3 answer follow the user's planted rating bias? (synthetic data only)

The synthetic LaMP-3 generator (tasks/synthetic.py, ``_Reviews``) scores a review as its
text's sentiment (the star level whose opening sentence it uses) plus the rater's bias
(-1 harsh, 0 neutral, +1 generous), clipped to 1..5. The bias is never written down, but
each user's history reveals it: the mean of ``score - stars`` over their earlier reviews.
This probe recovers it per dev question and reports, per bias group, each run's mean
signed error (prediction - gold) and MAE. A method that personalizes has a mean signed
error near 0 in every group; one that only learned the task answers the population's
rating, and so errs by about -bias (too high for harsh raters, too low for generous ones).

Linear probes say where the signal is lost (ridge regressions, 5-fold cross-validated
R^2, the penalty chosen by an inner cross-validation): ``--history-text reference fields`` asks (1) whether the frozen history encoder's
embedding of one item predicts that item's ``score - stars`` and (2) whether the mean of
a user's item embeddings predicts the user's bias (is the signal in what PPlug
aggregates?); ``--persona RUN_DIR ...`` asks (3) whether a trained PPlug run's persona
token predicts its user's bias, and so does its attention-weighted history (Proj's
input): is the signal lost in the aggregation or in the trained projection?

    python scripts/lamp3_bias_probe.py RUN_DIR ... [--history-text reference fields]
        [--persona PPLUG_RUN ...] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from harness.registries import TASKS
from harness.report.runs import read_run
from tasks.synthetic_words import SENTIMENT

OPENINGS = [(re.compile(re.escape(opening).replace(re.escape("{product}"), ".+?")), stars)
            for stars, (openings, _, _) in SENTIMENT.items() for opening in openings]


def stars_of(text: str) -> int | None:
    """The star level whose opening sentence (with any product) the review text starts with."""
    for pattern, stars in OPENINGS:
        if pattern.match(text):
            return stars
    return None


def user_bias(profile) -> int:
    """The rater's bias, rounded: mean of score - stars over the history (clipping ignored)."""
    diffs = [int(item["score"]) - s for item in profile if (s := stars_of(item["text"])) is not None]
    if not diffs:
        return 0
    return max(-1, min(1, round(sum(diffs) / len(diffs))))


def probe(runs: list[Path]) -> str:
    task = TASKS.get("lamp3")
    dev = {e.id: e for e in task.load_split(task, "synthetic", "dev", seed=0).examples}
    bias = {qid: user_bias(e.profile) for qid, e in dev.items()}
    groups = sorted(set(bias.values()))
    lines = ["| run | " + " | ".join(f"bias {g:+d}: n, mean error, MAE" for g in groups)
             + " | bias spread (harsh − generous mean error) |",
             "|---|" + "---|" * (len(groups) + 1)]
    for run in runs:
        cell = read_run(run)
        label = f"{cell.method} ({run.name}, seed {cell.seed})" + "".join(
            f" {k}={v}" for k, v in sorted(cell.params.items())
            if k in ("history_text", "soft_scale", "head_lr", "center_history", "max_train_examples", "epochs",
                     "n_persona_tokens", "lr", "center_persona", "backbone_lora_rank", "task_lr"))
        errors: dict[int, list[float]] = defaultdict(list)
        for record in cell.records.values():
            try:
                pred = float(record["raw"].strip())
            except ValueError:
                continue
            errors[bias[record["id"]]].append(pred - float(record["gold"]))
        cells = []
        for g in groups:
            e = errors[g]
            cells.append(f"{len(e)}, {sum(e) / len(e):+.2f}, {sum(abs(x) for x in e) / len(e):.2f}" if e else "–")
        means = {g: sum(errors[g]) / len(errors[g]) for g in groups if errors[g]}
        # A method that ignores the bias errs by about -bias: spread 2; a fully personalized one: 0.
        spread = f"{means[min(groups)] - means[max(groups)]:.2f}" if len(means) == len(groups) else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {spread} |")
    return "\n".join(lines)


ALPHAS = (1e-3, 1e-2, 1e-1, 1.0)  # ridge penalties (times the train size) tried per fold


def _ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(mu, sd, w, y_mean)`` of a ridge regression on standardised features."""
    mu, sd = x.mean(0), x.std(0) + 1e-8
    a = (x - mu) / sd
    w = np.linalg.solve(a.T @ a + alpha * len(y) * np.eye(a.shape[1]), a.T @ (y - y.mean()))
    return mu, sd, w, float(y.mean())


def _ridge_predict(model: tuple[np.ndarray, np.ndarray, np.ndarray, float], x: np.ndarray) -> np.ndarray:
    mu, sd, w, y_mean = model
    return ((x - mu) / sd) @ w + y_mean


def _folds(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    order = np.random.default_rng(seed).permutation(n)
    return [(np.setdiff1d(order, order[k::folds]), order[k::folds]) for k in range(folds)]


def ridge_r2(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """``(R^2, median chosen alpha)``: 5-fold cross-validated R^2 of a ridge regression whose
    penalty is chosen per outer fold by an inner 5-fold CV on that fold's train part.

    The penalty matters: a signal carried by a low-variance direction (a per-user deviation
    on top of a large shared component, as in a trained persona token) is shrunk away by a
    strong fixed penalty, which would wrongly report it absent.
    """
    pred = np.zeros_like(y, dtype=np.float64)
    chosen = []
    for train, test in _folds(len(y), folds, seed):
        def inner_error(alpha: float, train: np.ndarray = train) -> float:
            return sum(float(((_ridge_predict(_ridge_fit(x[train][a], y[train][a], alpha), x[train][b])
                               - y[train][b]) ** 2).sum()) for a, b in _folds(len(train), folds, seed + 1))
        alpha = min(ALPHAS, key=inner_error)
        chosen.append(alpha)
        pred[test] = _ridge_predict(_ridge_fit(x[train], y[train], alpha), x[test])
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()), float(np.median(chosen))


def input_probes(how: str, encoder_name: str = "minilm-l6") -> tuple[str, np.ndarray, np.ndarray]:
    """Probes (1) and (2) for one ``history_text``: is the bias in what PPlug aggregates?

    Returns the sentence, and per dev question its user's bias and the mean of that
    user's normalised item embeddings (the input of a uniform aggregation).
    """
    from harness.embedding_cache import shared_cache
    from harness.encoders import load_encoder
    from methods.pplug import item_text

    task = TASKS.get("lamp3")
    dev = task.load_split(task, "synthetic", "dev", seed=0).examples
    items = {(item["text"], item["score"]) for e in dev for item in e.profile}
    items = [(t, sc, st) for t, sc in sorted(items) if (st := stars_of(t)) is not None]
    texts = [item_text(task, {"text": t, "score": sc}, how) for t, sc, _ in items]
    vectors = shared_cache(load_encoder(encoder_name)).embed(texts, normalize=True)
    item_r2, item_alpha = ridge_r2(vectors, np.array([int(sc) - st for _, sc, st in items], dtype=np.float64))
    index = {text: i for i, text in enumerate(texts)}
    means = np.stack([np.mean([vectors[index[t]] for item in e.profile
                               if (t := item_text(task, item, how)) in index] or [np.zeros(vectors.shape[1])], axis=0)
                      for e in dev])
    biases = np.array([user_bias(e.profile) for e in dev], dtype=np.float64)
    mean_r2, mean_alpha = ridge_r2(means, biases)
    sentence = (f"history_text={how}: one item's embedding -> its score - stars, R^2 = {item_r2:.2f} "
                f"(alpha {item_alpha:g}; {len(items)} distinct dev history items); the mean of a user's item "
                f"embeddings -> the user's bias, R^2 = {mean_r2:.2f} (alpha {mean_alpha:g}; {len(dev)} dev questions).")
    return sentence, biases, means


def persona_probe(run: Path, biases: np.ndarray) -> str:
    """Probe (3): does a trained PPlug run's persona token predict its user's bias?"""
    import torch

    from harness.soft_prompt import restore
    from methods.pplug import pad_rows

    method = restore(run)
    cell = read_run(run)
    task = method.ctx.task
    dev = task.load_split(task, "synthetic", "dev", seed=0).examples
    tokens, inputs = [], []
    with torch.no_grad():
        for start in range(0, len(dev), 32):
            batch = dev[start : start + 32]
            table, rows = method.history([e.profile for e in batch])
            hist, mask = pad_rows(table, rows)
            persona, weights = method.module.persona([method.query_text(e) for e in batch], hist, mask)
            # The module's forward is assemble(persona(...)): one pass gives both probes.
            tokens.append(method.module.assemble(persona)[:, -1].float().cpu().numpy())
            inputs.append(torch.einsum("bn,bnd->bd", weights, hist).float().cpu().numpy())
    (r2_in, a_in), (r2, a) = ridge_r2(np.concatenate(inputs), biases), ridge_r2(np.concatenate(tokens), biases)
    scaled = np.concatenate(tokens)
    deviation = float(np.linalg.norm(scaled - scaled.mean(0), axis=1).mean() / np.linalg.norm(scaled.mean(0)))
    return (f"{cell.method} ({run.name}, history_text={cell.params.get('history_text')}, "
            f"center_history={cell.params.get('center_history', False)}): its attention-weighted "
            f"history (Proj's input) -> the user's bias, R^2 = {r2_in:.2f} (alpha {a_in:g}); the trained "
            f"persona token (Proj's output) -> the user's bias, R^2 = {r2:.2f} (alpha {a:g}); the persona "
            f"token's mean per-user deviation is {deviation:.1%} of the norm of its shared part.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--persona", type=Path, nargs="*", default=[], help="trained PPlug runs: probe (3)")
    parser.add_argument("--history-text", nargs="*", default=[], help="probes (1) and (2) for these texts")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = probe(args.runs)
    biases = None
    for how in args.history_text:
        sentence, biases, _ = input_probes(how)
        text += "\n\n" + sentence
    for run in args.persona:
        if biases is None:
            biases = input_probes("reference")[1]
        text += "\n\n" + persona_probe(run, biases)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
