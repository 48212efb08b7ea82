"""Training throughput of PPlug and OPPU against micro-batch size and input length.

Why: ``micro_batch`` (PPlug, shared with its prompt-tuning control) and
``max_batch_examples`` (OPPU's trainer) are speed and memory knobs only. Both trainers
accumulate gradients over micro-batches so that any size gives the same gradient (to
float rounding): PPlug's loop (``harness.soft_prompt.train_soft_tokens``) weights each
micro-batch's mean loss by its share of the optimizer step, and OPPU's
(``harness.lora_training.train_batched``) divides each example's summed loss by its job's
target tokens. Their defaults should therefore be whatever this CPU runs fastest within
the memory it has, and this grid measures exactly that, for each input length.

Every cell runs ``--batch`` examples per optimizer step (16, the ``small`` profile's
effective batch for both methods) in micro-batches of the cell's size, through the
method's own code:

* ``pplug``: :meth:`PPlug.fit` itself (``method_params(PPlug, profile="small")`` with the
  cell's ``micro_batch``/``max_input_tokens``, no held-out split): ``prepare`` (history
  rows from the embedding cache, queries), then ``train_soft_tokens`` with
  ``unit_loss`` (input encoder, attention over the history, MLPs, frozen-LLM
  forward/backward) and AdamW. The clock ticks at the first ``unit_loss`` call of each
  optimizer step and stops when the loop returns (``save`` is replaced by the stop, so
  no artifacts are written).
* ``oppu``: the per-user stage as :meth:`OPPU.train_users` runs it:
  ``train_batched`` with OPPU's own adapter layers (``module_names``), settings
  (``settings(lr)``), fresh LoRA and pairs (``pairs_for``), one job of ``--batch`` pairs
  per step, ``max_batch_examples`` = the cell's micro-batch. The clock ticks at the first
  ``Backbone.loss`` call of each step. (Stage 1, the task LoRA, trains through
  ``train_sequential``, which runs each minibatch in one pass whatever
  ``max_batch_examples`` says, so it has no micro-batch knob to measure.)

Inputs are synthetic train questions of ``--task`` (pairs from their users' profiles for
OPPU) with the user's own history texts appended until the LLM reads at least the cell's
``max_input_tokens``; the method then truncates to exactly that budget, as it does any
long input. Reported per example: the real input tokens and the whole sequence (soft
tokens + input + target). Per cell: a warm-up run of one optimizer step over a single
micro-batch (the cell's shapes, at a fraction of a step's cost), then ``--steps`` timed
steps; their median gives seconds per step, examples/s and tokens/s, with the ratio to
the reference-style cell measured in the same run: PPlug's reference run script trains 2
examples per device with 8 accumulation steps at 256 input tokens (``2x256``); OPPU's
reference uses ``per_device_train_batch_size=16`` in one pass (``16x256``, at the ``small``
profile's 256-token input budget; the reference cuts at 2048).

Default size: one timed step per cell, 128 and 256 input tokens. On the 2-core machine a
16-example PPlug step on smollm2 takes about 6 s at the ~100 tokens synthetic LaMP-3
inputs really have (results/convergence/README.md), so roughly 10 s at 128 and 18 s at
256 tokens: the default grid is about 6 minutes for both methods. One step of 16 examples
(16 passes at micro-batch 1) is already an average over many passes; ``--steps 3`` adds a
spread and costs about 5 minutes per extra step, ``--lengths 128,256,512`` about 5 more.

The 1-minute load average is recorded before and after every cell; above ``--max-load``
the output says loudly that the figures are not idle-machine figures. Peak RSS is the
process's peak during the cell (models included), reset per cell where Linux allows.

    python -m benchmarks.bench_training                                  # both methods, default grid
    python -m benchmarks.bench_training --methods pplug --lengths 256 --micro-batches 2,8,16
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import methods  # noqa: F401 - registers the built-ins
from benchmarks._common import (
    IDLE_LOAD_LIMIT,
    load_1m,
    load_warning,
    machine,
    machine_line,
    write_result,
)
from harness.api import Example, RunContext, TaskSpec
from harness.backbones import Backbone, GenerationSettings
from harness.lora import fresh_lora
from harness.lora_training import Pair, schedule, stable_seed, train_batched
from harness.params import method_params
from harness.registries import TASKS
from harness.runner import peak_rss_mb, reset_peak_rss
from methods.oppu import OPPU
from methods.pplug import PPlug

METHODS = ("pplug", "oppu")
#: The knob each method's grid varies, and where its current default comes from.
KNOBS = {"pplug": "micro_batch", "oppu": "max_batch_examples"}
METHOD_CLASSES: dict[str, type] = {"pplug": PPlug, "oppu": OPPU}
#: A micro-batch whose examples/s is within this share of the fastest counts as "as fast":
#: timing noise between repeated steps on the idle machine is a few percent.
NEAR = 0.05


# -- timing -----------------------------------------------------------------------------------
class StepClock:
    """Start times of optimizer steps, taken at the first loss call of each step.

    A step makes ``per_step`` loss calls (one per micro-batch); the first call of step
    ``k + 1`` comes right after step ``k``'s backward passes, clipping and AdamW update,
    so the gap between two first calls is one whole step. ``stop`` closes the last one.
    """

    def __init__(self, per_step: int) -> None:
        self.per_step = per_step
        self.calls = 0
        self.starts: list[float] = []
        self.end: float | None = None

    def tick(self) -> None:
        if self.calls % self.per_step == 0:
            self.starts.append(time.perf_counter())
        self.calls += 1

    def stop(self) -> None:
        self.end = time.perf_counter()

    def step_seconds(self) -> list[float]:
        if self.end is None:
            raise RuntimeError("the training loop never returned (the clock was not stopped)")
        bounds = [*self.starts, self.end]
        return [b - a for a, b in itertools.pairwise(bounds)]


class ClockedPPlug(PPlug):
    """PPlug whose fit reports when each optimizer step starts and when training ends.

    ``unit_loss`` is the first thing each micro-batch runs (soft tokens, then the LLM), so
    the clock ticks there; ``save`` is what ``fit`` calls as soon as the loop returns, so
    it stops the clock there instead of writing artifacts, which are not what we time.
    """

    def __init__(self, ctx: RunContext, params: Any, clock: StepClock) -> None:
        super().__init__(ctx, params)
        self.clock = clock

    def unit_loss(self, units: Sequence[Any]) -> Any:
        self.clock.tick()
        return super().unit_loss(units)

    def save(self) -> None:
        self.clock.stop()


class ClockedBackbone:
    """A backbone whose ``loss`` ticks a clock first; everything else is the wrapped one's."""

    def __init__(self, backbone: Backbone, clock: StepClock) -> None:
        self._backbone = backbone
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backbone, name)

    def loss(self, *args: Any, **kwargs: Any) -> Any:
        self._clock.tick()
        return self._backbone.loss(*args, **kwargs)


