"""Does a method write in the user's style on LaMP-7? (synthetic data only)

The synthetic LaMP-7 generator (tasks/synthetic.py, ``_Tweets``) gives each tweeter a
signature hashtag on every tweet, and often a catchphrase, an emoticon and all-lowercase
writing; the input is a neutral paraphrase with none of it. ROUGE moves little when a
method adds one hashtag, so this probe counts the style directly, per run:

* the share of answers that carry the gold tweet's hashtag (the user's signature: no
  input reveals it, only the history);
* the share that carry any hashtag at all (the task's format, which a no-history
  control can learn);
* the share written all in lowercase, among questions whose gold is and among the
  others: a method that reads the user's habit lowercases the first far more often.

    python scripts/lamp7_style_probe.py RUN_DIR [RUN_DIR ...] [--common] [--out FILE.md]

``--common`` scores every run on the questions all of them answered, so that a cell run
on the first N questions (``--limit N``, e.g. OPPU, whose per-user stage is the costly
part) compares with full-split cells on the same questions.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from harness.report.runs import Damaged, Run, read_run

HASHTAG = re.compile(r"#\w+")


def style(records: list[dict]) -> dict[str, float]:
    """The three shares of the module docstring over ``records`` (raw answer and gold)."""
    signed = [r for r in records if HASHTAG.search(r["gold"])]
    lower = [r for r in records if r["gold"] == r["gold"].lower()]
    other = [r for r in records if r["gold"] != r["gold"].lower()]

    def lowercased(rows: list[dict]) -> float:
        return sum(r["raw"].strip() == r["raw"].strip().lower() for r in rows) / max(1, len(rows))

    return {
        "questions": len(records),
        "signature": sum(any(t in r["raw"] for t in HASHTAG.findall(r["gold"])) for r in signed) / max(1, len(signed)),
        "any hashtag": sum(bool(HASHTAG.search(r["raw"])) for r in records) / max(1, len(records)),
        "lowercase": lowercased(lower),
        "lowercase golds": len(lower),
        "lowercase elsewhere": lowercased(other),
        "other golds": len(other),
    }


def _read(run: Path) -> Run:
    """The run's records, or an error naming the folder (an unfinished run has no config or metrics)."""
    try:
        return read_run(run)
    except Damaged as exc:
        raise SystemExit(f"{run}: not a finished run ({exc})") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--common", action="store_true",
                        help="score every run on the questions all the runs answered")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cells = [_read(run) for run in args.runs]
    for run, cell in zip(args.runs, cells):
        if cell.task != "lamp7":
            raise SystemExit(f"{run}: a {cell.task} run; this probe reads LaMP-7 runs")
    shared = set.intersection(*(set(c.records) for c in cells)) if args.common else None
    if shared is not None and not shared:
        raise SystemExit("--common: the runs share no question")
    header = ("| run | questions | answers with the user's signature hashtag | answers with any hashtag "
              "| lowercase answers: where the gold is lowercase / elsewhere |")
    lines = [header, "|---|---|---|---|---|"]
    for run, cell in zip(args.runs, cells):
        s = style([r for q, r in cell.records.items() if shared is None or q in shared])
        lines.append(f"| {cell.method} ({run.name}, seed {cell.seed}) | {s['questions']} | {s['signature']:.3f} "
                     f"| {s['any hashtag']:.3f} | {s['lowercase']:.3f} (of {s['lowercase golds']}) / "
                     f"{s['lowercase elsewhere']:.3f} (of {s['other golds']}) |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
