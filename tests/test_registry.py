"""The generic registry, including plugins from a real fake distribution on sys.path."""

from __future__ import annotations

import sys

import pytest

from harness.registry import Registry, RegistryError
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