# -- inputs of a given length -------------------------------------------------------------------
def lengthen(text: str, fillers: Sequence[str], count: Callable[[str], int], n_tokens: int) -> str:
    """``text`` with ``fillers`` appended in turn until ``count`` gives at least ``n_tokens``.

    Synthetic LaMP inputs are a few dozen tokens; appending the user's own history texts
    makes the measured sequences as long as the cell says with text of the task's kind
    (the method then truncates to its budget, as it does any long input).
    """
    if not fillers:
        raise ValueError("no filler text to lengthen the input with (an empty profile?)")
    out, i = text, 0
    while count(out) < n_tokens:
        out = f"{out} {fillers[i % len(fillers)]}"
        i += 1
    return out


def token_counter(llm: Backbone) -> Callable[[str], int]:
    """Tokens of a text as the LLM's tokenizer splits it, without special tokens."""
    return lambda text: len(llm.tokenizer.encode(text, add_special_tokens=False))


def history_texts(task: TaskSpec, example: Example) -> list[str]:
    return [task.corpus_text(item) for item in example.profile]


def parse_cell(text: str) -> tuple[int, int]:
    """``"2x256"`` -> ``(2, 256)``: a baseline cell as micro-batch x input tokens."""
    try:
        micro, length = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected MICROxTOKENS such as 2x256, got {text!r}") from exc
    return micro, length


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


# -- one cell -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Grid:
    """What every cell of one run shares."""

    llm: str
    encoder: str
    task: TaskSpec
    batch: int  # examples per optimizer step
    steps: int  # timed optimizer steps per cell (after the warm-up)
    max_tokens: int  # the run's input ceiling: the longest cell


