"""Method parameters from the command line, sweep files and profiles, converted by type.

A method's knobs are a frozen dataclass (``Method.Params``). Values reach it from three
places: ``bench run -p k=3`` (strings), a sweep file (``k = 3``: TOML ints, floats, bools,
lists) and the method's ``profiles`` (Python values). Each value is converted with the
field's real annotation, read with :func:`typing.get_type_hints`, so all three produce
equal ``Params`` and therefore the same run-config hash. Supported annotations: ``int``,
``float``, ``bool``, ``str``, ``Literal[...]``, ``Optional[X]`` / ``X | None`` (and other
unions, tried in order), ``tuple[X, ...]``, ``tuple[X, Y]`` and ``list[X]`` (a string is
split on commas). A value that does not fit is a :class:`ParamError` naming the method,
the field and what is allowed; nothing is passed through unconverted.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

NONE_WORDS = frozenset({"none", "null"})
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ParamError(ValueError):
    """A parameter that does not fit its method's ``Params``; the message says why."""


class _Mismatch(Exception):
    """Internal: ``value`` does not fit; ``expected`` says what would (in words)."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def describe_type(tp: Any) -> str:
    """An annotation in words, as error messages show it ("an integer or None")."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "None"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(a) for a in _union_order(args))
    if origin in (tuple, list):
        if not args:
            return "comma-separated values"
        if origin is list or args[-1] is Ellipsis:
            return f"comma-separated values, each {describe_type(args[0])}"
        return f"{len(args)} comma-separated values ({', '.join(describe_type(a) for a in args)})"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _union_order(args: tuple[Any, ...]) -> list[Any]:
    """Members to try, most specific first: a string "3" is an int before it is a str."""
    rank = {int: 0, bool: 1, float: 2, str: 4, type(None): 5}
    return sorted(args, key=lambda a: rank.get(a, 3))


