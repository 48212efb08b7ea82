"""One small generic registry for methods, tasks and model presets.

Built-ins are registered in code (``registry.register("adhoc", AdHoc)``); third-party
plugins are discovered lazily from a Python entry-point group the first time a name is
looked up or listed. Two rules keep the built-ins safe:

* a plugin that fails to import is recorded with its error (see ``plugin_errors``) and
  reported by name when someone asks for it; it never breaks the rest of the registry;
* a plugin can never replace a built-in of the same name: the clash is recorded as an
  error instead.

Unknown names fail with a "did you mean" suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for unknown names and broken plugins; ``str()`` is a full sentence."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class PluginError:
    name: str
    entry_point: str
    error: str


class Registry(Generic[T]):
    """Name -> object mapping with lazy entry-point plugins.

    ``kind`` is used in messages ("unknown method 'pplg'"). ``group`` is the entry-point
    group, e.g. ``persona_bench.methods``; ``None`` disables plugins.
    """

    def __init__(self, kind: str, group: str | None = None, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self.builtin_modules = builtin_modules
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._plugin_eps: dict[str, metadata.EntryPoint] | None = None
        self._errors: dict[str, PluginError] = {}
        self._loaded_plugins: set[str] = set()

    # -- registration -------------------------------------------------------------
    def register(self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = ()):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def _add(o: T) -> T:
            if self._plugin_eps is not None and name in self._plugin_eps:
                raise ValueError(f"{self.kind} {name!r}: register built-ins before plugins are discovered")
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            for alias in aliases:
                self._aliases[alias] = name
            return o

        return _add(obj) if obj is not None else _add

    # -- plugins -------------------------------------------------------------------
    def _import_builtins(self) -> None:
        # Built-ins live in packages that depend on the engine, not the other way round,
        # so the engine names them as modules to import on first use.
        modules, self.builtin_modules = self.builtin_modules, ()
        for module in modules:
            importlib.import_module(module)

    def _discover(self) -> dict[str, metadata.EntryPoint]:
        self._import_builtins()
        if self._plugin_eps is None:
            self._plugin_eps = {}
            if self.group:
                for ep in metadata.entry_points(group=self.group):
                    if ep.name in self._items or ep.name in self._aliases:
                        self._errors[ep.name] = PluginError(
                            ep.name, ep.value,
                            f"a built-in {self.kind} is already called {ep.name!r}; "
                            "the plugin was ignored (rename it)",
                        )
                        continue
                    self._plugin_eps[ep.name] = ep
        return self._plugin_eps

    def _load_plugin(self, name: str) -> T:
        ep = self._discover()[name]
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
            self._errors[name] = PluginError(name, ep.value, f"{type(exc).__name__}: {exc}")
            del self._plugin_eps[name]  # type: ignore[union-attr]
            raise RegistryError(
                f"{self.kind} plugin {name!r} ({ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._items[name] = obj
        self._loaded_plugins.add(name)
        del self._plugin_eps[name]  # type: ignore[union-attr]
        return obj

    @property
    def plugin_errors(self) -> list[PluginError]:
        """Plugins that were found but could not be used, with why."""
        self._discover()
        return list(self._errors.values())

    # -- lookup ----------------------------------------------------------------------
    def names(self) -> list[str]:
        """All usable names (built-ins and not-yet-loaded plugins), sorted."""
        plugins = self._discover()
        return sorted(set(self._items) | set(plugins))

    def resolve_name(self, name: str) -> str:
        self._import_builtins()
        return self._aliases.get(name, name)

    def get(self, name: str) -> T:
        self._import_builtins()
        name = self.resolve_name(name)
        if name in self._items:
            return self._items[name]
        if name in self._discover():
            return self._load_plugin(name)
        if name in self._errors:
            err = self._errors[name]
            raise RegistryError(f"{self.kind} plugin {name!r} ({err.entry_point}) is unusable: {err.error}")
        known = self.names()
        close = difflib.get_close_matches(name, known + sorted(self._aliases), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise RegistryError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(known) or 'none'}.")

    def __contains__(self, name: str) -> bool:
        name = self.resolve_name(name)
        self._discover()
        return name in self._items or name in self._discover()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> Iterator[tuple[str, T]]:
        for n in self.names():
            try:
                yield n, self.get(n)
            except RegistryError:
                continue

    def reset_plugins(self) -> None:
        """Forget discovered plugins (for tests that change ``sys.path``)."""
        for name in self._loaded_plugins:
            self._items.pop(name, None)
        self._loaded_plugins.clear()
        self._plugin_eps = None
        self._errors.clear()