class CellTiming(NamedTuple):
    warmup_seconds: float  # one optimizer step over a single micro-batch
    step_seconds: list[float]  # the timed optimizer steps of ``Grid.batch`` examples
    input_tokens: float  # mean LLM input tokens per example, as the method truncated them
    tokens: float  # mean whole sequence per example: soft tokens + input + target


def context(grid: Grid, artifacts: Path) -> RunContext:
    return RunContext(task=grid.task, llm_name=grid.llm, encoder_name=grid.encoder, seed=0, artifacts_dir=artifacts,
                      generation=GenerationSettings(num_beams=1, max_input_tokens=grid.max_tokens), progress=False,
                      profile="small")


def pplug_cell(grid: Grid, examples: Sequence[Example], micro: int, length: int) -> CellTiming:
    """PPlug's fit on ``grid.batch`` lengthened questions, after a one-micro-batch warm-up fit.

    The warm-up runs the same shapes (``micro`` examples at ``length`` tokens) once, so
    first-use costs (allocations, kernel selection) stay out of the timed steps, at a
    fraction of a full step's cost.
    """
    def params(batch: int, steps: int) -> Any:
        return method_params(PPlug, {"micro_batch": micro, "batch_size": batch, "max_input_tokens": length,
                                     "max_train_examples": batch, "heldout_examples": 0, "epochs": steps,
                                     "max_steps": steps}, profile="small")

    with tempfile.TemporaryDirectory() as tmp:
        ctx = context(grid, Path(tmp))  # nothing is saved: ClockedPPlug.save only stops the clock
        llm = ctx.llm()
        count = token_counter(llm)
        train = [dataclasses.replace(e, input=lengthen(e.input, history_texts(grid.task, e), count, length))
                 for e in examples[: grid.batch]]
        warm = StepClock(1)
        ClockedPPlug(ctx, params(micro, 1), warm).fit(train)
        clock = StepClock(math.ceil(grid.batch / micro))
        method = ClockedPPlug(ctx, params(grid.batch, grid.steps), clock)
        method.fit(train)
        assert method.module is not None
        inputs = statistics.mean(len(llm.prompt_ids(p, method.max_input_tokens)) for p in method.prompts(train))
        targets = statistics.mean(len(llm.target_ids(e.output or "", ctx.max_new_tokens)) for e in train)
        soft = method.module.n_tokens
    return CellTiming(warm.step_seconds()[0], clock.step_seconds(), inputs, soft + inputs + targets)


def oppu_pairs(grid: Grid, method: OPPU, examples: Sequence[Example], length: int) -> list[Pair]:
    """``grid.batch`` per-user pairs as ``pairs_for`` makes them, lengthened to ``length`` tokens.

    They come from the first users' profiles; which user a pair came from does not
    change what a pass costs, so one job of them stands for one user's steps (a real
    group of 16 users puts up to 16 x 16 rows in a step, cut into passes of
    ``max_batch_examples`` rows the same way).
    """
    count = token_counter(method.ctx.llm())
    pairs: list[Pair] = []
    for e in examples:
        fillers = history_texts(grid.task, e)
        pairs += [(lengthen(prompt, fillers, count, length), target) for prompt, target in method.pairs_for(e.profile)]
        if len(pairs) >= grid.batch:
            return pairs[: grid.batch]
    raise ValueError(f"the profiles give {len(pairs)} OPPU pairs, fewer than --batch {grid.batch}")


def oppu_cell(grid: Grid, examples: Sequence[Example], micro: int, length: int) -> CellTiming:
    """OPPU's per-user trainer on one job of ``grid.batch`` pairs per step, after a
    one-micro-batch warm-up run (same shapes, a fraction of a step's cost)."""
    params = method_params(OPPU, {"max_batch_examples": micro, "batch_size": grid.batch,
                                  "max_input_tokens": length}, profile="small")
    with tempfile.TemporaryDirectory() as tmp:
        method = OPPU(context(grid, Path(tmp)), params)
        llm = method.ctx.llm()
        pairs = oppu_pairs(grid, method, examples, length)
        settings = method.settings(params.lr)
        names = method.module_names()
        init = fresh_lora(llm.model, names, params.r, stable_seed(0, "bench-training-init"))
        warm = StepClock(1)
        train_batched(ClockedBackbone(llm, warm), names, [[pairs[:micro]]], [init], settings)  # type: ignore[arg-type]
        warm.stop()
        clock = StepClock(math.ceil(grid.batch / micro))
        job = schedule(pairs, grid.steps, grid.batch, stable_seed(0, "bench-training"))  # one step per epoch
        train_batched(ClockedBackbone(llm, clock), names, [job], [init], settings)  # type: ignore[arg-type]
        clock.stop()
        inputs = statistics.mean(len(llm.prompt_ids(prompt, settings.max_input_tokens)) for prompt, _ in pairs)
        targets = statistics.mean(len(llm.target_ids(target, settings.max_target_tokens)) for _, target in pairs)
    return CellTiming(warm.step_seconds()[0], clock.step_seconds(), inputs, inputs + targets)


