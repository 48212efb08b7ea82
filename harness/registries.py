"""The registries every part of persona-bench looks things up in, each with its entry kind.

Every registry refuses an entry of the wrong kind, whether a built-in registers it or a
plugin's entry point names it (see :mod:`harness.registry`). Base types are named as
``"module:Qualname"`` strings so that importing this module imports nothing heavy; the
metric and retriever registries live beside their types (:data:`harness.metrics.METRICS`,
:data:`harness.retrieval.RETRIEVERS`). Built-ins that live outside the engine (the
``methods`` and ``tasks`` packages, LaMP's prompt styles) are named as modules to import
on first lookup, so nothing here imports them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from harness.registry import Registry


def _check_method(name: str, cls: Any) -> None:
    """A method class must be concrete, with a dataclass ``Params``, declared roles that
    have the right types, and ``profiles`` whose overrides convert into its ``Params``."""
    from harness.api import PROFILES
    from harness.params import ParamError, parse_params

    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise TypeError(f"{cls.__qualname__} is abstract (implement {missing})")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        raise TypeError(f"{cls.__qualname__}.Params must be a dataclass, got {params!r}")
    if not isinstance(cls.family, str) or not cls.family:
        raise TypeError(f"{cls.__qualname__}.family must be a non-empty string, got {cls.family!r}")
    for role in ("variant_of", "control"):
        value = getattr(cls, role)
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"{cls.__qualname__}.{role} must be a registered method name or None, got {value!r}")
        if value == name:
            raise ValueError(f"{cls.__qualname__}.{role} names the method itself")
    if isinstance(cls.version, bool) or not isinstance(cls.version, int) or cls.version < 1:
        raise TypeError(f"{cls.__qualname__}.version must be a positive integer, got {cls.version!r}")
    if not isinstance(cls.profiles, Mapping):
        raise TypeError(f"{cls.__qualname__}.profiles must be a mapping of profile -> overrides")
    for profile, overrides in cls.profiles.items():
        if profile not in PROFILES:
            raise ValueError(f"{cls.__qualname__}.profiles names unknown profile {profile!r} "
                             f"(known: {', '.join(PROFILES)})")
        if not isinstance(overrides, Mapping):
            raise TypeError(f"{cls.__qualname__}.profiles[{profile!r}] must be a mapping of field -> value")
        try:
            parse_params(params, {}, method=name, profile=overrides, profile_name=profile)
        except ParamError as exc:
            raise ValueError(str(exc)) from None


def _check_named(name: str, obj: Any) -> None:
    """Tasks and model presets are looked up by their own ``name``: the two must agree."""
    if obj.name != name:
        raise ValueError(f"it is called {obj.name!r}; register it under that name")


#: Method classes (subclasses of :class:`harness.api.Method`).
METHODS: Registry[Any] = Registry("method", "persona_bench.methods", builtin_modules=("methods",),
                                  base="harness.api:Method", check=_check_method)
#: Task specs (instances of :class:`harness.api.TaskSpec`, which validate themselves).
TASKS: Registry[Any] = Registry("task", "persona_bench.tasks", builtin_modules=("tasks",),
                                base="harness.api:TaskSpec", instances=True, check=_check_named)
#: Model presets (instances of :class:`harness.models.ModelPreset`).
MODELS: Registry[Any] = Registry("model", None, builtin_modules=("harness.models",),
                                 base="harness.models:ModelPreset", instances=True, check=_check_named)


# -- prompt styles ---------------------------------------------------------------------------
#: RAG prompt styles (instances of :class:`harness.prompting.PromptStyle`) a
#: ``TaskSpec.prompt_style`` may name. The engine holds no styles of its own: LaMP's are
#: task data, registered by :mod:`tasks.prompts` on import (the built-in module named
#: here, so any lookup registers them first); a task plugin registers its own with
#: :func:`register_prompt_style` before building its ``TaskSpec``.
PROMPT_STYLES: Registry[Any] = Registry("prompt style", None, builtin_modules=("tasks.prompts",),
                                        base="harness.prompting:PromptStyle", instances=True)


def prompt_style_names() -> list[str]:
    """The prompt styles a ``TaskSpec.prompt_style`` may name (built-in and registered)."""
    return PROMPT_STYLES.names()


def register_prompt_style(name: str, style: Any) -> Any:
    """Add a task plugin's own official-style RAG prompt (a ``harness.prompting.PromptStyle``).

    Call it before building the ``TaskSpec`` that names it. The same style registered
    twice (equal definitions, e.g. a plugin module imported again) is a no-op; a
    different style under a taken name is refused, as is anything but a ``PromptStyle``.
    """
    return PROMPT_STYLES.register(name, style)
