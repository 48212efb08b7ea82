"""The three registries every part of persona-bench looks things up in."""

from __future__ import annotations

from typing import Any

from harness.registry import Registry

#: Method classes (subclasses of :class:`harness.api.Method`).
METHODS: Registry[Any] = Registry("method", "persona_bench.methods", builtin_modules=("methods",))
#: Task specs (:class:`harness.api.TaskSpec`).
TASKS: Registry[Any] = Registry("task", "persona_bench.tasks", builtin_modules=("tasks",))
#: Model presets (:class:`harness.models.ModelPreset`).
MODELS: Registry[Any] = Registry("model", None, builtin_modules=("harness.models",))
