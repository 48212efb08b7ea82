"""The generic registry, including plugins from a real fake distribution on sys.path."""

from __future__ import annotations

import sys

import pytest

from harness.registry import Registry, RegistryError, RegistryTypeError
from tests.conftest import write_dist


def test_builtins_and_did_you_mean():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1, aliases=("a",))
    reg.register("beta", 2)
    assert reg.get("alpha") == 1 and reg.get("a") == 1
    assert reg.names() == ["alpha", "beta"]
    with pytest.raises(RegistryError, match=r"unknown widget 'alpah'\. Did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 3)


def test_unknown_without_close_match_lists_known():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(RegistryError) as info:
        reg.get("zzzzzz")
    assert "Did you mean" not in str(info.value) and "Known: alpha" in str(info.value)


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pkg = site / "fakeplug"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VALUE = 42\nLOADS = []\n")
    (pkg / "broken.py").write_text("raise ImportError('needs a library that is not installed')\n")
    write_dist(site, "fakeplug", {"test.widgets": {
        "good": "fakeplug:VALUE",
        "bad": "fakeplug.broken:THING",
        "alpha": "fakeplug:VALUE",  # clashes with a built-in
    }})
    monkeypatch.syspath_prepend(str(site))
    yield site
    for mod in [m for m in sys.modules if m.startswith("fakeplug")]:
        del sys.modules[mod]


def test_plugins_from_entry_points(plugin_site):
    reg: Registry[int] = Registry("widget", "test.widgets")
    reg.register("alpha", 1)
    assert set(reg.names()) == {"alpha", "good", "bad"}
    assert "fakeplug" not in sys.modules  # discovery is lazy: nothing imported yet
    assert reg.get("good") == 42
    assert reg.get("alpha") == 1  # a plugin never replaces a built-in
    clash = {e.name: e.error for e in reg.plugin_errors}
    assert "already called 'alpha'" in clash["alpha"]


def test_broken_plugin_is_reported_by_name_and_hides_nothing(plugin_site):
    reg: Registry[int] = Registry("widget", "test.widgets")
    reg.register("alpha", 1)
    with pytest.raises(RegistryError, match=r"plugin 'bad' \(fakeplug.broken:THING\) failed to load: ImportError: needs"):
        reg.get("bad")
    assert reg.get("alpha") == 1 and reg.get("good") == 42
    assert [e.name for e in reg.plugin_errors if e.name == "bad"] == ["bad"]
    assert "bad" not in reg.names()
    with pytest.raises(RegistryError, match="unusable"):
        reg.get("bad")


def test_builtin_registries_resolve_lazily():
    from harness.registries import METHODS, MODELS, TASKS

    assert {"lamp1", "lamp2", "lamp3", "lamp4", "lamp5", "lamp6", "lamp7"} <= set(TASKS.names())
    assert TASKS.get("LaMP_2").name == "lamp2"
    assert "adhoc" in METHODS.names()
    assert {"smollm2-135m", "minilm-l6", "tiny-t5", "tiny-causal", "tiny-encoder"} <= set(MODELS.names())


# -- typed registries ---------------------------------------------------------------------
def test_a_typed_registry_refuses_the_wrong_kind_at_registration():
    reg: Registry[int] = Registry("widget", base=int, instances=True)
    with pytest.raises(RegistryTypeError, match=r"widget 'x' cannot be registered: expected an instance of "
                                                 r"builtins\.int, got str 'seven'"):
        reg.register("x", "seven")  # type: ignore[arg-type]
    assert "x" not in reg.names()
    classes: Registry[type] = Registry("widget class", base="collections.abc:Mapping")
    classes.register("dict", dict)
    with pytest.raises(TypeError,
                       match=r"expected a subclass of collections\.abc\.Mapping, got the class builtins\.list"):
        classes.register("list", list)
    with pytest.raises(TypeError, match=r"got int 3"):
        classes.register("three", 3)  # an instance is not a class


def test_registering_the_same_object_again_is_a_no_op():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    reg.register("alpha", 1)  # a module imported twice
    assert reg.get("alpha") == 1


@pytest.fixture
def bad_method_plugins(tmp_path, monkeypatch):
    """A distribution whose ``persona_bench.methods`` entry points name things that are not methods."""
    from harness.registries import METHODS, TASKS

    site = tmp_path / "site"
    pkg = site / "badplug"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from harness.api import Method\n"
        "NOT_A_METHOD = 42\n"
        "class Helper:\n    pass\n"
        "class Abstract(Method):\n    pass\n"
        "class Mistuned(Method):\n"
        "    profiles = {'small': {'epochs': 1}}\n"
        "    def predict(self, batch):\n        return []\n"
        "TASK_LIKE = {'name': 'oops'}\n"
    )
    write_dist(site, "badplug", {
        "persona_bench.methods": {"badplugin": "badplug:NOT_A_METHOD", "helper": "badplug:Helper",
                                  "abstract": "badplug:Abstract", "mistuned": "badplug:Mistuned"},
        "persona_bench.tasks": {"oops": "badplug:TASK_LIKE"},
    })
    monkeypatch.syspath_prepend(str(site))
    METHODS.reset_plugins()
    TASKS.reset_plugins()
    yield METHODS, TASKS
    METHODS.reset_plugins()
    TASKS.reset_plugins()
    sys.modules.pop("badplug", None)


