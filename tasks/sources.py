"""Resolve a ``--data`` argument into a loaded split, for every LaMP-format task.

``--data`` accepts:

* ``synthetic`` or ``synthetic:SEED`` – the embedded generator (``tasks.synthetic``),
  written once into the cache as official-format files and then loaded like real data;
* a directory of official LaMP files (see ``tasks.loader`` for the layouts);
* a Hugging Face ``datasets`` folder (``save_to_disk``) or hub id (``tasks.hf``).

The data seed is separate from the run seed, so runs with several seeds share one data
set and can be averaged.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from harness.api import Split, TaskSpec
from harness.models import cache_root
from harness.store import atomic_write_json


def write_synthetic_marker(directory: Path, task: TaskSpec, seed: int) -> None:
    """Mark a folder as generated, so its data is never taken for real LaMP data."""
    from tasks import synthetic

    atomic_write_json(directory / "synthetic.json", {
        "generator": "persona-bench tasks.synthetic", "version": synthetic.GENERATOR_VERSION,
        "seed": seed, "task": task.name, "signal": synthetic.SIGNAL_DOC.get(task.name, ""),
    })


def synthetic_dir(task: TaskSpec, seed: int) -> Path:
    """Generate (once) and return the cached synthetic data directory for a task."""
    from tasks import synthetic

    target = cache_root() / "synthetic" / f"v{synthetic.GENERATOR_VERSION}" / f"{task.name}-seed{seed}"
    if not (target / "synthetic.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{task.name}-"))
        synthetic.generate(task, tmp, seed=seed)
        write_synthetic_marker(tmp, task, seed)
        try:
            tmp.rename(target)
        except OSError:  # a concurrent process generated the same files first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_download_dir() -> Path:
    """Where ``bench data download`` puts official files unless told otherwise."""
    return cache_root() / "lamp"


def resolve_data_dir(task: TaskSpec, data: str) -> Path | str:
    """Turn ``--data`` into a directory (or leave a hub id as a string).

    ``auto`` means: ``$PERSONA_BENCH_DATA`` if set, else downloaded official files in the
    cache if they are there, else the synthetic set (the runner then prints a notice).
    """
    if data == "auto":
        env = os.environ.get("PERSONA_BENCH_DATA")
        if env:
            return Path(env).expanduser()
        from tasks import loader

        try:
            loader.find_split_files(task, default_download_dir(), "dev")
            return default_download_dir()
        except loader.DataError:
            data = "synthetic"
    if data == "synthetic" or data.startswith("synthetic:"):
        if not task.has_synthetic_data:
            raise ValueError(f"{task.name} has no synthetic data ({task.data_note}); pass --data DIR")
        return synthetic_dir(task, int(data.split(":", 1)[1]) if ":" in data else 0)
    path = Path(data).expanduser()
    if path.exists():
        return path
    if "/" in data and not data.startswith((".", "/", "~")):
        return data  # a hub id
    raise FileNotFoundError(
        f"--data {data!r}: no such directory. Use 'synthetic', a folder of official LaMP files "
        f"(get them with `bench data download --task {task.name}`), or a Hugging Face datasets folder."
    )


def load_lamp_split(task: TaskSpec, data: str, split: str, *, seed: int = 0) -> Split:
    """The ``TaskSpec.load_split`` of every LaMP task (``seed`` is the run's, unused here)."""
    from tasks import hf, loader

    where = resolve_data_dir(task, data)
    if isinstance(where, str) or (where / "dataset_dict.json").exists():
        return hf.load_hf(task, str(where), split)
    return loader.load_split(task, where, split)
