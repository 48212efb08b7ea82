"""How often does a method answer the user's favourite tag? (synthetic LaMP-2 only)

The synthetic LaMP-2 generator (tasks/synthetic.py, ``_Movies``) gives each tagger one or
two favourite tags and tags a movie with the favourite whenever its description fits it.
A user's most frequent tag in their history recovers the favourite. Per run, this prints
accuracy, the share of answers equal to the user's history-majority tag, and the accuracy
of answering that tag outright (the signal a personalized method can exploit).

    python scripts/lamp2_favourite_probe.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from harness.registries import TASKS
from harness.report.runs import read_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    task = TASKS.get("lamp2")
    dev = {e.id: e for e in task.load_split(task, "synthetic", "dev", seed=0).examples}
    favourite = {qid: Counter(item["tag"] for item in e.profile).most_common(1)[0][0] for qid, e in dev.items()}
    vote = sum(favourite[q] == e.output for q, e in dev.items()) / len(dev)
    print(f"answering the history-majority tag: accuracy {vote:.3f} over {len(dev)} dev questions")
    print("| run | accuracy | answers = the user's majority tag | distinct answers |")
    print("|---|---|---|---|")
    for run in args.runs:
        cell = read_run(run)
        answers = [(r["id"], r["raw"].strip()) for r in cell.records.values()]
        acc = sum(a == dev[q].output for q, a in answers) / len(answers)
        fav = sum(a == favourite[q] for q, a in answers) / len(answers)
        label = cell.method + "".join(f" {k}={v}" for k, v in sorted(cell.params.items())
                                      if k in ("history_text", "max_train_examples", "attention_temperature")) + f" seed={cell.seed}"
        print(f"| {label} | {acc:.3f} | {fav:.3f} | {len({a for _, a in answers})} |")


if __name__ == "__main__":
    main()