def test_a_plugin_that_is_not_a_method_is_refused_by_name(bad_method_plugins):
    methods, tasks = bad_method_plugins
    with pytest.raises(RegistryTypeError) as info:
        methods.get("badplugin")
    text = str(info.value)
    assert "method plugin 'badplugin' (badplug:NOT_A_METHOD) is refused" in text
    assert "expected a subclass of harness.api.Method, got int 42" in text
    assert "declared by entry point persona_bench.methods: badplugin = badplug:NOT_A_METHOD in distribution " \
           "'badplug'" in text
    assert isinstance(info.value, RegistryError)  # what the command line catches
    with pytest.raises(RegistryError, match=r"'badplugin' \(badplug:NOT_A_METHOD\) is unusable: not a method"):
        methods.get("badplugin")  # asked again: the recorded refusal, not a second import
    assert "badplugin" not in methods.names()
    assert [e.name for e in methods.plugin_errors if e.name == "badplugin"] == ["badplugin"]
    with pytest.raises(RegistryError, match=r"plugin 'helper' .* got the class badplug\.Helper"):
        methods.get("helper")
    with pytest.raises(RegistryError, match=r"plugin 'abstract' .* Abstract is abstract \(implement predict\)"):
        methods.get("abstract")
    with pytest.raises(RegistryError, match=r"plugin 'mistuned' .*profile 'small'\) has no parameter 'epochs'"):
        methods.get("mistuned")
    with pytest.raises(RegistryError, match=r"task plugin 'oops' .* expected an instance of harness\.api\.TaskSpec"):
        tasks.get("oops")
    assert methods.get("adhoc").__name__ == "AdHoc"  # built-ins are untouched


def test_bench_run_reports_a_non_method_plugin_clearly(bad_method_plugins, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["run", "--method", "badplugin", "--task", "lamp2", "--data", "synthetic",
                                      "--out", str(tmp_path / "runs"), "--no-progress"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "method plugin 'badplugin' (badplug:NOT_A_METHOD) is refused" in said
    assert "got int 42; declared by entry point persona_bench.methods: badplugin" in said
    assert "in distribution 'badplug'" in said


def test_builtin_registries_refuse_wrong_kinds_and_names():
    from harness.api import Method, NoParams
    from harness.registries import METHODS, MODELS, TASKS

    with pytest.raises(RegistryTypeError, match=r"method 'int' cannot be registered: expected a subclass"):
        METHODS.register("int", int)

    class BadProfile(Method):
        profiles = {"small": {"k": 1}}

        def predict(self, batch):  # pragma: no cover - never run
            return []

    with pytest.raises(RegistryTypeError, match=r"method 'bad-profile'.*has no parameter 'k'"):
        METHODS.register("bad-profile", BadProfile)

    class SelfVariant(Method):
        Params = NoParams
        variant_of = "self-variant"

        def predict(self, batch):  # pragma: no cover - never run
            return []

    with pytest.raises(RegistryTypeError, match=r"variant_of names the method itself"):
        METHODS.register("self-variant", SelfVariant)
    with pytest.raises(RegistryTypeError, match=r"task 'lamp-two' cannot be registered: it is called 'lamp2'"):
        TASKS.register("lamp-two", TASKS.get("lamp2"))
    with pytest.raises(RegistryTypeError, match=r"expected an instance of harness\.models\.ModelPreset"):
        MODELS.register("nothing", "tiny-causal")
    assert not {"int", "bad-profile", "self-variant"} & set(METHODS.names())


def _outward_imports(path, module_level_only: bool) -> list[str]:
    """``tasks``/``methods`` imports in ``path`` (only those at module level, if asked)."""
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if module_level_only and id(node) in nested:
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in ("tasks", "methods")]
    return found


def test_engine_depends_on_no_task_or_method_module():
    """Dependencies point inward: nothing under harness/ imports tasks/ or methods/ (built-ins
    are imported by name through the registries); only the CLI's data commands import
    task modules, lazily, inside the command."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "harness"
    bad = [hit for path in sorted(root.rglob("*.py"))
           for hit in _outward_imports(path, module_level_only=path.name == "cli.py")]
    assert bad == []
    cli_lazy = _outward_imports(root / "cli.py", module_level_only=False)
    assert cli_lazy and all(" tasks" in hit for hit in cli_lazy)  # the data commands' lazy imports, no methods
