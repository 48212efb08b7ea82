"""OPPU stage 2 cost: batched multi-user LoRA training vs sequential per-user peft.

Three trainers get the same backbone, users, pairs, per-user batch order, task-LoRA
initialisation and hyper-parameters (``methods.oppu``), and each saves one safetensors
adapter per user:

* ``reference``: the OPPU reference's shape: peft, one user after another, the loss
  HF computes from full ``[B, T, vocab]`` logits (what ``Trainer`` optimises);
* ``sequential``: the same loop with ``Backbone.loss``, which projects to the vocabulary
  only at target positions (``trainer=sequential`` in ``methods.oppu``);
* ``batched``: :class:`harness.lora.BatchedLoRA`, many users per pass (the default).

We report users trained per minute, adapter bytes per user, and how far the batched
adapters are from the sequential ones (they should agree to float tolerance). Users
are hand-made LaMP-7-style tweet histories with a per-user signature word; the task
LoRA is a fixed random init with non-zero B, standing in for a trained one (its values
do not change the cost).

    PYTHONPATH=. .venv/bin/python -m benchmarks oppu            # writes results/bench_oppu.{md,json}
    PYTHONPATH=. .venv/bin/python benchmarks/bench_oppu.py --users 4 --batch-sizes 4 --no-write
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import machine_line, write_result
from harness.backbones import Backbone, load_llm
from harness.lora import LoRAWeights, default_targets, save_lora, target_module_names
from harness.registries import TASKS
from harness.lora_training import TrainSettings, schedule, stable_seed, train_batched, train_sequential
from methods.oppu import user_pairs

WORDS = ("coffee", "marathon", "guitar", "garden", "physics", "pizza", "sunset", "chess", "python", "ocean",
         "bakery", "hiking", "jazz", "poetry", "soccer", "robots")
TRAINERS = ("reference", "sequential", "batched")


class FullLogitsLoss:
    """A backbone whose ``loss`` is HF's own: logits at every position, then the mean CE.

    This is what the reference trains with (``Trainer`` calls ``model(**batch).loss``).
    """

    def __init__(self, backbone: Backbone) -> None:
        self._backbone = backbone

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backbone, name)

    def loss(self, prompts: Sequence[str], targets: Sequence[str], *, max_input_tokens: int,
             max_target_tokens: int) -> torch.Tensor:
        bb = self._backbone
        rows = [bb.prompt_ids(p, max_input_tokens) for p in prompts]
        tgts = [bb.target_ids(t, max_target_tokens) for t in targets]
        embeds, mask = bb._assemble([r + t for r, t in zip(rows, tgts)], None, left_pad=False)
        labels = torch.full(mask.shape, -100, dtype=torch.long)
        for i, (r, t) in enumerate(zip(rows, tgts)):
            labels[i, len(r): len(r) + len(t)] = torch.tensor(t)
        return bb.model(inputs_embeds=embeds, attention_mask=mask, labels=labels.to(bb.device)).loss


def user_profiles(n_users: int, n_items: int) -> dict[str, list[dict[str, str]]]:
    """Tweet histories: every user writes about one signature topic in their own phrasing."""
    profiles = {}
    for u in range(n_users):
        word = WORDS[u % len(WORDS)]
        profiles[f"user{u}"] = [
            {"id": f"{u}-{i}", "text": f"day {i}: honestly nothing beats {word} in the morning, "
                                       f"{word} forever and {i + 2} more reasons why #{word}"}
            for i in range(n_items)
        ]
    return profiles


def run_trainer(name: str, backbone: Backbone, names: list[str], jobs: list, init: LoRAWeights,
                hp: TrainSettings, out: Path) -> tuple[float, list[LoRAWeights], int]:
    """Train every user and save its adapter; returns seconds, adapters, bytes per user."""
    start = time.perf_counter()
    if name == "batched":
        adapters = train_batched(backbone, names, jobs, [init] * len(jobs), hp)
    else:
        adapters = train_sequential(FullLogitsLoss(backbone) if name == "reference" else backbone,  # type: ignore[arg-type]
                                    names, jobs, [init] * len(jobs), hp)
    for u, weights in enumerate(adapters):
        save_lora(out / f"user{u}.safetensors", weights)
    seconds = time.perf_counter() - start
    sizes = [(out / f"user{u}.safetensors").stat().st_size for u in range(len(adapters))]
    return seconds, adapters, sum(sizes) // len(sizes)


def bench(llm: str, n_users: int, n_items: int, batch_sizes: list[int], epochs: int,
          repeat: int) -> dict[str, Any]:
    backbone = load_llm(llm)
    names = target_module_names(backbone.model, default_targets(backbone.model))
    r = 8
    gen = torch.Generator().manual_seed(0)
    init = {n: (0.02 * torch.randn(r, backbone.model.get_submodule(n).in_features, generator=gen),
                0.02 * torch.randn(backbone.model.get_submodule(n).out_features, r, generator=gen)) for n in names}
    task = TASKS.get("lamp7")
    pairs = {u: user_pairs(task, items) for u, items in user_profiles(n_users, n_items).items()}
    hp = TrainSettings(r=r, alpha=8.0, lr=1e-4, weight_decay=1e-2, warmup_ratio=0.1, max_grad_norm=0.3,
                       max_input_tokens=256, max_target_tokens=64, max_batch_examples=64)
    rows = []
    for bs in batch_sizes:
        jobs = [schedule(p, epochs, bs, stable_seed(0, "user", u)) for u, p in pairs.items()]
        result: dict[str, Any] = {"per_user_batch": bs, "steps_per_user": len(jobs[0])}
        adapters = {}
        best = dict.fromkeys(TRAINERS, float("inf"))
        for _ in range(repeat):  # alternate, keep the best: the machine may be shared
            for trainer in TRAINERS:
                with tempfile.TemporaryDirectory() as tmp:
                    seconds, adapters[trainer], nbytes = run_trainer(trainer, backbone, names, jobs, init, hp, Path(tmp))
                best[trainer] = min(best[trainer], seconds)
                result[trainer] = {"seconds": best[trainer], "users_per_minute": 60 * n_users / best[trainer],
                                   "adapter_bytes_per_user": nbytes}
                print(f"batch {bs} {trainer}: {seconds:.1f}s, {60 * n_users / seconds:.2f} users/min", flush=True)
        result["speedup_vs_reference"] = result["reference"]["seconds"] / result["batched"]["seconds"]
        result["speedup_vs_sequential"] = result["sequential"]["seconds"] / result["batched"]["seconds"]
        seq, bat = adapters["sequential"], adapters["batched"]
        result["max_abs_weight_diff"] = max((s[n][i] - b[n][i]).abs().max().item()
                                            for s, b in zip(seq, bat) for n in names for i in (0, 1))
        # Relative difference of what training changed (trained - init), over all users.
        num = sum(((s[n][i] - b[n][i]) ** 2).sum().item() for s, b in zip(seq, bat) for n in names for i in (0, 1))
        den = sum(((s[n][i] - init[n][i]) ** 2).sum().item() for s in seq for n in names for i in (0, 1))
        result["relative_update_diff"] = (num / den) ** 0.5
        rows.append(result)
    return {"llm": llm, "repeat": repeat, "users": n_users, "items_per_user": n_items, "epochs": epochs, "rank": r,
            "targets": default_targets(backbone.model), "n_lora_modules": len(names), "rows": rows}


def markdown(res: dict[str, Any], measured_on: dict[str, Any] | None = None) -> str:
    passes = res["users"] * res["items_per_user"] * res["epochs"]  # example forward+backward passes
    lines = [
        "# OPPU stage 2: batched multi-user LoRA vs sequential per-user peft",
        "",
        f"Backbone `{res['llm']}`, {res['users']} users x {res['items_per_user']} profile items (LaMP-7 "
        f"continuation pairs), {res['epochs']} epochs, LoRA r={res['rank']} on {'/'.join(res['targets'])} "
        f"({res['n_lora_modules']} modules), AdamW lr 1e-4, warmup 0.1 + linear decay, grad-norm 0.3. "
        f"Same pairs, batch order and init for every trainer; time includes saving each adapter; "
        f"best of {res['repeat']} alternating runs.",
        machine_line(measured_on),
        "",
        "Trainers: **reference** = peft, one user after another, HF's full-logits loss (the OPPU "
        "reference's `Trainer` objective); **sequential** = the same loop with `Backbone.loss` "
        "(vocabulary projection at target positions only); **batched** = `BatchedLoRA`, all users "
        "in one pass (`methods.oppu` default).",
        "",
        "| per-user batch | steps/user | reference users/min | sequential users/min | batched users/min | "
        "batched vs reference | batched vs sequential | examples/s reference / batched | adapter bytes/user | "
        "max abs weight diff | relative update diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["rows"]:
        lines.append(
            f"| {row['per_user_batch']} | {row['steps_per_user']} | {row['reference']['users_per_minute']:.2f} | "
            f"{row['sequential']['users_per_minute']:.2f} | {row['batched']['users_per_minute']:.2f} | "
            f"**{row['speedup_vs_reference']:.2f}x** | {row['speedup_vs_sequential']:.2f}x | "
            f"{passes / row['reference']['seconds']:.1f} / {passes / row['batched']['seconds']:.1f} | "
            f"{row['batched']['adapter_bytes_per_user']:,} | {row['max_abs_weight_diff']:.1e} | "
            f"{row['relative_update_diff']:.1e} |")
    lines += [
        "",
        "Reading: the batched trainer's examples/s hardly changes with the per-user batch: it",
        "runs at this CPU's compute floor (the frozen model's forward and backward are the same",
        "work however users are grouped). Batching users therefore removes only what small",
        "per-user steps waste (under-filled matrix products, per-step overhead), so the gain is",
        "largest when per-user batches are small (it is the ratio of the two examples/s",
        "columns), and it cannot reach several-fold on a CPU, where one user's step already",
        "keeps both cores busy. On a GPU, where a one-user step leaves most of the",
        "device idle, the same code path has far more to gain (not measured: no GPU was lent).",
        "Skipping the vocabulary projection outside the targets (`sequential` vs `reference`)",
        "removes real work on every trainer. Weight differences: Adam's first steps move every element by about",
        "+-lr whatever the gradient's size, so elements whose gradient is ~0 turn float",
        "rounding into up to 2*lr; the relative difference of the updates (trained - init) is",
        "the meaningful agreement figure.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,4,16", help="per-user minibatch sizes to compare")
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs per trainer; the best is kept")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    res = bench(args.llm, args.users, args.items, [int(b) for b in args.batch_sizes.split(",")], args.epochs,
                args.repeat)
    if not args.no_write:
        write_result("bench_oppu", res, markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
