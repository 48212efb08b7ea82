"""Multi-process helpers: who am I, how many are we, wait for the others.

persona-bench runs under any launcher that sets the standard environment variables —
``torchrun`` and ``accelerate launch`` both set ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without a launcher every helper
answers as a single process (rank 0 of 1, ``barrier`` does nothing), so code that calls
them needs no special case.

What the harness does with them (see ``docs/distributed.md``):

* ``bench run`` under a launcher predicts shard ``rank`` of ``world_size`` (the same
  fixed length-sorted batches as one process, dealt round-robin), so N processes write
  one run directory whose merged predictions and metrics equal a single process's.
* Fitting: a method that sets ``data_parallel_fit = True`` is fitted by *every* rank at
  once and is responsible for data parallelism itself (:func:`wrap_ddp`, rank 0 saves,
  then :func:`barrier`); any other method is fitted once by rank 0 while the other
  ranks wait (:func:`main_first`) and then fit again, which loads the artifact rank 0
  saved (methods reuse what is already in ``artifacts_dir``).

The process group is created lazily on first need (``gloo`` on CPU, ``nccl`` when the
process has a GPU), with a long timeout because a waiting rank may wait for a whole
training run (``PERSONA_BENCH_DIST_TIMEOUT`` seconds, default 24 h).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from typing import Any

__all__ = [
    "rank", "world_size", "local_rank", "is_main", "is_distributed", "env_shard", "init", "barrier",
    "main_first", "wrap_ddp", "unwrap", "all_reduce_mean", "device_for_rank", "shard_slice",
]


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"environment variable {name}={value!r} is not an integer") from None
    return default


def _initialized() -> bool:
    import torch.distributed as tdist

    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    """Global rank of this process (0 without a launcher)."""
    if _initialized():
        import torch.distributed as tdist

        return tdist.get_rank()
    return _env_int("RANK", "LOCAL_RANK", default=0)


def world_size() -> int:
    """Number of processes (1 without a launcher)."""
    if _initialized():
        import torch.distributed as tdist

        return tdist.get_world_size()
    return _env_int("WORLD_SIZE", "LOCAL_WORLD_SIZE", default=1)


def local_rank() -> int:
    """Rank on this node (picks the GPU): ``LOCAL_RANK``, else the global rank."""
    return _env_int("LOCAL_RANK", default=rank())


def is_main() -> bool:
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def env_shard() -> tuple[int, int] | None:
    """``(rank, world_size)`` when launched as several processes, else ``None``."""
    n = world_size()
    if n <= 1:
        return None
    i = rank()
    if not 0 <= i < n:
        raise ValueError(f"launcher environment gives rank {i} outside world size {n}")
    return (i, n)


def shard_slice(items: list[Any], shard: tuple[int, int] | None = None) -> list[Any]:
    """This rank's round-robin share of ``items`` (all of them in one process)."""
    shard = env_shard() if shard is None else shard
    return list(items) if shard is None else list(items)[shard[0]::shard[1]]


def device_for_rank(device: str = "auto") -> str:
    """``cuda:LOCAL_RANK`` when GPUs are visible (one per process), else ``cpu``."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and is_distributed():
        return f"cuda:{local_rank() % max(1, torch.cuda.device_count())}"
    return device


def init(backend: str | None = None) -> bool:
    """Create the default process group if running under a launcher; True if one exists.

    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo`` (CPU).
    Idempotent; a single process never creates one.
    """
    import torch
    import torch.distributed as tdist

    if _initialized():
        return True
    if not is_distributed() or not tdist.is_available():
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and tdist.is_nccl_available() else "gloo"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    timeout = datetime.timedelta(seconds=_env_int("PERSONA_BENCH_DIST_TIMEOUT", default=24 * 3600))
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    tdist.init_process_group(backend=backend, init_method="env://", rank=_env_int("RANK", default=0),
                             world_size=_env_int("WORLD_SIZE", default=1), timeout=timeout, **kwargs)
    return True


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if init():
        import torch.distributed as tdist

        tdist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the body on rank 0 first; the other ranks enter it once rank 0 has left it.

    The pattern for "fit once, others load": rank 0 trains and saves; the others then run
    the same code, find the saved artifact and load it.
    """
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def wrap_ddp(module: Any, device: str | None = None) -> Any:
    """``DistributedDataParallel(module)`` under a launcher, else ``module`` unchanged.

    Gradients of the wrapped module are averaged across ranks in ``backward``; every
    rank must call ``forward``/``backward`` the same number of times per step (pad the
    last step, or give each rank the same number of batches).
    """
    if not init():
        return module
    from torch.nn.parallel import DistributedDataParallel

    if device is not None and device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else local_rank()
        return DistributedDataParallel(module, device_ids=[index])
    return DistributedDataParallel(module)


def unwrap(module: Any) -> Any:
    """The module inside a DDP wrapper (what to save), or the module itself."""
    return getattr(module, "module", module)


def all_reduce_mean(value: Any) -> Any:
    """Mean of a tensor over ranks (returned unchanged in a single process)."""
    if not init():
        return value
    import torch.distributed as tdist

    out = value.detach().clone()
    tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
    return out / world_size()
