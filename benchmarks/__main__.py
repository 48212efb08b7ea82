"""Run every benchmark in ``benchmarks/`` in one process and write ``results/perf.md``.

    python -m benchmarks                     # all bench_*.py modules, in name order
    python -m benchmarks generation oppu     # only these (bench_ prefix optional)
    python -m benchmarks --skip oppu         # all but these

Each ``bench_*.py`` module's ``main()`` runs with its default arguments, prints its
table and writes ``results/<module>.json`` and ``.md``. A module that fails to import or
run is reported and skipped; the others still run. ``results/perf.md`` then summarises
this run: what ran, how long it took, each benchmark's table (measured in this run) and
a link to its result files. Nothing here is timed against a wall-clock bound.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, machine, machine_line

PACKAGE_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)]) if m.name.startswith("bench_"))


def _normalise(names: list[str]) -> list[str]:
    return [n if n.startswith("bench_") else f"bench_{n}" for n in names]


def run_one(name: str) -> dict[str, Any]:
    """Import and run one module's ``main()`` with its defaults; never raises."""
    started = time.time()
    outcome: dict[str, Any] = {"name": name, "status": "ok", "seconds": 0.0, "error": None}
    argv = sys.argv
    try:
        module = importlib.import_module(f"benchmarks.{name}")
        main = getattr(module, "main", None)
        if main is None:
            raise AttributeError(f"benchmarks/{name}.py has no main()")
        sys.argv = [f"benchmarks/{name}.py"]  # modules that parse sys.argv get their defaults
        takes_argv = bool(inspect.signature(main).parameters)
        main([]) if takes_argv else main()
    except SystemExit as exc:  # argparse or an explicit exit inside a benchmark
        if exc.code not in (0, None):
            outcome.update(status="failed", error=f"exited with status {exc.code}")
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not stop the others
        outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        sys.argv = argv
    outcome["seconds"] = time.time() - started
    md = RESULTS / f"{name}.md"
    outcome["fresh"] = md.exists() and md.stat().st_mtime >= started
    return outcome


def _demote(markdown: str) -> str:
    """Headings one level down, so each benchmark nests under perf.md's sections."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _headline(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    try:
        return json.loads(path.read_text()).get("headline") or {}
    except (OSError, json.JSONDecodeError):
        return {}


def write_perf(outcomes: list[dict[str, Any]], total: float) -> Path:
    m = machine()
    lines = ["# Performance", "",
             "Written by `python -m benchmarks` (or `make bench`); every figure below was measured in that one "
             "run, on one machine, unless marked otherwise.", "",
             machine_line(), ""]
    if m["gpu"] is None:
        lines += ["**No GPU was available for this run**: every figure is CPU-only (float32). GPU figures, "
                  "when measured, are committed separately and labelled with the GPU.", ""]
    lines += ["| benchmark | status | seconds | result files |", "|---|---|---|---|"]
    for o in outcomes:
        name = o["name"]
        files = [f"[{name}.{ext}]({name}.{ext})" for ext in ("md", "json") if (RESULTS / f"{name}.{ext}").exists()]
        status = o["status"] if o["status"] != "ok" else "ran"
        if o["status"] != "ok":
            status += f": {o['error']}"
        lines.append(f"| {name} | {status} | {o['seconds']:.0f} | {', '.join(files) or '-'} |")
    ran = {o["name"] for o in outcomes}
    earlier = [n for n in discover() if n not in ran and (RESULTS / f"{n}.md").exists()]  # last results kept
    for name in earlier:
        lines.append(f"| {name} | not run in this invocation | - | [{name}.md]({name}.md) (an earlier run) |")
    lines += ["", f"Total: {total:.0f} s.", ""]
    for o in outcomes:
        md = RESULTS / f"{o['name']}.md"
        lines.append(f"## {o['name']}")
        lines.append("")
        if o["status"] == "ok" and o["fresh"]:
            lines.append(_demote(md.read_text()).strip())
        elif md.exists():
            lines.append(f"Not measured in this run ({o['error'] or 'no result written'}); the last result is in "
                         f"[{o['name']}.md]({o['name']}.md) (an earlier run, possibly another machine state).")
        else:
            lines.append(f"Not measured: {o['error'] or 'no result written'}.")
        lines.append("")
    for name in earlier:  # the last result of every benchmark not run now, labelled as such
        md = (RESULTS / f"{name}.md").read_text()
        lines += [f"## {name} (an earlier run, not re-measured in this one)", "", _demote(md).strip(), ""]
    path = RESULTS / "perf.md"
    RESULTS.mkdir(exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--skip", action="append", default=[], help="benchmark to leave out (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    names = discover()
    if args.list:
        print("\n".join(names))
        return []
    wanted = _normalise(args.only) if args.only else names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
    skip = set(_normalise(args.skip))
    start = time.time()
    outcomes = []
    for name in wanted:
        if name in skip:
            continue
        print(f"\n=== {name} ===", flush=True)
        outcome = run_one(name)
        outcomes.append(outcome)
        if outcome["status"] != "ok":
            print(f"SKIPPED {name}: {outcome['error']}", flush=True)
    path = write_perf(outcomes, time.time() - start)
    print("\n=== summary (measured in this run) ===")
    for o in outcomes:
        ratios = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in _headline(o["name"]).items())
        print(f"{o['name']:<24} {o['status']:<7} {o['seconds']:7.0f} s  {ratios if o['status'] == 'ok' else o['error']}")
    print(f"wrote {path}")
    return outcomes


if __name__ == "__main__":
    main()
