"""Helpers shared by the benchmarks: the machine, its matmul peak, timing, writing results."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parents[1] / "results"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers were measured on (written into every result file)."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
        "device": f"cuda:{gpu}" if gpu else "cpu",
        # Other processes compete for the same cores; ratios measured back to back in one
        # run are robust to that, absolute rates and fractions of peak less so.
        "load_average_1m": load_1m(),
    }


def machine_line(m: dict[str, Any] | None = None) -> str:
    """One line describing ``m`` (default: this machine, now)."""
    m = m or machine()
    gpu = m["gpu"] or "no GPU"
    return (f"Machine: {m['cpu']}, {m['affinity_cores'] or m['cores']} cores, {m['memory_gib']} GiB, {gpu}; "
            f"torch {m['torch']} with {m['torch_threads']} threads; 1-minute load average when written: "
            f"{m['load_average_1m']} (other processes shared the cores if it exceeds the core count).")


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def matmul_gflops(n: int = 2048, repeat: int = 5, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """This machine's dense matmul throughput (best of ``repeat``): the roofline we compare against.

    Square ``n x n`` float32 GEMM through the same BLAS torch uses for the models, with
    the same thread count, so "fraction of peak" is a fraction of what this process can
    actually reach on dense linear algebra.
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def mm() -> torch.Tensor:
        out = torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    mm()  # warm up
    seconds, _ = timed(mm, repeat)
    return 2 * n**3 / seconds / 1e9


#: 1-minute load average above which a benchmark's figures are not idle-machine figures.
#: The benchmark's own torch threads count (2 on the 2-core machine), so 2.5 leaves room
#: for about half a core of other work before the absolute rates stop being this
#: machine's.
IDLE_LOAD_LIMIT = 2.5


def load_1m() -> float | None:
    """The 1-minute load average now (None where the OS does not report one)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def load_warning(loads: list[float | None], limit: float) -> str | None:
    """A loud line when any recorded load exceeds ``limit``, else None.

    Ratios measured back to back survive a busy machine better than absolute rates, but
    a default picked from a loaded run may still be the load's choice, not the CPU's.
    """
    seen = [x for x in loads if x is not None]
    over = [x for x in seen if x > limit]
    if not over:
        return None
    return (f"**WARNING: the 1-minute load average exceeded {limit} in {len(over)} of {len(seen)} readings "
            f"(max {max(over):.2f}): other processes shared the cores, so these are NOT idle-machine figures.**")


def write_result(name: str, payload: dict[str, Any], markdown: str, out: Path | None = None) -> None:
    """``<out>/<name>.json`` (machine + payload) and ``<out>/<name>.md`` (the summary).

    ``out`` defaults to ``results/``; tests and trial runs pass their own folder so the
    committed results are only ever written by a real measurement.
    """
    out = RESULTS if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
