"""PPlug cost: training throughput, and inference throughput against ``adhoc``.

Both methods run on the same backbone, the same dev questions (synthetic LaMP-format
data), the same fixed batches and the same decoding settings; PPlug's plug-in is
trained for a few steps first (its values do not change the cost). Inference is timed
batch by batch, alternating the two methods and keeping each batch's best of
``--rounds``, so a busy machine penalises both alike. The overhead PPlug adds per
example is split into building the soft tokens (history lookup in the embedding
cache, the trainable input encoder, aggregation and MLPs) and decoding with two more
input positions.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_pplug.py            # writes results/bench_pplug.{md,json}
    PYTHONPATH=. .venv/bin/python benchmarks/bench_pplug.py --n 8 --train-steps 2 --no-write
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import methods  # noqa: F401 - registers the built-ins
from benchmarks._common import machine, write_result
from harness.api import Example, RunContext
from harness.backbones import GenerationSettings
from harness.registries import TASKS
from harness.runner import fixed_batches
from methods.adhoc import AdHoc
from methods.pplug import PPlug, PPlugParams


def context(args: argparse.Namespace, artifacts: Path) -> RunContext:
    return RunContext(task=TASKS.get(args.task), llm_name=args.llm, encoder_name=args.encoder, seed=0,
                      artifacts_dir=artifacts, progress=False,
                      generation=GenerationSettings(num_beams=args.beams, batch_size=args.batch_size))


def train_throughput(ctx: RunContext, train: list[Example], steps: int, batch: int) -> tuple[PPlug, dict[str, float]]:
    """Examples/s of PPlug's own training loop (forward, backward, AdamW), caches warm.

    An untimed one-step fit in a scratch folder first fills the embedding cache and
    loads the models; then a ``steps``-step fit of ``batch`` examples is timed end to end.
    """
    def params(n: int) -> PPlugParams:
        return PPlugParams(batch_size=batch, micro_batch=batch, max_steps=n, max_train_examples=len(train))

    PPlug(dataclasses.replace(ctx, artifacts_dir=ctx.artifacts_dir / "warm-up"), params(1)).fit(train)
    pplug = PPlug(ctx, params(steps))
    start = time.perf_counter()
    pplug.fit(train)
    seconds = time.perf_counter() - start
    return pplug, {"steps": steps, "batch": batch, "seconds": seconds, "examples_per_s": steps * batch / seconds}


def time_inference(adhoc: AdHoc, pplug: PPlug, batches: list[list[Example]], rounds: int) -> dict[str, Any]:
    """Per batch, best of ``rounds``: adhoc, PPlug soft tokens alone, PPlug end to end.

    Returns seconds per example, and generated tokens per example for both methods:
    the two decode different outputs, so end-to-end time also differs by length.
    """
    keys = ("adhoc", "soft_tokens", "pplug")
    best = {key: [float("inf")] * len(batches) for key in keys}
    outputs: dict[str, list[str]] = {"adhoc": [], "pplug": []}
    for r in range(rounds):
        for i, batch in enumerate(batches):
            start = time.perf_counter()
            plain = adhoc.predict(batch)
            best["adhoc"][i] = min(best["adhoc"][i], time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                pplug.soft_tokens(batch)
            best["soft_tokens"][i] = min(best["soft_tokens"][i], time.perf_counter() - start)
            start = time.perf_counter()
            personal = pplug.predict(batch)
            best["pplug"][i] = min(best["pplug"][i], time.perf_counter() - start)
            if r == 0:
                outputs["adhoc"] += plain
                outputs["pplug"] += personal
    n = sum(len(b) for b in batches)
    tokenizer = adhoc.ctx.llm().tokenizer
    tokens = {key: sum(len(tokenizer.encode(t, add_special_tokens=False)) for t in texts) / n
              for key, texts in outputs.items()}
    return {"seconds": {key: sum(values) / n for key, values in best.items()}, "generated_tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--task", default="lamp7")
    parser.add_argument("--n", type=int, default=16, help="dev questions to decode")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    task = TASKS.get(args.task)
    train = list(task.load_split(task, "synthetic", "train", seed=0).examples)
    dev = list(task.load_split(task, "synthetic", "dev", seed=0).examples)[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        ctx = context(args, Path(tmp))
        pplug, training = train_throughput(ctx, train, args.train_steps, args.train_batch)
        batches = fixed_batches(dev, args.batch_size)
        inference = time_inference(AdHoc(ctx), pplug, batches, args.rounds)
        trainable = pplug.cost()["trainable_parameters"]
        artifact = pplug.weights_path.stat().st_size
    per_example, tokens = inference["seconds"], inference["generated_tokens"]
    overhead = per_example["pplug"] - per_example["adhoc"]
    result = {"llm": args.llm, "encoder": args.encoder, "task": args.task, "n": len(dev), "beams": args.beams,
              "batch_size": args.batch_size, "rounds": args.rounds, "training": training,
              "inference_seconds_per_example": per_example, "generated_tokens_per_example": tokens,
              "overhead_seconds_per_example": overhead,
              "overhead_fraction": overhead / per_example["adhoc"], "trainable_parameters": trainable,
              "artifact_bytes": artifact}
    m = machine()
    md = [
        "# PPlug cost: training and inference throughput",
        "",
        f"`PYTHONPATH=. .venv/bin/python benchmarks/bench_pplug.py` — {args.llm} + {args.encoder}, synthetic "
        f"{args.task}, {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads, {m['device']}).",
        "Timings are wall clock on a shared machine; inference alternates the methods batch by batch and keeps "
        f"each batch's best of {args.rounds} rounds.",
        "",
        "## Training (PPlug's own loop: plug-in forward, frozen-LLM forward/backward, AdamW)",
        "",
        "| steps | examples/step | seconds | examples/s | trainable params | saved plug-in |",
        "|---|---|---|---|---|---|",
        f"| {training['steps']} | {training['batch']} | {training['seconds']:.1f} | {training['examples_per_s']:.2f} "
        f"| {trainable / 1e6:.1f} M | {artifact / 1e6:.1f} MB |",
        "",
        f"## Inference ({len(dev)} dev questions, batches of {args.batch_size}, {args.beams} beams)",
        "",
        "| | s/example | examples/s | generated tokens/example | ms/generated token |",
        "|---|---|---|---|---|",
        *(f"| {key} | {per_example[key]:.3f} | {1 / per_example[key]:.2f} | {tokens[key]:.1f} | "
          + (f"{1000 * per_example[key] / tokens[key]:.1f} |" if tokens[key] else "- |") for key in ("adhoc", "pplug")),
        f"| pplug soft tokens alone (history lookup + input encoder + MLPs) | {per_example['soft_tokens']:.4f} "
        "| | | |",
        "",
        f"End to end PPlug takes **{overhead * 1000:+.1f} ms per example** vs adhoc "
        f"({100 * overhead / per_example['adhoc']:+.1f}%). The cost PPlug itself adds is building the two soft "
        f"tokens, **{per_example['soft_tokens'] * 1000:.1f} ms per example** "
        f"({100 * per_example['soft_tokens'] / per_example['adhoc']:.1f}% of adhoc's decode), plus two extra input "
        "positions in prefill; the rest of the end-to-end difference comes from the two methods decoding outputs "
        "of different lengths (and timing noise).",
    ]
    print("\n".join(md))
    if not args.no_write:
        write_result("bench_pplug", result, "\n".join(md))


if __name__ == "__main__":
    main()
