"""One small generic registry for methods, tasks, metrics, retrievers and model presets.

Built-ins are registered in code (``registry.register("adhoc", AdHoc)``); third-party
plugins are discovered lazily from a Python entry-point group the first time a name is
looked up or listed. Three rules keep the built-ins safe:

* a plugin that fails to import is recorded with its error (see ``plugin_errors``) and
  reported by name when someone asks for it; it never breaks the rest of the registry;
* a plugin can never replace a built-in of the same name: the clash is recorded as an
  error instead;
* every registry knows what kind of object it holds (its ``base``: a class entries must
  subclass, or a type entries must be instances of) and refuses anything else, both when
  a built-in is registered and when a plugin is loaded. A plugin whose entry point names
  the wrong thing is reported with the plugin's name, its entry point and its
  distribution, instead of failing deep inside the runner.

Unknown names fail with a "did you mean" suggestion. Every error a lookup raises is a
:class:`RegistryError`, so one ``except`` at the command line covers them all.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for unknown names and broken plugins; ``str()`` is a full sentence."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable.
        return str(self.args[0]) if self.args else ""


class RegistryTypeError(RegistryError, TypeError):
    """An entry that is not of the registry's kind (a plugin naming a non-Method, ...).

    A :class:`RegistryError` for callers that report lookups, and a :class:`TypeError`
    for code that registers a wrong object itself (a programming error).
    """


@dataclass(frozen=True)
class PluginError:
    name: str
    entry_point: str
    error: str


def _resolve(ref: type | str) -> type:
    """A base given as ``"module:Qualname"`` is imported on first use (no import cycles)."""
    if isinstance(ref, type):
        return ref
    module, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"registry base {ref!r} is not a class")
    return obj


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(obj: Any) -> str:
    """A short, unambiguous description of what was registered, for error messages."""
    if isinstance(obj, type):
        return f"the class {_type_name(obj)}"
    text = repr(obj)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(obj).__name__} {text}"


def _entry_point_label(ep: metadata.EntryPoint) -> str:
    """``group: name = value`` plus the distribution that declares it, when known."""
    dist = getattr(ep, "dist", None)
    where = f" in distribution {dist.name!r}" if dist is not None and getattr(dist, "name", None) else ""
    return f"entry point {ep.group}: {ep.name} = {ep.value}{where}"


class Registry(Generic[T]):
    """Name -> object mapping with lazy entry-point plugins and a declared entry kind.

    ``kind`` is used in messages ("unknown method 'pplg'"). ``group`` is the entry-point
    group, e.g. ``persona_bench.methods``; ``None`` disables plugins. ``base`` is the
    class every entry must subclass (``instances=False``, for registries of classes) or
    be an instance of (``instances=True``); it may be given as ``"module:Qualname"`` so
    that the registry module imports nothing heavy. ``check(name, obj)`` may add rules
    of its own; it raises ``ValueError`` or ``TypeError`` with the reason.
    """

    def __init__(
        self,
        kind: str,
        group: str | None = None,
        builtin_modules: tuple[str, ...] = (),
        *,
        base: type | str | None = None,
        instances: bool = False,
        check: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self.builtin_modules = builtin_modules
        self._base = base
        self.instances = instances
        self._check = check
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._plugin_eps: dict[str, metadata.EntryPoint] | None = None
        self._errors: dict[str, PluginError] = {}
        self._loaded_plugins: set[str] = set()

    # -- kind checks ------------------------------------------------------------------
    @property
    def base(self) -> type | None:
        """The base type, imported on first use."""
        if isinstance(self._base, str):
            self._base = _resolve(self._base)
        return self._base

    def expected(self) -> str:
        """What an entry must be, in words ("a subclass of harness.api.Method")."""
        base = self.base
        if base is None:
            return f"a {self.kind}"
        return f"{'an instance' if self.instances else 'a subclass'} of {_type_name(base)}"

    def problem(self, name: str, obj: Any) -> str | None:
        """Why ``obj`` cannot be this registry's ``name``, or ``None`` when it can."""
        base = self.base
        if base is not None:
            ok = isinstance(obj, base) if self.instances else isinstance(obj, type) and issubclass(obj, base)
            if not ok:
                return f"expected {self.expected()}, got {describe(obj)}"
        if self._check is not None:
            try:
                self._check(name, obj)
            except (ValueError, TypeError) as exc:
                return str(exc)
        return None

    # -- registration -------------------------------------------------------------
    def register(self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = ()):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``.

        Registering the very same (equal) object again is a no-op, so a module that is
        imported twice does not fail; a different object under a taken name is refused.
        """

        def _add(o: T) -> T:
            if self._plugin_eps is not None and name in self._plugin_eps:
                raise ValueError(f"{self.kind} {name!r}: register built-ins before plugins are discovered")
            if name in self._items:
                if self._items[name] == o:
                    self._items[name] = o  # same definition (a re-imported module): take the new one
                    return o
                raise ValueError(f"{self.kind} {name!r} is already registered")
            reason = self.problem(name, o)
            if reason is not None:
                raise RegistryTypeError(f"{self.kind} {name!r} cannot be registered: {reason}")
            self._items[name] = o
            for alias in aliases:
                self._aliases[alias] = name
            return o

        return _add(obj) if obj is not None else _add

    def unregister(self, name: str) -> None:
        """Remove a registered entry and its aliases (tests; plugins use ``reset_plugins``)."""
        self._items.pop(name, None)
        self._loaded_plugins.discard(name)
        for alias in [a for a, target in self._aliases.items() if target == name]:
            del self._aliases[alias]

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

    def _refuse_plugin(self, name: str, ep: metadata.EntryPoint, error: str, message: str,
                       exc_type: type[RegistryError] = RegistryError) -> RegistryError:
        self._errors[name] = PluginError(name, ep.value, error)
        del self._plugin_eps[name]  # type: ignore[union-attr]
        return exc_type(message)

    def _load_plugin(self, name: str) -> T:
        ep = self._discover()[name]
        label = _entry_point_label(ep)
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
            error = f"{type(exc).__name__}: {exc}"
            raise self._refuse_plugin(
                name, ep, error,
                f"{self.kind} plugin {name!r} ({ep.value}) failed to load: {error}; declared by {label}",
            ) from exc
        reason = self.problem(name, obj)
        if reason is not None:
            error = f"not a {self.kind}: {reason}"
            raise self._refuse_plugin(
                name, ep, error, f"{self.kind} plugin {name!r} ({ep.value}) is refused: {error}; declared by {label}",
                RegistryTypeError,
            )
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