CELLS: dict[str, Callable[[Grid, Sequence[Example], int, int], CellTiming]] = {"pplug": pplug_cell, "oppu": oppu_cell}


def measure(method: str, grid: Grid, examples: Sequence[Example], micro: int, length: int) -> dict[str, Any]:
    """One cell: load before and after, peak RSS, step times and the rates derived from them."""
    load_before = load_1m()
    per_cell = reset_peak_rss()
    timing = CELLS[method](grid, examples, micro, length)
    peak = peak_rss_mb()  # MiB
    load_after = load_1m()
    step = statistics.median(timing.step_seconds)
    cell = {"method": method, "micro_batch": micro, "max_input_tokens": length, "examples_per_step": grid.batch,
            "passes_per_step": math.ceil(grid.batch / micro), "warmup_seconds": timing.warmup_seconds,
            "step_seconds": timing.step_seconds, "median_step_seconds": step,
            "step_spread": max(timing.step_seconds) / min(timing.step_seconds) - 1,
            "examples_per_s": grid.batch / step, "input_tokens_per_example": timing.input_tokens,
            "tokens_per_example": timing.tokens, "tokens_per_s": grid.batch * timing.tokens / step, "peak_rss_mib": peak,
            "peak_rss_scope": "cell" if per_cell else "process", "load_before": load_before, "load_after": load_after}
    print(f"{method:<5} micro {micro:>3} x {length:>4} tokens: {step:7.2f} s/step, {cell['examples_per_s']:6.2f} ex/s, "
          f"{cell['tokens_per_s']:8.0f} tok/s, peak {peak:7.0f} MiB, load {load_before} -> {load_after}", flush=True)
    return cell


# -- reading --------------------------------------------------------------------------------------
def current_default(method: str) -> int:
    """The method's ``small``-profile value of the knob this grid varies."""
    return int(getattr(method_params(METHOD_CLASSES[method], {}, profile="small"), KNOBS[method]))


def reading(method: str, cells: list[dict[str, Any]]) -> list[str]:
    """What the numbers say for one method, computed from them (nothing is assumed)."""
    lines: list[str] = []
    default = current_default(method)
    near_everywhere: set[int] | None = None
    best_by_length: dict[int, dict[str, Any]] = {}
    for length in sorted({c["max_input_tokens"] for c in cells}):
        row = [c for c in cells if c["max_input_tokens"] == length]
        best = max(row, key=lambda c: c["examples_per_s"])
        best_by_length[length] = best
        near = sorted(c["micro_batch"] for c in row if c["examples_per_s"] >= (1 - NEAR) * best["examples_per_s"])
        near_everywhere = set(near) if near_everywhere is None else near_everywhere & set(near)
        slowest = min(row, key=lambda c: c["examples_per_s"])
        text = (f"at {length} input tokens the fastest micro-batch is **{best['micro_batch']}** "
                f"({best['examples_per_s']:.2f} examples/s, {best['ratio_vs_baseline']:.2f}x the baseline); "
                f"within {NEAR:.0%} of it: {', '.join(map(str, near))}; the slowest is {slowest['micro_batch']} "
                f"({slowest['examples_per_s'] / best['examples_per_s']:.0%} of the fastest)")
        current = next((c for c in row if c["micro_batch"] == default), None)
        if current is not None:
            text += (f"; the current default {KNOBS[method]}={default} runs at "
                     f"{current['examples_per_s'] / best['examples_per_s']:.0%} of the fastest")
        lines.append(f"- {text}.")
    if near_everywhere:
        pick = min(near_everywhere)
        lines.append(f"- The smallest micro-batch within {NEAR:.0%} of the fastest at every measured length is "
                     f"**{pick}** (smaller micro-batches hold fewer activations at once).")
    else:
        lines.append(f"- No micro-batch is within {NEAR:.0%} of the fastest at every measured length: the best "
                     "choice depends on the input length.")
    lengths = sorted(best_by_length)
    if len(lengths) > 1:
        first, last = best_by_length[lengths[0]], best_by_length[lengths[-1]]
        lines.append(f"- From {lengths[0]} to {lengths[-1]} input tokens "
                     f"({last['tokens_per_example'] / first['tokens_per_example']:.2f}x the tokens per example), the "
                     f"best examples/s goes from {first['examples_per_s']:.2f} to {last['examples_per_s']:.2f} "
                     f"({last['examples_per_s'] / first['examples_per_s']:.2f}x) and the best tokens/s from "
                     f"{first['tokens_per_s']:.0f} to {last['tokens_per_s']:.0f} "
                     f"({last['tokens_per_s'] / first['tokens_per_s']:.2f}x).")
    return lines


