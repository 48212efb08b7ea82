"""Many LoRA adapters in one model: per-example routing, per-slot optimizer and clipping.

Training one small adapter per user, one user after another, spends most of its time
on per-user overhead and on tiny batches. :class:`BatchedLoRA` wraps a model's target
``nn.Linear`` layers so that each layer holds one low-rank pair per *slot* (user) and
computes, for every example ``b`` of a batch routed to slot ``u = index[b]``::

    y_b = W x_b + scale * B_u A_u x_b

Examples of different users then share one forward/backward pass, yet every user's
pair only ever sees gradients from its own examples (the base model is frozen and
examples do not interact inside a batch). :class:`SlotAdamW` and
:func:`clip_grad_norm_per_slot` apply AdamW and gradient-norm clipping *per slot*, with
each slot's own step count and learning rate, so a slot trained in a mixed batch ends
with the same weights as a standalone ``torch.optim.AdamW`` run on that user alone
(within float tolerance). Nothing here knows about users or tasks; methods decide what
a slot means.

Weights travel as :data:`LoRAWeights`: ``{module name: (A [r, in], B [out, r])}``, the
same layout as peft's ``lora_A`` / ``lora_B`` ``weight`` tensors, so adapters trained
here and with peft are interchangeable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

LoRAWeights = dict[str, tuple[torch.Tensor, torch.Tensor]]


class Router:
    """The slot of each example of the batch being computed (shared by all layers).

    A one-element index routes every row of every batch to that slot, whatever the batch
    size or order (how one user's questions go through the shared decoding path).
    """

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None

    def rows(self, n_rows: int) -> torch.Tensor:
        """Slot per row; beam search repeats each example ``n_rows / len(index)`` times."""
        if self.index is None:
            raise RuntimeError("BatchedLoRA layer called outside `with lora.route(index):`")
        n = self.index.shape[0]
        if n_rows == n:
            return self.index
        if n_rows % n:
            raise RuntimeError(f"cannot route {n_rows} rows for a batch of {n} examples")
        return self.index.repeat_interleave(n_rows // n)  # HF expands beams example by example


class BatchedLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus one trainable low-rank pair per slot."""

    def __init__(self, base: nn.Linear, n_slots: int, r: int, scale: float, router: Router) -> None:
        super().__init__()
        self.base = base
        self.scale = scale
        self.router = router
        ref = base.weight
        self.lora_A = nn.Parameter(torch.zeros(n_slots, r, base.in_features, dtype=ref.dtype, device=ref.device))
        self.lora_B = nn.Parameter(torch.zeros(n_slots, base.out_features, r, dtype=ref.dtype, device=ref.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = self.router.rows(x.shape[0])
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, T, in]
        low = torch.bmm(flat, self.lora_A[idx].transpose(1, 2))  # [B, T, r]
        delta = torch.bmm(low, self.lora_B[idx].transpose(1, 2))  # [B, T, out]
        return self.base(x) + self.scale * delta.reshape(*x.shape[:-1], -1)


#: Attention projection names by architecture family: (query, key, value).
PROJECTIONS: tuple[tuple[str, str, str], ...] = (("q_proj", "k_proj", "v_proj"), ("q", "k", "v"),
                                                 ("query", "key", "value"))


def default_targets(model: nn.Module, key: bool = False) -> tuple[str, ...]:
    """The query/value projections (LoRA's and OPPU's per-user targets); ``key=True`` adds
    the key projection (OPPU's task LoRA). Llama-, T5- or BERT-style names.
    """
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for q, k, v in PROJECTIONS:
        wanted = (q, k, v) if key else (q, v)
        if all(name in leaves for name in wanted):
            return wanted
    raise ValueError(f"no query/{'key/' if key else ''}value projections found among linear layers "
                     f"{sorted(leaves)}; name targets explicitly")


def target_module_names(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """Full names of the ``nn.Linear`` modules whose last name component is in ``targets``."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets]
    if not names:
        raise ValueError(f"no linear layers named {list(targets)} in the model")
    return names


class BatchedLoRA:
    """Install :class:`BatchedLoRALinear` layers into a model; restore it on exit.

    Use as a context manager so the shared (frozen) backbone is left exactly as found::

        with BatchedLoRA(model, names, n_slots=4, r=8, alpha=8) as lora:
            lora.set_slot(0, weights_of_user_a)
            with lora.route(torch.tensor([0, 0, 1])):
                loss = ...
    """

    def __init__(self, model: nn.Module, module_names: Sequence[str], n_slots: int, r: int, alpha: float) -> None:
        self.model = model
        self.n_slots = n_slots
        self.r = r
        self.router = Router()
        self.layers: dict[str, BatchedLoRALinear] = {}
        for name in module_names:
            parent, child = _parent(model, name)
            base = getattr(parent, child)
            if not isinstance(base, nn.Linear):
                raise TypeError(f"{name} is {type(base).__name__}, not nn.Linear")
            layer = BatchedLoRALinear(base, n_slots, r, alpha / r, self.router)
            setattr(parent, child, layer)
            self.layers[name] = layer

    def remove(self) -> None:
        """Put the original ``nn.Linear`` modules back."""
        for name, layer in self.layers.items():
            parent, child = _parent(self.model, name)
            setattr(parent, child, layer.base)
        self.layers = {}

    def __enter__(self) -> BatchedLoRA:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.lora_A, layer.lora_B)]

    @contextmanager
    def route(self, index: torch.Tensor) -> Iterator[None]:
        """Route the examples of the next forward passes: example ``b`` uses slot ``index[b]``."""
        self.router.index = index.to(device=next(iter(self.layers.values())).lora_A.device, dtype=torch.long)
        try:
            yield
        finally:
            self.router.index = None

    @torch.no_grad()
    def set_slot(self, slot: int, weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        missing = set(self.layers) - set(weights)
        if missing:
            raise KeyError(f"adapter lacks weights for {sorted(missing)[:3]}...")
        for name, layer in self.layers.items():
            a, b = weights[name]
            layer.lora_A[slot].copy_(a)
            layer.lora_B[slot].copy_(b)

    @torch.no_grad()
    def slot_weights(self, slot: int) -> LoRAWeights:
        return {n: (l.lora_A[slot].detach().clone(), l.lora_B[slot].detach().clone()) for n, l in self.layers.items()}


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


# -- per-slot optimisation ------------------------------------------------------------------
def linear_warmup_decay(step: int, total: int, warmup_ratio: float) -> float:
    """Learning-rate multiplier of HF's ``get_linear_schedule_with_warmup`` (OPPU's schedule).

    Warmup steps are ``ceil(total * warmup_ratio)`` as in ``TrainingArguments``.
    """
    warmup = math.ceil(total * warmup_ratio)
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


@torch.no_grad()
def clip_grad_norm_per_slot(params: Sequence[nn.Parameter], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` applied to each slot separately (dim 0); returns the norms.

    A user's clip factor must come from its own gradient only, or one user's large
    gradient would shrink another user's update.
    """
    grads = [p.grad for p in params if p.grad is not None]
    sq = torch.stack([g.pow(2).reshape(g.shape[0], -1).sum(1) for g in grads]).sum(0)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


class SlotAdamW:
    """AdamW (torch's decoupled form) over parameters stacked by slot on dim 0.

    Each slot has its own step count and learning rate, and a slot that is not
    ``active`` this step (its user has no batch left) is left untouched — weights and
    moments — exactly as if its own optimizer had not been called.
    """

    def __init__(self, params: Sequence[nn.Parameter], n_slots: int, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        self.params = list(params)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [0] * n_slots

    @torch.no_grad()
    def step(self, lrs: Sequence[float], active: Sequence[int]) -> None:
        """One update of the ``active`` slots, slot ``u`` with learning rate ``lrs[u]``."""
        if not active:
            return
        for u in active:
            self.steps[u] += 1
        idx = torch.tensor(list(active), dtype=torch.long, device=self.params[0].device)
        lr = [lrs[u] for u in active]
        decay = [1 - x * self.weight_decay for x in lr]
        step_size = [x / (1 - self.beta1 ** self.steps[u]) for x, u in zip(lr, active)]
        bc2_sqrt = [math.sqrt(1 - self.beta2 ** self.steps[u]) for u in active]
        for p, m_all, v_all in zip(self.params, self.exp_avg, self.exp_avg_sq):
            shape = (-1,) + (1,) * (p.dim() - 1)
            col = lambda xs: torch.tensor(xs, dtype=p.dtype, device=p.device).view(shape)  # noqa: E731
            w, g, m, v = p.data[idx], p.grad[idx], m_all[idx], v_all[idx]
            w.mul_(col(decay))
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / col(bc2_sqrt)).add_(self.eps)
            w.sub_(col(step_size) * m / denom)
            p.data[idx], m_all[idx], v_all[idx] = w, m, v

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


# -- a fixed adapter merged into the base, and fresh ones -----------------------------------
@contextmanager
def merged_lora(model: nn.Module, weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                alpha: float) -> Iterator[None]:
    """Add ``alpha / r * B @ A`` into each target layer's weight; restore it bit-exactly on exit.

    OPPU's second stage runs on the base model with the task LoRA merged in (the
    reference's ``PeftModel.from_pretrained(...).merge_and_unload()``), so the task LoRA
    may cover other layers (q, k, v) than the per-user adapters (q, v). The original
    weights are copied and written back, so the shared backbone is left as found.
    """
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, (a, b) in weights.items():
                layer = model.get_submodule(name)
                if not isinstance(layer, nn.Linear):
                    raise TypeError(f"{name} is {type(layer).__name__}, not nn.Linear (merge before wrapping)")
                saved[name] = layer.weight.detach().clone()
                w = layer.weight
                layer.weight.add_((alpha / a.shape[0]) * (b.to(w) @ a.to(w)))
        yield
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                model.get_submodule(name).weight.copy_(original)


def fresh_lora(model: nn.Module, module_names: Sequence[str], r: int, seed: int) -> LoRAWeights:
    """peft's default initialisation, drawn from ``seed`` alone: ``A ~ U(-1/sqrt(in), 1/sqrt(in))``
    (kaiming-uniform with ``a=sqrt(5)``), ``B = 0``; the adapter starts with no effect.

    Drawing from a seed of its own (not the global RNG) makes an adapter's start depend
    on nothing but its owner, and equal for the batched and the sequential trainer.
    """
    gen = torch.Generator().manual_seed(seed)
    out: LoRAWeights = {}
    for name in module_names:
        layer = model.get_submodule(name)
        ref = layer.weight
        bound = 1.0 / math.sqrt(layer.in_features)
        a = (torch.rand(r, layer.in_features, generator=gen, dtype=torch.float64) * 2 - 1) * bound
        out[name] = (a.to(dtype=ref.dtype, device=ref.device),
                     torch.zeros(layer.out_features, r, dtype=ref.dtype, device=ref.device))
    return out


# -- storage --------------------------------------------------------------------------------
def save_lora(path: Path, weights: LoRAWeights, metadata: Mapping[str, str] | None = None) -> None:
    """Write an adapter as safetensors atomically (a killed run never leaves half a file)."""
    from safetensors.torch import save_file

    tensors = {}
    for name, (a, b) in weights.items():
        tensors[f"{name}.lora_A"] = a.detach().contiguous().cpu()
        tensors[f"{name}.lora_B"] = b.detach().contiguous().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=dict(metadata or {}))
    tmp.replace(path)


def load_lora(path: Path) -> tuple[LoRAWeights, dict[str, str]]:
    """Read an adapter written by :func:`save_lora`; returns weights and metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        keys = list(f.keys())
        names = sorted({k.rsplit(".", 1)[0] for k in keys})
        weights = {n: (f.get_tensor(f"{n}.lora_A"), f.get_tensor(f"{n}.lora_B")) for n in names}
    return weights, meta
