"""Shared fixtures: a hermetic cache per test session, and fake plugin distributions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Synthetic data and embedding caches go to a fresh folder per session, so tests never
    # see a cache another run filled; the dequantized SmolLM2 (slow to build) is shared.
    import tempfile

    real = Path(os.environ.get("PERSONA_BENCH_CACHE") or Path.home() / ".cache" / "persona-bench")
    session = Path(tempfile.mkdtemp(prefix="persona-bench-test-cache-"))
    (real / "models").mkdir(parents=True, exist_ok=True)
    (session / "models").symlink_to(real / "models", target_is_directory=True)
    os.environ["PERSONA_BENCH_CACHE"] = str(session)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def write_dist(site: Path, name: str, entry_points: dict[str, dict[str, str]]) -> None:
    """Write a real ``*.dist-info`` with ``entry_points.txt`` into ``site``."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