def convert(value: Any, tp: Any) -> Any:
    """``value`` converted to annotation ``tp``; raises :class:`_Mismatch` when it cannot be."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        if value is None or isinstance(value, str) and value.strip().lower() in NONE_WORDS:
            return None
        raise _Mismatch("None")
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or isinstance(value, str) and value.strip().lower() in NONE_WORDS):
            return None
        for member in _union_order(tuple(a for a in args if a is not type(None))):
            try:
                return convert(value, member)
            except _Mismatch:
                continue
        raise _Mismatch(describe_type(tp))
    if origin is Literal:
        for allowed in args:
            if type(value) is type(allowed) and value == allowed:
                return allowed
        if isinstance(value, str):
            for allowed in args:
                if str(allowed) == value.strip():
                    return allowed
        raise _Mismatch(describe_type(tp))
    if origin in (tuple, list):
        return _convert_sequence(value, tp, origin, args)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            return value.strip().lower() in TRUE_WORDS
        raise _Mismatch(describe_type(tp) + " (also 1/0, yes/no, on/off)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _Mismatch(describe_type(tp))
    if tp is float:
        # A sweep's ``lr = 1`` and ``-p lr=1`` both become 1.0, so the config hash agrees.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _Mismatch(describe_type(tp))
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch(describe_type(tp))
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Mismatch(f"{describe_type(tp)} (this annotation cannot be given as a parameter value)")


def _convert_sequence(value: Any, tp: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if isinstance(value, str):
        parts: list[Any] = [p.strip() for p in value.split(",")] if value.strip() else []
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise _Mismatch(describe_type(tp))
    if not args:
        items = parts
    elif origin is list or args[-1] is Ellipsis:
        items = [convert(p, args[0]) for p in parts]
    else:
        if len(parts) != len(args):
            raise _Mismatch(f"{describe_type(tp)} ({len(args)} values, got {len(parts)})")
        items = [convert(p, a) for p, a in zip(parts, args)]
    return list(items) if origin is list else tuple(items)


def field_types(params_cls: type) -> dict[str, Any]:
    """Each field's resolved annotation; a field whose annotation cannot be resolved maps
    to the :class:`NameError` that says why (reported only if someone sets that field)."""
    if not (isinstance(params_cls, type) and dataclasses.is_dataclass(params_cls)):
        raise TypeError(f"{params_cls!r} must be a dataclass type")
    fields = [f for f in dataclasses.fields(params_cls) if f.init]
    try:
        hints = typing.get_type_hints(params_cls)
        return {f.name: hints.get(f.name, Any) for f in fields}
    except Exception:  # noqa: BLE001 - resolve field by field below, naming the bad one
        pass
    out: dict[str, Any] = {}
    for f in fields:
        owner = next((c for c in params_cls.__mro__ if f.name in getattr(c, "__annotations__", {})), params_cls)
        module = sys.modules.get(owner.__module__)
        try:
            out[f.name] = (eval(f.type, vars(module) if module else {}) if isinstance(f.type, str)  # noqa: S307
                           else f.type)
        except Exception as exc:  # noqa: BLE001
            out[f.name] = NameError(f"annotation {f.type!r} cannot be resolved ({type(exc).__name__}: {exc})")
    return out


def _who(method: str | None, profile_name: str | None) -> str:
    who = f"method {method!r}" if method else "this method"
    return f"{who} (profile {profile_name!r})" if profile_name else who


def _convert_all(types_: Mapping[str, Any], raw: Mapping[str, Any], who: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in types_:
            known = ", ".join(types_) or "none"
            close = difflib.get_close_matches(str(key), list(types_), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParamError(f"{who} has no parameter {key!r}.{hint} Known: {known}.")
        tp = types_[key]
        if isinstance(tp, NameError):
            raise ParamError(f"{who}: parameter {key!r} cannot be converted: {tp}")
        try:
            values[key] = convert(value, tp)
        except _Mismatch as bad:
            raise ParamError(f"{who}: parameter {key!r} expects {bad.expected}; got {value!r}") from None
    return values


def parse_params(
    params_cls: type,
    raw: Mapping[str, Any] | None = None,
    *,
    method: str | None = None,
    profile: Mapping[str, Any] | None = None,
    profile_name: str | None = None,
) -> Any:
    """Build ``params_cls`` from ``raw`` values over the ``profile`` overrides.

    ``raw`` holds the user's values (``-p`` strings or sweep values), ``profile`` the
    method's overrides for the run's settings profile (``Method.profiles[name]``); both
    go through the same conversion, and the user's win. ``method`` and ``profile_name``
    only name things in error messages.
    """
    types_ = field_types(params_cls)
    base = _convert_all(types_, profile or {}, _who(method, profile_name))
    values = {**base, **_convert_all(types_, raw or {}, _who(method, None))}
    try:
        return params_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ParamError(f"{_who(method, None)}: {exc}") from exc


def method_params(method_cls: type, raw: Mapping[str, Any] | None = None, *, profile: str = "small",
                  name: str | None = None) -> Any:
    """A method's ``Params`` for a run: its ``profiles[profile]`` overrides, then ``raw``."""
    from harness.api import PROFILES

    if profile not in PROFILES:
        raise ParamError(f"unknown settings profile {profile!r} (known: {', '.join(PROFILES)})")
    overrides = getattr(method_cls, "profiles", {}).get(profile, {})
    return parse_params(method_cls.Params, raw, method=name or method_cls.__name__, profile=overrides,
                        profile_name=profile)


#: Field metadata of an option added after cells were computed, whose default reproduces
#: the earlier behaviour exactly (see :func:`added_option`).
HASH_NEUTRAL = "hash_neutral_default"


def added_option(default: Any) -> Any:
    """A ``Params`` field whose default is left out of the recorded params (and so the hash).

    Adding a knob to a method must not invalidate its finished cells when the knob's
    default changes nothing: at the default the field is omitted from the run config, so
    the hash of every earlier cell stays the same; any other value is recorded and hashed
    like every field. Use it only for a default that is bit-for-bit the old behaviour.
    """
    return dataclasses.field(default=default, metadata={HASH_NEUTRAL: True})


def recorded_params(params: Any) -> dict[str, Any]:
    """``params`` as the run config records (and hashes) them: every field, except an
    :func:`added_option` still at its default."""
    out = dataclasses.asdict(params)
    for f in dataclasses.fields(params):
        if f.metadata.get(HASH_NEUTRAL) and getattr(params, f.name) == f.default:
            out.pop(f.name)
    return out
