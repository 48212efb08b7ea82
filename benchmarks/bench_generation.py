"""Generation throughput: batched, length-sorted, KV-cached decoding vs a batch-size-1 loop.

Same backbone (``smollm2-135m``), same prompts, same settings, one process; greedy and
4-beam. ``batched`` is :meth:`harness.backbones.Backbone.generate` as every method uses
it (length-sorted batches, KV cache on, beam search batched); ``batch-1`` is the same
call once per prompt — the reference-style loop.

The limit: this machine's dense float32 matmul throughput is measured in the same run
and generation's achieved FLOP/s is reported as a fraction of it. FLOP model (stated,
not measured): a forward pass over one token costs ``2 x params`` FLOPs; generation runs
``beams x (prompt tokens + generated tokens)`` token-forwards per prompt (Hugging Face
expands the prompt to every beam before the prefill), counting real tokens only — pad
tokens and the steps a finished sequence idles in its batch are not useful work, so they
are excluded. A second, tighter model leaves out the embedding lookup (not a matmul)
and charges the LM head only where logits are computed (the last prompt position and
each generated token); attention's ``O(length^2)`` term is small at these lengths and
left out of both. A plain batched forward pass over the same prompts (no decoding)
shows what this model's matmuls reach on this machine.

Prediction batch size: the same ``RunContext.generate`` every method predicts through,
greedy, on the same prompts at each ``--batch-sizes`` value, free generation on
``--task`` and constrained decoding (each label scored under the prompt) on
``--constrained-task``; examples/s and the ratio to the smallest batch size (1 by
default: the reference's one-prompt loop), from which the ``small`` profile's
prediction ``batch_size`` is chosen. The 1-minute load average is recorded around every
measurement and a loud warning printed above ``--max-load``.

    python -m benchmarks.bench_generation [--llm smollm2-135m] [--task lamp7] [--n 32]
    python -m benchmarks.bench_generation --batch-sizes 1,8,16,32,64 --constrained-task lamp3
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import (
    IDLE_LOAD_LIMIT,
    load_1m,
    load_warning,
    machine,
    machine_line,
    matmul_gflops,
    timed,
    write_result,
)
from harness.api import RunContext
from harness.backbones import OPTION_ROWS, Backbone, GenerationSettings, load_llm
from harness.registries import TASKS
from harness.settings import GENERATION_PROFILES

#: A batch size whose examples/s is within this share of the fastest counts as "as fast".
NEAR = 0.05


def bench_prompts(task_name: str, n: int, data: str = "synthetic") -> tuple[list[str], str]:
    """``n`` dev inputs of the task (synthetic LaMP data), and where they came from."""
    from tasks.sources import load_lamp_split

    task = TASKS.get(task_name)
    split = load_lamp_split(task, data, "dev")
    return [e.input for e in split.examples[:n]], f"{split.source.kind} {task_name} dev"


def param_counts(llm: Backbone) -> dict[str, int]:
    model = llm.model
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_params = head.weight.numel() if head is not None else 0
    tied = head is not None and head.weight.data_ptr() == emb.data_ptr()
    # Matmul parameters outside embedding / head: what every token-forward multiplies through.
    body = total - emb.numel() - (0 if tied else head_params)
    return {"total": total, "embedding": emb.numel(), "head": head_params, "body": body, "tied": int(tied)}


def generation_flops(counts: dict[str, int], beams: int, in_tokens: int, out_tokens: int, n_prompts: int) -> dict[str, float]:
    simple = 2 * counts["total"] * beams * (in_tokens + out_tokens)
    tight = 2 * counts["body"] * beams * (in_tokens + out_tokens) + 2 * counts["head"] * beams * (out_tokens + n_prompts)
    return {"simple": float(simple), "tight": float(tight)}


def forward_gflops(llm: Backbone, prompts: list[str], counts: dict[str, int], batch_size: int) -> float:
    """One batched forward over the prompts (logits only at the last position), GFLOP/s."""
    rows = sorted((llm.prompt_ids(p, 512) for p in prompts), key=len, reverse=True)[:batch_size]
    embeds, mask = llm._assemble(rows, None, left_pad=True)
    body = llm.model.get_decoder() if hasattr(llm.model, "get_decoder") else llm.model.base_model

    @torch.inference_mode()
    def fwd() -> Any:
        hidden = body(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return llm.model.get_output_embeddings()(hidden[:, -1])

    fwd()
    seconds, _ = timed(fwd, 2)
    tokens = int(mask.sum())
    flops = 2 * counts["body"] * tokens + 2 * counts["head"] * len(rows)
    return flops / seconds / 1e9


def prompts_per_pass(decoding: str, batch_size: int, n: int, n_labels: int) -> int:
    """Prompts one model pass holds: constrained scoring caps a pass at ``OPTION_ROWS``
    (prompt, label) rows (``Backbone.score_options``), free generation does not."""
    cap = max(1, min(batch_size, OPTION_ROWS // n_labels)) if decoding == "constrained" else batch_size
    return min(cap, n)


def batch_sweep(llm: Backbone, task_name: str, data: str, n: int, batch_sizes: list[int], decoding: str,
                max_new_tokens: int) -> dict[str, Any]:
    """Examples/s of ``RunContext.generate`` at each prediction batch size, on the same prompts.

    Greedy, the run's one prediction path (what every method calls), so the figures are
    the ones a run's ``batch_size`` setting changes. Each size is timed once, after one
    small warm-up of this decoding path, smallest first; ratios and output agreement are
    against the smallest size (padding changes float rounding, which can flip a near-tie).
    A size that runs the same passes as one already timed (more than ``n`` prompts, or
    past the constrained cap) is reported with that size's figures, not timed again.
    """
    prompts, origin = bench_prompts(task_name, n, data)
    task = TASKS.get(task_name)
    rows: list[dict[str, Any]] = []
    by_pass: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(task=task, llm_name=llm.name, encoder_name="(not used)", seed=0, artifacts_dir=Path(tmp),
                         generation=GenerationSettings(num_beams=1, max_new_tokens=max_new_tokens),
                         progress=False, decoding=decoding, _llm=llm)
        ctx.generate(prompts[:2])  # warm up kernels and caches on this path
        first: list[str] = []
        for size in sorted(set(batch_sizes)):
            per_pass = prompts_per_pass(decoding, size, len(prompts), len(task.labels))
            if per_pass in by_pass:
                rows.append({**by_pass[per_pass], "batch_size": size, "timed_as": by_pass[per_pass]["batch_size"]})
                continue
            run = dataclasses.replace(ctx, generation=dataclasses.replace(ctx.generation, batch_size=size))
            before = load_1m()
            seconds, answers = timed(lambda run=run: run.generate(prompts))
            after = load_1m()
            first = first or answers
            by_pass[per_pass] = {"batch_size": size, "prompts_per_pass": per_pass, "timed_as": size,
                                 "seconds": seconds, "examples_per_s": len(prompts) / seconds,
                                 "same_output_as_smallest": sum(a == b for a, b in zip(answers, first)) / len(prompts),
                                 "load_before": before, "load_after": after}
            rows.append(by_pass[per_pass])
            print(f"{decoding} batch {size}: {len(prompts) / seconds:.2f} ex/s (load {before} -> {after})", flush=True)
    for r in rows:
        r["ratio_vs_smallest"] = r["examples_per_s"] / rows[0]["examples_per_s"]
    return {"decoding": decoding, "task": task_name, "prompts_from": origin, "n": len(prompts),
            "n_labels": len(task.labels), "max_new_tokens": max_new_tokens, "rows": rows}


def sweep_markdown(sweep: dict[str, Any]) -> list[str]:
    """One sweep's table and its reading, computed from the numbers."""
    rows, smallest = sweep["rows"], sweep["rows"][0]["batch_size"]
    what = ("greedy generation" if sweep["decoding"] == "free"
            else f"constrained decoding (the {sweep['n_labels']} labels scored under each prompt)")
    md = [f"## Prediction batch size: {what}, {sweep['n']} prompts ({sweep['prompts_from']})", "",
          f"| batch size | prompts per pass | seconds | examples/s | vs batch {smallest} | same output as batch "
          f"{smallest} | load before/after |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        passes = str(r["prompts_per_pass"])
        if r["timed_as"] != r["batch_size"]:
            passes += f" (the passes of batch {r['timed_as']}: its figures)"
        md.append(f"| {r['batch_size']} | {passes} | {r['seconds']:.2f} | {r['examples_per_s']:.2f} | "
                  f"**{r['ratio_vs_smallest']:.2f}x** | {r['same_output_as_smallest']:.0%} | "
                  f"{r['load_before']} / {r['load_after']} |")
    timed = [r for r in rows if r["timed_as"] == r["batch_size"]]
    best = max(timed, key=lambda r: r["examples_per_s"])
    near = [r["batch_size"] for r in rows if r["examples_per_s"] >= (1 - NEAR) * best["examples_per_s"]]
    text = (f"Reading: the fastest batch size is **{best['batch_size']}** ({best['examples_per_s']:.2f} examples/s, "
            f"{best['ratio_vs_smallest']:.2f}x batch {smallest}); within {NEAR:.0%} of it: "
            f"{', '.join(map(str, near))}.")
    default = GENERATION_PROFILES["small"]["batch_size"]
    current = next((r for r in rows if r["batch_size"] == default), None)
    if current is not None:
        text += (f" The small profile's current batch_size={default} runs at "
                 f"{current['examples_per_s'] / best['examples_per_s']:.0%} of the fastest.")
    capped = [r["batch_size"] for r in rows if r["prompts_per_pass"] < min(r["batch_size"], sweep["n"])]
    if capped:
        text += (f" Batch sizes {', '.join(map(str, capped))} run as {rows[-1]['prompts_per_pass']} prompts per "
                 f"pass: one scoring pass holds at most {OPTION_ROWS} (prompt, label) rows.")
    return [*md, "", text]


def pplug_training(llm_name: str, task_name: str, steps: int, batch: int, peak: float,
                   encoder_name: str = "minilm-l6") -> dict[str, Any] | None:
    """Time PPlug's real training loop between optimizer steps; FLOP/s vs ``peak``."""
    import statistics
    import time

    from tasks.sources import load_lamp_split

    try:
        from methods.pplug import PPlug, PPlugParams
    except ImportError as exc:
        print(f"PPlug training skipped: {exc}")
        return None
    task = TASKS.get(task_name)
    train = [e for e in load_lamp_split(task, "synthetic", "train").examples if e.output][:batch]
    stamps: list[float] = []
    real_step = torch.optim.AdamW.step

    def step(self: Any, *a: Any, **kw: Any) -> Any:
        out = real_step(self, *a, **kw)
        stamps.append(time.perf_counter())
        return out

    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(task=task, llm_name=llm_name, encoder_name=encoder_name, seed=0, artifacts_dir=Path(tmp),
                         generation=GenerationSettings(), progress=False)
        params = PPlugParams(batch_size=batch, micro_batch=batch, max_train_examples=batch, max_steps=steps + 1,
                             epochs=1000)
        method = PPlug(ctx, params)
        torch.optim.AdamW.step = step
        try:
            method.fit(train)
        finally:
            torch.optim.AdamW.step = real_step
    step_seconds = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))  # the first step is a warm-up
    llm, plug = ctx.llm(), method.plug
    assert plug is not None
    in_tokens = method.max_input_tokens
    llm_tokens = sum(plug.n_tokens + len(llm.prompt_ids(p, in_tokens)) + len(llm.target_ids(e.output or "", ctx.max_new_tokens))
                     for p, e in zip(method.prompts(train), train))
    tokenizer = ctx.encoder().tokenizer
    enc_tokens = sum(len(tokenizer(method.query_text(e), truncation=True)["input_ids"]) for e in train)
    items = sum(min(len(e.profile), params.max_history) for e in train)
    llm_params = sum(p.numel() for p in llm.model.parameters())
    enc_params = sum(p.numel() for p in plug.input_encoder.parameters() if p.requires_grad)
    proj_params = sum(p.numel() for p in plug.proj.parameters())
    flops = 4 * llm_params * llm_tokens + 6 * enc_params * enc_tokens + 6 * proj_params * items
    return {"encoder": encoder_name, "batch": batch, "steps_timed": len(stamps) - 1, "step_seconds": step_seconds,
            "llm_tokens": llm_tokens, "encoder_tokens": enc_tokens, "history_items": items, "llm_params": llm_params,
            "trainable_encoder_params": enc_params, "proj_params": proj_params, "gflop_per_step": flops / 1e9,
            "gflops": flops / step_seconds / 1e9, "fraction_of_matmul_peak": flops / step_seconds / 1e9 / peak}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--task", default="lamp7")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--n", type=int, default=16, help="prompts per measurement")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--beams", default="1,4", help="comma-separated beam widths")
    parser.add_argument("--pplug-steps", type=int, default=4, help="PPlug optimizer steps to time (0: skip)")
    parser.add_argument("--pplug-batch", type=int, default=4, help="examples per PPlug step")
    parser.add_argument("--batch-sizes", default="1,8,16,32,64",
                        help="prediction batch sizes to sweep, comma-separated ('' to skip the sweep)")
    parser.add_argument("--sweep-n", type=int, default=None,
                        help="prompts per sweep measurement (default: the largest batch size, so it is one full batch)")
    parser.add_argument("--constrained-task", default="lamp3",
                        help="classification task for the constrained-decoding sweep ('' to skip)")
    parser.add_argument("--max-load", type=float, default=IDLE_LOAD_LIMIT,
                        help="warn loudly when the 1-minute load average exceeds this")
    parser.add_argument("--out", type=Path, default=None, help="folder for bench_generation.{md,json} (default results/)")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.bench_generation", *(sys.argv[1:] if argv is None else argv)])
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    load_start = load_1m()

    prompts, origin = bench_prompts(args.task, args.n, args.data)
    llm = load_llm(args.llm)
    counts = param_counts(llm)
    peak_start = matmul_gflops()
    fwd = forward_gflops(llm, prompts, counts, args.batch_size)
    llm.generate(prompts[:2], num_beams=1, max_new_tokens=4, batch_size=2)  # warm up kernels and caches
    in_tokens = sum(len(llm.prompt_ids(p, 512)) for p in prompts)
    rows = []
    for beams in (int(b) for b in args.beams.split(",")):
        settings = dict(num_beams=beams, max_new_tokens=args.max_new_tokens)
        # Interleaved, chunk by chunk (one batch of prompts at a time, alternating which
        # side goes first): other processes on shared cores change the machine's speed
        # over minutes, and both sides must see the same conditions.
        t_batched = t_single = 0.0
        out_b: list[str] = []
        out_s: list[str] = []
        for c, start in enumerate(range(0, len(prompts), args.batch_size)):
            chunk = prompts[start : start + args.batch_size]

            def batched(chunk: list[str] = chunk, settings: dict = settings) -> list[str]:
                return llm.generate(chunk, batch_size=args.batch_size, **settings)

            def one_by_one(chunk: list[str] = chunk, settings: dict = settings) -> list[str]:
                return [llm.generate([p], batch_size=1, **settings)[0] for p in chunk]

            first, second = (batched, one_by_one) if c % 2 == 0 else (one_by_one, batched)
            t1, o1 = timed(first)
            t2, o2 = timed(second)
            (tb, ob), (ts, os_) = ((t1, o1), (t2, o2)) if first is batched else ((t2, o2), (t1, o1))
            t_batched += tb
            t_single += ts
            out_b += ob
            out_s += os_
        agree = sum(a == b for a, b in zip(out_b, out_s)) / len(prompts)
        # Generated tokens: the decoded text plus its end-of-sequence token, capped at the limit.
        out_tokens = sum(min(args.max_new_tokens, len(llm.tokenizer.encode(o, add_special_tokens=False)) + 1)
                         for o in out_b)
        flops = generation_flops(counts, beams, in_tokens, out_tokens, len(prompts))
        rows.append({
            "beams": beams, "batched_s": t_batched, "single_s": t_single,
            "batched_ex_per_s": len(prompts) / t_batched, "single_ex_per_s": len(prompts) / t_single,
            "speedup": t_single / t_batched, "same_output_fraction": agree,
            "prompt_tokens": in_tokens, "generated_tokens": out_tokens,
            "generated_tokens_per_s": out_tokens / t_batched,
            "batched_gflops": flops["simple"] / t_batched / 1e9,
            "batched_gflops_tight": flops["tight"] / t_batched / 1e9,
            "single_gflops": flops["simple"] / t_single / 1e9,
            "flops_simple": flops["simple"], "flops_tight": flops["tight"],
        })
    peak = max(peak_start, matmul_gflops())  # the best the shared machine gave, before and after
    for r in rows:
        r["fraction_of_matmul_peak"] = r["flops_simple"] / r["batched_s"] / 1e9 / peak
        r["fraction_of_matmul_peak_tight"] = r["flops_tight"] / r["batched_s"] / 1e9 / peak
        r["single_fraction_of_matmul_peak"] = r["flops_simple"] / r["single_s"] / 1e9 / peak
    sweeps = []
    if sizes:
        n_sweep = args.sweep_n or max(sizes)
        sweeps.append(batch_sweep(llm, args.task, args.data, n_sweep, sizes, "free", args.max_new_tokens))
        if args.constrained_task:
            sweeps.append(batch_sweep(llm, args.constrained_task, args.data, n_sweep, sizes, "constrained",
                                      args.max_new_tokens))
    loads = [x for sw in sweeps for r in sw["rows"] for x in (r["load_before"], r["load_after"])]
    warning = load_warning([load_start, *loads, load_1m()], args.max_load)
    training = pplug_training(args.llm, args.task, args.pplug_steps, args.pplug_batch, peak) if args.pplug_steps else None
    md = [f"# Generation throughput ({args.llm}, {origin}, {len(prompts)} prompts)", "",
          *([warning, ""] if warning else []),
          machine_line(), "",
          f"Dense fp32 matmul peak measured in the same run: **{peak:.1f} GFLOP/s** "
          f"(2048x2048 GEMM, best of before and after the measurements; {peak_start:.1f} before). Timings are "
          "interleaved chunk by chunk (batched / batch-1 alternating first) so both see the same machine load."
          f" A plain batched forward pass of {args.llm} over these prompts reaches "
          f"{fwd:.1f} GFLOP/s ({fwd / peak:.0%} of peak).", "",
          f"{len(prompts)} prompts ({in_tokens} prompt tokens), up to {args.max_new_tokens} new tokens, "
          f"batch {args.batch_size}; parameters {counts['total'] / 1e6:.1f}M "
          f"({counts['body'] / 1e6:.1f}M outside the embedding/LM head).", "",
          "| beams | batched ex/s | batch-1 ex/s | speedup | batched GFLOP/s | of matmul peak | "
          "batch-1 of peak | of peak (tight model) | same output |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['beams']} | {r['batched_ex_per_s']:.2f} | {r['single_ex_per_s']:.2f} | "
                  f"**{r['speedup']:.2f}x** | {r['batched_gflops']:.1f} | {r['fraction_of_matmul_peak']:.0%} | "
                  f"{r['single_fraction_of_matmul_peak']:.0%} | {r['fraction_of_matmul_peak_tight']:.0%} | "
                  f"{r['same_output_fraction']:.0%} |")
    md += ["", f"Command: `{command}`. FLOPs = 2 x params x beams x (prompt + generated tokens), "
           "real tokens only (see the module docstring; 'tight' drops the embedding lookup and charges the LM head "
           "only where logits are computed). 'same output': batched and batch-1 strings equal "
           "(padding changes float rounding, which can flip a near-tie)."]
    if training is not None:
        t = training
        md += ["", f"## PPlug training step ({args.llm} + {t['encoder']}, {t['batch']} examples per step)", "",
               f"{t['steps_timed']} steps timed, median **{t['step_seconds']:.2f} s/step**; per step "
               f"{t['llm_tokens']} LLM tokens, {t['encoder_tokens']} query tokens, {t['history_items']} history items; "
               f"model {t['gflop_per_step']:.1f} GFLOP/step -> **{t['gflops']:.1f} GFLOP/s = "
               f"{t['fraction_of_matmul_peak']:.0%} of the matmul peak**.",
               "FLOPs = 4 x LLM params x LLM tokens + 6 x trainable encoder params x query tokens + 6 x Proj params "
               "x history items (see the module docstring)."]
    for sweep in sweeps:
        md += ["", *sweep_markdown(sweep)]
    if warning:
        md += ["", warning]
    result = {"command": command, "llm": args.llm, "task": args.task, "prompts_from": origin, "n": len(prompts),
              "pplug_training": training, "batch_sweeps": sweeps, "max_load": args.max_load,
              "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "params": counts,
              "matmul_gflops": peak, "forward_gflops": fwd, "rows": rows, "machine": machine(),
              "headline": {f"speedup_beams{r['beams']}": r["speedup"] for r in rows}
              | {f"peak_fraction_beams{r['beams']}": r["fraction_of_matmul_peak"] for r in rows}
              | ({"pplug_train_peak_fraction": training["fraction_of_matmul_peak"]} if training else {})
              | {f"fastest_batch_{sw['decoding']}": max((r for r in sw["rows"] if r["timed_as"] == r["batch_size"]),
                                                       key=lambda r: r["examples_per_s"])["batch_size"]
                 for sw in sweeps}}
    write_result("bench_generation", result, "\n".join(md), args.out)
    print("\n".join(md))
    if warning:
        print(f"\n{warning}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
