"""Data at LaMP's real scale: load time and memory of the loader and of a full ``bench run``.

Generates a synthetic time-based split at LaMP size (default: LaMP-2, 2,000 dev
questions, 100-400 profile items each; a user's later questions repeat the earlier
ones' history, as in the official time-based files) and measures, each in a fresh
subprocess so numbers do not leak between measurements:

* ``loader``: :func:`tasks.loader.load_split` — wall time and peak RSS (``VmHWM``)
  in one process; retained and peak Python heap (``tracemalloc``) in another (tracing
  slows parsing, so its time is not used);
* ``json.loads``: the whole file parsed into Python objects and kept — the reference for
  "the data held once as parsed JSON", which is what a loader that keeps the parsed file
  (or builds Examples from it without sharing) holds at least;
* ``bench run``: a full run over every question with a cheap method (``adhoc`` on the
  tiny random LLM, greedy, 1 new token, default), peak RSS (``VmHWM``); the same run
  over a 20-question split of the same profile sizes gives the fixed cost (Python,
  torch, model), so the difference is what the data costs.

Bytes per profile item = retained heap / item references in the split (and per distinct
item). ``python -m benchmarks.bench_data_scale [--questions 2000] [--min-items 100]
[--max-items 400] [--task lamp2] [--method adhoc]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine, machine_line, write_result

ROOT = Path(__file__).resolve().parents[1]

# ru_maxrss survives fork+exec on Linux (a child reports its parent's high-water mark), so
# peaks come from /proc/self/status: VmHWM belongs to the process's own address space.
_VM = r"""
def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0
"""

_LOADER_CHILD = _VM + r"""
import gc, json, sys, time, tracemalloc
from harness.registries import TASKS
from tasks.loader import load_split
task, where, split, trace = TASKS.get(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
gc.collect()
rss0 = vm("VmRSS")
if trace:
    tracemalloc.start()
start = time.perf_counter()
data = load_split(task, where, split)
seconds = time.perf_counter() - start
gc.collect()
current, peak = tracemalloc.get_traced_memory() if trace else (0, 0)
refs = sum(len(e.profile) for e in data.examples)
distinct = len({id(item) for e in data.examples for item in e.profile})
ids = len({item["id"] for e in data.examples for item in e.profile})
print(json.dumps({"seconds": seconds, "rss_before": rss0,
                  "rss_peak": vm("VmHWM"),
                  "heap_retained": current, "heap_peak": peak, "questions": len(data.examples),
                  "item_refs": refs, "item_objects": distinct, "item_ids": ids}))
"""

_JSON_CHILD = _VM + r"""
import gc, json, sys, time, tracemalloc
path, trace = sys.argv[1], sys.argv[2] == "1"
gc.collect()
rss0 = vm("VmRSS")
if trace:
    tracemalloc.start()
start = time.perf_counter()
with open(path, "rb") as fh:
    data = json.loads(fh.read())
seconds = time.perf_counter() - start
gc.collect()
current, peak = tracemalloc.get_traced_memory() if trace else (0, 0)
print(json.dumps({"seconds": seconds, "rss_before": rss0,
                  "rss_peak": vm("VmHWM"),
                  "heap_retained": current, "heap_peak": peak}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "TOKENIZERS_PARALLELISM": "false"}


def _child(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *args], env=_env(), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"measurement subprocess failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


_CLI_CHILD = _VM + r"""
import json, os, sys
from harness.cli import main
sys.argv = ["bench", *sys.argv[1:]]
try:
    main()
finally:
    with open(os.environ["BENCH_VMHWM_FILE"], "w") as fh:
        json.dump({"rss_peak": vm("VmHWM")}, fh)
"""


def _timed_process(args: list[str]) -> dict[str, Any]:
    """``bench <args>`` in a fresh process: wall seconds and its own peak RSS (VmHWM)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "vmhwm.json"
        proc = subprocess.run([sys.executable, "-c", _CLI_CHILD, *args], env={**_env(), "BENCH_VMHWM_FILE": str(hwm)},
                              capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"bench {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
        return {"seconds": seconds, **json.loads(hwm.read_text())}


def dataset(task_name: str, questions: int, lo: int, hi: int, seed: int = 0) -> Path:
    """Generate (once; the generator is deterministic) a LaMP-scale synthetic task folder."""
    from harness.models import cache_root
    from harness.registries import TASKS
    from tasks import synthetic
    from tasks.sources import write_synthetic_marker

    task = TASKS.get(task_name)
    target = (cache_root() / "bench" / f"v{synthetic.GENERATOR_VERSION}"
              / f"{task_name}-dev{questions}-p{lo}-{hi}-seed{seed}")
    if not (target / "synthetic.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        synthetic.generate(task, target, seed=seed, n_users={"train": 0, "dev": questions, "test": 0},
                           profile_size=(lo, hi))
        write_synthetic_marker(target, task, seed)
    return target


def bench_run(task: str, where: Path, method: str, out: Path) -> dict[str, Any]:
    cmd = ["run", "--method", method, "--task", task,
           "--data", str(where), "--llm", "tiny-causal", "--encoder", "tiny-encoder", "--beams", "1",
           "--max-new-tokens", "1", "--batch-size", "64", "--no-progress", "--out", str(out)]
    return _timed_process(cmd)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="lamp2")
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--min-items", type=int, default=100)
    parser.add_argument("--max-items", type=int, default=400)
    parser.add_argument("--method", default="adhoc", help="cheap method for the full bench run")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    where = dataset(args.task, args.questions, args.min_items, args.max_items)
    gen_seconds = time.perf_counter() - start
    small = dataset(args.task, 20, args.min_items, args.max_items)
    qfile = where / "dev_questions.json"
    file_bytes = qfile.stat().st_size + (where / "dev_outputs.json").stat().st_size

    loader = _child(_LOADER_CHILD, args.task, str(where), "dev", "0")
    loader_heap = _child(_LOADER_CHILD, args.task, str(where), "dev", "1")
    plain = _child(_JSON_CHILD, str(qfile), "0")
    plain_heap = _child(_JSON_CHILD, str(qfile), "1")
    with tempfile.TemporaryDirectory() as tmp:
        full = bench_run(args.task, where, args.method, Path(tmp) / "full")
        base = bench_run(args.task, small, args.method, Path(tmp) / "small")

    refs, objects = loader_heap["item_refs"], loader_heap["item_objects"]
    mib = 2**20
    per_ref = loader_heap["heap_retained"] / refs
    per_obj = loader_heap["heap_retained"] / objects
    json_per_ref = plain_heap["heap_retained"] / refs
    rows = {
        "loader": {**loader, "heap_retained": loader_heap["heap_retained"], "heap_peak": loader_heap["heap_peak"]},
        "json_loads": {**plain, "heap_retained": plain_heap["heap_retained"], "heap_peak": plain_heap["heap_peak"]},
        "bench_run_full": full, "bench_run_20_questions": base,
    }
    md = [f"# Data at LaMP scale ({args.task}, synthetic, time-based)", "", machine_line(), "",
          f"Split: {loader_heap['questions']} dev questions, {args.min_items}-{args.max_items} items per profile: "
          f"{refs:,} profile-item references, {loader_heap['item_ids']:,} distinct items; files "
          f"{file_bytes / mib:.0f} MiB (generated in {gen_seconds:.1f} s, or reused from the cache).", "",
          "| what | wall s | peak RSS MiB (above interpreter) | retained heap MiB | peak heap MiB | "
          "bytes / item reference |",
          "|---|---|---|---|---|---|",
          f"| `load_split` (validating loader) | {loader['seconds']:.2f} | "
          f"{(loader['rss_peak'] - loader['rss_before']) / mib:.0f} | {loader_heap['heap_retained'] / mib:.0f} | "
          f"{loader_heap['heap_peak'] / mib:.0f} | **{per_ref:.0f}** |",
          f"| `json.loads` of the questions file, kept | {plain['seconds']:.2f} | "
          f"{(plain['rss_peak'] - plain['rss_before']) / mib:.0f} | {plain_heap['heap_retained'] / mib:.0f} | "
          f"{plain_heap['heap_peak'] / mib:.0f} | {json_per_ref:.0f} |",
          "",
          f"The loader holds **{per_ref:.0f} bytes per profile-item reference** ({per_obj:.0f} per distinct item "
          f"object; {objects:,} objects for {refs:,} references), "
          f"{loader_heap['heap_retained'] / plain_heap['heap_retained']:.2f}x the parsed JSON kept whole: a user's "
          "history repeated across the user's questions is held once, and the file is decoded record by record, "
          "so the whole parsed file never exists at once.", "",
          f"Full `bench run --method {args.method} --llm tiny-causal --beams 1 --max-new-tokens 1 --batch-size 64` "
          f"over all {loader_heap['questions']} questions: **{full['seconds']:.1f} s**, peak RSS "
          f"**{full['rss_peak'] / mib:.0f} MiB**; the same run over 20 questions: {base['seconds']:.1f} s, "
          f"{base['rss_peak'] / mib:.0f} MiB; the data's share: {(full['rss_peak'] - base['rss_peak']) / mib:.0f} MiB "
          f"({(full['rss_peak'] - base['rss_peak']) / refs:.0f} bytes per item reference).", "",
          f"Command: `python -m benchmarks.bench_data_scale --task {args.task} --questions {args.questions} "
          f"--min-items {args.min_items} --max-items {args.max_items}`."]
    result = {"task": args.task, "questions": loader_heap["questions"], "profile_size": [args.min_items, args.max_items],
              "file_bytes": file_bytes, "item_refs": refs, "item_objects": objects, "item_ids": loader_heap["item_ids"],
              "rows": rows, "machine": machine(),
              "headline": {"loader_bytes_per_item_ref": per_ref, "loader_vs_json_loads": loader_heap["heap_retained"]
                           / plain_heap["heap_retained"], "load_seconds": loader["seconds"],
                           "bench_run_seconds": full["seconds"], "bench_run_peak_rss_mib": full["rss_peak"] / mib}}
    write_result("bench_data_scale", result, "\n".join(md))
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
