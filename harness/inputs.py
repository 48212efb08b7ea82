"""Checks of what a user gives (flags, sweep-file keys, request fields), with clear messages.

Each check takes a ``label`` naming where the value came from (``--limit``, ``s.toml:
'limit'``, ``limit``), so the command line, sweep files and the Python API share one rule
and each names the culprit its own way. Every failure is an :class:`InputError`, a
``ValueError`` the command line turns into exit status 2. Torch is imported only to ask
whether a requested GPU exists.
"""

from __future__ import annotations

import errno
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from harness.settings import DECODINGS, GENERATION_KEYS, GenerationSettings


class InputError(ValueError):
    """A value the user gave is unusable; the message names the flag, key or field."""


#: CLI flag of each generation setting, for messages.
GENERATION_FLAGS: Mapping[str, str] = {"num_beams": "--beams", "batch_size": "--batch-size",
                                       "max_new_tokens": "--max-new-tokens", "max_input_tokens": "--max-input-tokens"}


def integer(value: Any, label: str, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """An int (not a bool, not a string) at least ``minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{label} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{label} must be at least {minimum}, got {value}")
    return value


def limit(value: Any, label: str = "--limit") -> int | None:
    """``None`` (the whole split) or a positive number of questions."""
    return integer(value, label, minimum=1, allow_none=True)


def int_list(text: str, label: str) -> tuple[int, ...]:
    """``"0,1,2"`` into ``(0, 1, 2)``; anything else names the flag."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"{label} must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not values:
        raise InputError(f"{label} lists no values")
    return values


def shard(text: str | None, label: str = "--shard") -> tuple[int, int] | None:
    """``"i/n"`` into ``(i, n)`` with ``0 <= i < n``; None stays None."""
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"{label} {text!r} must be i/n with 0 <= i < n") from None
    if not 0 <= i < n:
        raise InputError(f"{label} {text!r} must be i/n with 0 <= i < n")
    return (i, n)


def choice(value: Any, options: Collection[str], label: str) -> str:
    if value not in options:
        raise InputError(f"{label} must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def decoding(value: Any, label: str = "--decoding") -> str:
    return choice(value, DECODINGS, label)


def data(value: str, label: str = "--data") -> str:
    """``synthetic:SEED`` needs an integer seed; other forms are checked by the loader."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{label} must name a data source, got {value!r}")
    if value.startswith("synthetic:"):
        seed = value.split(":", 1)[1]
        try:
            int(seed)
        except ValueError:
            raise InputError(f"{label} {value!r}: the generator seed after 'synthetic:' must be an integer") from None
    return value


def device(value: str, label: str = "--device") -> str:
    """``cpu``, ``cuda``/``cuda:N`` (only when such a GPU is visible) or ``mps``."""
    if value == "cpu":
        return value
    if value == "cuda" or value.startswith("cuda:"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"{label} {value}: no CUDA GPU is visible to this process; use --device cpu")
        index = value.split(":", 1)[1] if ":" in value else "0"
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise InputError(f"{label} {value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return value
    if value == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise InputError(f"{label} mps: Apple's MPS backend is not available here; use --device cpu")
        return value
    raise InputError(f"{label} must be cpu, cuda, cuda:N, mps or auto; got {value!r}")


def out_dir(value: Path, label: str = "--out") -> Path:
    """A results root must be (or become) a folder we can write."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise InputError(f"{label} {path} is a file, not a folder")
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{label} {path}: {parent} is a file, not a folder")
            break
    return path


def generation(overrides: Mapping[str, Any], label_of: Mapping[str, str] = GENERATION_FLAGS) -> dict[str, Any]:
    """Explicit generation settings (None: not given), each checked and named by ``label_of``."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        if key not in GENERATION_KEYS:
            raise InputError(f"unknown generation setting {key!r}; known: {', '.join(GENERATION_KEYS)}")
        integer(value, label_of.get(key, key), minimum=1)
    GenerationSettings(**given)  # any cross-field rule the dataclass adds
    return given


def method_params(method_cls: type, values: Mapping[str, Any], method: str, profile: str) -> Any:
    """Build a method's ``Params`` for a run: its profile's overrides, then the user's values.

    A method declares its rules generically: raise ``ValueError`` (or ``TypeError``) in
    ``Params.__post_init__``, or give ``Params`` a ``validate()`` method. Either way the
    user gets one message naming ``-p`` and the method, never a crash mid-training.
    """
    from harness.params import method_params as build

    try:
        params = build(method_cls, values, profile=profile, name=method)
        check = getattr(params, "validate", None)
        if callable(check):
            check()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if f"method {method!r}" not in message:
            message = f"method {method!r}: {message}"
        raise InputError(f"-p/--param: {message}") from exc
    return params


def results_root(value: Path, label: str = "--fits-from") -> Path:
    """A results root to read from must be an existing folder."""
    path = Path(value)
    if not path.is_dir():
        raise InputError(f"{label} {path}: no such folder")
    return path


def os_error(exc: OSError, out: Path) -> str:
    """A sentence for a failed file operation, pointing at ``--out`` when it is the culprit."""
    where = str(exc.filename or "")
    hint = ""
    if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT) \
            or where.startswith(str(out)):
        hint = f" (results go under --out {out}: is it writable, with space left?)"
    return f"{exc.strerror or exc}: {where or out}{hint}"


def run_request(*, profile: str | None, device_flag: str, shard_flag: str | None, num_beams: int | None,
                batch_size: int | None, max_new_tokens: int | None, max_input_tokens: int | None,
                **fields: Any) -> Any:
    """``bench run``'s flags, each checked by its flag name, into a :class:`RunRequest`.

    The device is resolved first (``auto``, a launcher's local rank) because it picks
    the default profile, whose generation settings the explicit flags then override.
    """
    from harness import distributed
    from harness.api import PROFILES
    from harness.runner import RunRequest
    from harness.settings import generation_for, resolve_profile

    shard_t = shard(shard_flag) or distributed.env_shard()  # torchrun / accelerate launch
    limit(fields["limit"], "--limit")
    data(fields["data"], "--data")
    decoding(fields["decoding"], "--decoding")
    out_dir(fields["out"], "--out")
    for root in fields.get("fits_from", ()):
        results_root(root, "--fits-from")
    resolved = device(distributed.device_for_rank(device_flag), "--device")
    if profile is not None:
        choice(profile, PROFILES, "--profile")
    given = generation({"num_beams": num_beams, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                        "max_input_tokens": max_input_tokens})
    chosen = resolve_profile(profile, resolved)
    return RunRequest(**fields, shard=shard_t, device=resolved, profile=chosen,
                      generation=generation_for(chosen, given))