def table(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["| input tokens | micro-batch | passes/step | input tokens/example (real) | tokens/example | s/step "
             "(median) | spread | examples/s | tokens/s | vs baseline | peak RSS MiB | load before/after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        mark = " (baseline)" if c["baseline"] else ""
        lines.append(
            f"| {c['max_input_tokens']} | {c['micro_batch']}{mark} | {c['passes_per_step']} | "
            f"{c['input_tokens_per_example']:.1f} | {c['tokens_per_example']:.1f} | {c['median_step_seconds']:.2f} | "
            f"{c['step_spread']:.1%} | "
            f"{c['examples_per_s']:.2f} | {c['tokens_per_s']:.0f} | **{c['ratio_vs_baseline']:.2f}x** | "
            f"{c['peak_rss_mib']:.0f} | {c['load_before']} / {c['load_after']} |")
    return lines


TITLES = {
    "pplug": "PPlug: `PPlug.fit` on the small profile (plug-in + frozen-LLM forward/backward + AdamW)",
    "oppu": "OPPU: the per-user LoRA stage (`train_batched`, OPPU's layers, settings and pairs)",
}
KNOB_TEXT = {
    "pplug": "`micro_batch` (PPlug and prompt-tuning)",
    "oppu": "`max_batch_examples` (OPPU's trainer: examples per forward pass)",
}


def markdown(res: dict[str, Any]) -> str:
    warning = load_warning([x for c in res["cells"] for x in (c["load_before"], c["load_after"])], res["max_load"])
    md = ["# Training throughput: micro-batch size x input length", ""]
    if warning:
        md += [warning, ""]
    md += [machine_line(res["machine"]), "",
           f"Command: `{res['command']}`.", "",
           f"{res['llm']} + {res['encoder']}, synthetic {res['task']} train questions (OPPU: pairs from their "
           f"users' profiles), inputs lengthened with the user's own history texts until the LLM reads the cell's "
           f"input tokens. {res['batch']} examples per optimizer step in micro-batches of the cell's size; per cell "
           f"a warm-up step over one micro-batch (the cell's shapes), then the median of {res['steps']} timed "
           "step(s); spread = slowest / fastest timed step - 1. tokens/example counts the whole sequence the LLM "
           "runs (soft tokens, input, target).", "",
           "**The micro-batch never changes the optimisation here**: both trainers accumulate gradients over "
           "micro-batches (PPlug weights each micro-batch's mean loss by its share of the step; OPPU divides each "
           "example's summed loss by its job's target tokens), so every size gives the same update to float "
           "rounding, and the default is purely a speed and memory choice.", ""]
    for method in res["methods"]:
        cells = [c for c in res["cells"] if c["method"] == method]
        micro, length = res["baselines"][method]
        md += [f"## {TITLES[method]}", "",
               f"Knob: {KNOB_TEXT[method]}; baseline: micro-batch {micro} at {length} input tokens "
               f"({res['baseline_sources'][method]}), measured in this run.", "", *table(cells), ""]
    md += ["## Reading", ""]
    for method in res["methods"]:
        md += [f"{method} ({KNOBS[method]}, current small-profile default {current_default(method)}):", "",
               *reading(method, [c for c in res["cells"] if c["method"] == method]), ""]
    if warning:
        md += [warning]
    return "\n".join(md)


BASELINE_SOURCES = {
    "pplug": "the PPlug reference's run script: 2 per device x 8 accumulation steps, 256 input tokens",
    "oppu": "the OPPU reference's per_device_train_batch_size=16 in one pass, at the small profile's 256 tokens",
}


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    task = TASKS.get(args.task)
    examples = [e for e in task.load_split(task, args.data, "train", seed=0).examples if e.output and e.profile]
    grid = Grid(llm=args.llm, encoder=args.encoder, task=task, batch=args.batch, steps=args.steps,
                max_tokens=max(args.lengths))
    baselines = {"pplug": args.pplug_baseline, "oppu": args.oppu_baseline}
    cells: list[dict[str, Any]] = []
    for method in args.methods:
        mine = [measure(method, grid, examples, micro, length) for length in args.lengths for micro in args.micro_batches]
        base = next(c for c in mine if (c["micro_batch"], c["max_input_tokens"]) == baselines[method])
        for c in mine:
            c["baseline"] = c is base
            c["ratio_vs_baseline"] = c["examples_per_s"] / base["examples_per_s"]
        cells += mine
    headline: dict[str, Any] = {}
    for method in args.methods:
        for length in args.lengths:
            row = [c for c in cells if c["method"] == method and c["max_input_tokens"] == length]
            best = max(row, key=lambda c: c["examples_per_s"])
            headline[f"{method}_fastest_micro_{length}"] = best["micro_batch"]
            headline[f"{method}_fastest_vs_baseline_{length}"] = best["ratio_vs_baseline"]
    return {"command": command, "llm": args.llm, "encoder": args.encoder, "task": args.task, "data": args.data,
            "methods": list(args.methods), "batch": args.batch, "steps": args.steps,
            "micro_batches": args.micro_batches, "lengths": args.lengths,
            "baselines": {m: list(baselines[m]) for m in args.methods},
            "baseline_sources": {m: BASELINE_SOURCES[m] for m in args.methods},
            "current_defaults": {m: {KNOBS[m]: current_default(m)} for m in args.methods},
            "max_load": args.max_load, "cells": cells, "machine": machine(), "headline": headline}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--encoder", default="minilm-l6", help="PPlug's history/input encoder")
    ap.add_argument("--task", default="lamp3", help="a LaMP task with synthetic data and an item output field")
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--methods", type=lambda s: [m.strip() for m in s.split(",") if m.strip()],
                    default=list(METHODS), help="comma-separated, of: " + ", ".join(METHODS))
    ap.add_argument("--micro-batches", type=int_list, default=[1, 2, 4, 8, 16], help="comma-separated")
    ap.add_argument("--lengths", type=int_list, default=[128, 256],
                    help="comma-separated input token budgets (max_input_tokens); 512 adds about 5 minutes")
    ap.add_argument("--batch", type=int, default=16, help="examples per optimizer step (the small profile's)")
    ap.add_argument("--steps", type=int, default=1,
                    help="timed optimizer steps per cell, after the warm-up (each extra step: ~5 min on the default grid)")
    ap.add_argument("--pplug-baseline", type=parse_cell, default=(2, 256), metavar="MICROxTOKENS")
    ap.add_argument("--oppu-baseline", type=parse_cell, default=(16, 256), metavar="MICROxTOKENS")
    ap.add_argument("--max-load", type=float, default=IDLE_LOAD_LIMIT,
                    help="warn loudly when the 1-minute load average exceeds this")
    ap.add_argument("--out", type=Path, default=None, help="folder for bench_training.{md,json} (default results/)")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = parser()
    args = ap.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        ap.error(f"--methods: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(METHODS)}")
    if args.steps < 1 or args.batch < 1:
        ap.error("--steps and --batch must be at least 1")
    if max(args.micro_batches) > args.batch:
        ap.error(f"--micro-batches must not exceed --batch {args.batch} (one step holds at most one batch)")
    for method in args.methods:
        micro, length = getattr(args, f"{method}_baseline")
        if micro not in args.micro_batches or length not in args.lengths:
            ap.error(f"--{method}-baseline {micro}x{length} is not in the grid (micro-batches "
                     f"{args.micro_batches}, lengths {args.lengths}): the ratios need it measured in this run")
    command = shlex.join(["python", "-m", "benchmarks.bench_training", *(sys.argv[1:] if argv is None else argv)])
    res = run(args, command)
    md = markdown(res)
    write_result("bench_training", res, md, args.out)
    print(md)
    warning = load_warning([x for c in res["cells"] for x in (c["load_before"], c["load_after"])], args.max_load)
    if warning:
        print(f"\n{warning}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
