"""One ``bench data synth`` request: which tasks, which folders, which sizes.

Kept out of the command line so the choice of tasks for ``all`` and the merging of
size options with the generator's defaults can be called and tested without typer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from harness.registries import TASKS
from tasks import synthetic
from tasks.sources import write_synthetic_marker


def synthesize(task: str, out: Path, *, seed: int = 0, sizes: Mapping[str, int | None] | None = None,
               min_profile: int | None = None, max_profile: int | None = None,
               user_based: bool = False) -> Iterator[tuple[str, Path]]:
    """Generate marked synthetic data for ``task`` (or every task with a generator, ``"all"``).

    ``"all"`` writes one sub-folder of ``out`` per task; a single task writes into ``out``.
    ``sizes`` maps split -> questions (``None`` keeps :data:`~tasks.synthetic.DEFAULT_SIZES`);
    an unset profile bound keeps :data:`~tasks.synthetic.DEFAULT_PROFILE_SIZE`'s. Yields
    each task's name and its folder once written, so a caller can report progress task by task.
    Raises ``RegistryError`` for an unknown task and ``ValueError`` for bad sizes.
    """
    names = [n for n in TASKS.names() if TASKS.get(n).has_synthetic_data] if task == "all" else [task]
    specs = {name: TASKS.get(name) for name in names}  # an unknown name fails before anything is written
    n_users = {**synthetic.DEFAULT_SIZES, **{k: v for k, v in (sizes or {}).items() if v is not None}}
    profile_size = (min_profile or synthetic.DEFAULT_PROFILE_SIZE[0], max_profile or synthetic.DEFAULT_PROFILE_SIZE[1])
    for name, spec in specs.items():
        target = out / name if task == "all" else out
        synthetic.generate(spec, target, seed=seed, n_users=n_users, profile_size=profile_size,
                           time_based=not user_based)
        write_synthetic_marker(target, spec, seed)
        yield name, target
