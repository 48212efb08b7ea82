"""Run-wide settings that are part of every run's config: generation and settings profiles.

Torch-free on purpose: the command line, the sweep loader and the results store build and
hash these settings without importing the model stack.

Two named settings profiles exist (see ``docs/fidelity.md``): ``paper`` is every setting
as the reference code has it (4 beams), ``small`` the documented CPU reductions (greedy
decoding, larger prediction batches). A method's own knobs have per-profile values in
``Method.profiles``; the generation settings' live here in :data:`GENERATION_PROFILES`.
Explicit settings (CLI flags, a sweep's ``[generation]`` table) override a profile's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.api import PROFILES

DECODINGS: tuple[str, ...] = ("free", "constrained")

#: Version of the shared engine's result-changing behaviour (decoding, prompt assembly,
#: scoring). Methods and tasks carry their own versions; this one covers what they all
#: share, so a change there also orphans every stale cell. It enters every run hash.
ENGINE_VERSION = 1


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings shared by every method of a run (part of the run config).

    Invalid values raise ``ValueError`` naming the field at construction, so a bad
    setting fails before any run folder exists instead of deep inside decoding.
    """

    num_beams: int = 4  # the paper's setting
    max_new_tokens: int | None = None  # None: the task's default
    batch_size: int = 16
    max_input_tokens: int = 512

    def __post_init__(self) -> None:
        for name in ("num_beams", "batch_size", "max_input_tokens", "max_new_tokens"):
            value = getattr(self, name)
            if value is None and name == "max_new_tokens":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


#: Per-profile generation defaults. ``paper``: the reference code's 4 beams; ``small``:
#: greedy decoding with larger prediction batches, the CPU reduction.
GENERATION_PROFILES: Mapping[str, Mapping[str, Any]] = {
    # 2048: the longest input any reference feeds its LLM (OPPU's cutoff); each method
    # caps its own inputs below it (PPlug, RAG and adhoc at LaMP's 256).
    "paper": {"num_beams": 4, "batch_size": 16, "max_input_tokens": 2048},
    "small": {"num_beams": 1, "batch_size": 32},
}

GENERATION_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GenerationSettings))


def default_profile(device: str) -> str:
    """``paper`` on a GPU, ``small`` elsewhere: a GPU run reproduces the paper by default."""
    return "paper" if str(device).startswith("cuda") else "small"


def resolve_profile(profile: str | None, device: str) -> str:
    """The profile a run uses: the one asked for, else the device's default."""
    if profile is None:
        return default_profile(device)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile


def generation_for(profile: str, overrides: Mapping[str, Any] | None = None) -> GenerationSettings:
    """The profile's generation settings with explicit ``overrides`` (None values ignored) on top."""
    if profile not in GENERATION_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(GENERATION_PROFILES)}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(given) - set(GENERATION_KEYS)
    if unknown:
        raise ValueError(f"unknown generation setting(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(GENERATION_KEYS)}")
    return GenerationSettings(**{**GENERATION_PROFILES[profile], **given})
