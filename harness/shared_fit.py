"""One training, several evaluations: cells that differ only in how they decode share a fit.

Training is the scarce resource on a CPU (a PPlug cell of the ``small`` profile trains
for 20–35 minutes; scoring its 300 questions takes a few), and a researcher routinely
wants the same trained method scored twice: in free generation, as the paper does, and
with constrained answers. Two such cells have different run hashes (the decoding mode
and beam width change the predictions), but their fits are the same computation: the
same method, params, models, data, seed, profile and token budgets.

:attr:`harness.store.RunConfig.fit_key` names that computation. Before fitting, the
runner looks for a finished run with the same key (under the results root, and any
``--fits-from`` roots) and links its artifacts into the new run instead of training
again. Only methods that declare it take part (:meth:`harness.api.Method.fit_files`
lists the files that mark their finished fit): a method whose training reads the
decoding mode, such as ROPG/RSPG learning from the LLM's own answers, declares none.
The adopted ``fit.json`` keeps the training cost and names the run that trained the
weights, so the cost table reports what they cost and the provenance where they came from.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.store import CONFIG_FILE, FIT_FILE, RunConfig, atomic_write_json


def find_donor(roots: Iterable[Path], config: RunConfig, fit_files: Sequence[str],
               exclude: Path | None = None) -> Path | None:
    """A finished run folder (other than ``exclude``, the cell itself) whose fit this config may adopt.

    A donor has the same :attr:`~harness.store.RunConfig.fit_key`, a readable config, the
    runner's ``fit.json`` and every file of ``fit_files`` in its ``artifacts/`` (results
    folders keep no weights, so a committed cell without them is never a donor).
    Candidates are taken in name order, so the choice does not depend on the file system;
    ``None`` when there is none.
    """
    if not fit_files:
        return None
    key = config.fit_key
    for root in roots:
        for candidate in sorted((Path(root) / config.task / config.method).glob("*/")):
            if candidate.name.startswith(".") or (exclude is not None and candidate.resolve() == exclude.resolve()):
                continue
            artifacts = candidate / "artifacts"
            if not all((artifacts / name).is_file() for name in (FIT_FILE, *fit_files)):
                continue
            other = _config_of(candidate)
            if other is not None and other.fit_key == key:
                return candidate
    return None


def adopt(donor: Path, artifacts: Path) -> None:
    """Link (or copy) ``donor``'s artifacts into ``artifacts``, and record where they came from.

    Hard links cost no space and are safe here: every artifact is written by an atomic
    rename, so a later rewrite in either run gives that run a new file and never changes
    the other's. Hidden files (an interrupted atomic write's temporaries) are skipped.
    ``fit.json`` is written afresh with ``shared_from`` naming the run that trained it.
    """
    source = donor / "artifacts"
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file() or relative == Path(FIT_FILE):
            continue
        target = artifacts / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            continue
        try:
            os.link(path, target)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(path, target)
    record = json.loads((source / FIT_FILE).read_text())
    record.setdefault("shared_from", {"run": donor.name, "path": str(donor)})  # a donor's own donor trained it
    atomic_write_json(artifacts / FIT_FILE, record)


def _config_of(run: Path) -> RunConfig | None:
    """The run's hashed config, or ``None`` when it cannot be read (never a donor then)."""
    try:
        raw = json.loads((run / CONFIG_FILE).read_text())
        config = RunConfig.from_dict(raw["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return config if config.hash == run.name else None
