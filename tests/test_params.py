"""Method parameters converted by their real type hints, from every place values come from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional

import pytest

from harness.api import PROFILES, Method
from harness.api import parse_params as reexported
from harness.params import ParamError, method_params, parse_params
from harness.registries import METHODS
from harness.store import RunConfig

if TYPE_CHECKING:
    from collections import OrderedDict  # only for type checkers: unresolvable at runtime


@dataclass(frozen=True)
class Knobs:
    k: int = 1
    epochs: Optional[int] = None
    cap: int | None = 64
    lr: float = 1e-4
    shuffle: bool = False
    pooling: Literal["mean", "cls"] = "mean"
    beams: Literal[1, 4] = 4
    mode: Optional[Literal["a", "b"]] = None
    name: str = "x"
    targets: tuple[str, ...] = ()
    shape: tuple[int, float] = (1, 1.0)
    layers: list[int] = dataclasses.field(default_factory=list)


def config_hash(params: object) -> str:
    return RunConfig(task="lamp2", method="m", params=dataclasses.asdict(params), llm="tiny-causal",
                     encoder="tiny-encoder", data_kind="synthetic", data_location="x", data_checksum="c",
                     split="dev", limit=None, seed=0).hash


def test_command_line_strings_and_sweep_values_give_equal_params_and_hash():
    cli = parse_params(Knobs, {"k": "3", "epochs": "2", "cap": "none", "lr": "1", "shuffle": "yes",
                               "pooling": "cls", "beams": "1", "mode": "b", "targets": "q, v",
                               "shape": "2,0.5", "layers": "1,2"})
    sweep = parse_params(Knobs, {"k": 3, "epochs": 2, "cap": None, "lr": 1, "shuffle": True, "pooling": "cls",
                                 "beams": 1, "mode": "b", "targets": ["q", "v"], "shape": [2, 0.5],
                                 "layers": [1, 2]})
    assert cli == sweep and dataclasses.asdict(cli) == dataclasses.asdict(sweep)
    assert type(cli.lr) is float and type(sweep.lr) is float  # a sweep's `lr = 1` is 1.0, as "-p lr=1" is
    assert cli.epochs == 2 and cli.cap is None and cli.targets == ("q", "v") and cli.layers == [1, 2]
    assert config_hash(cli) == config_hash(sweep)
    # the bug this replaces: an Optional[int] left as the string "3" hashed differently
    assert config_hash(parse_params(Knobs, {"epochs": "3"})) == config_hash(Knobs(epochs=3))
    assert config_hash(Knobs(epochs=3)) != config_hash(Knobs(epochs="3"))  # type: ignore[arg-type]


def test_real_method_params_hash_alike_from_cli_and_sweep():
    bm25 = METHODS.get("bm25")
    assert parse_params(bm25.Params, {"k": "3"}, method="bm25") == parse_params(bm25.Params, {"k": 3})
    pplug = METHODS.get("pplug")
    assert config_hash(parse_params(pplug.Params, {"epochs": "3"})) == config_hash(
        parse_params(pplug.Params, {"epochs": 3}))
    assert reexported is parse_params  # harness.api keeps the public import path


@pytest.mark.parametrize(("raw", "message"), [
    ({"k": "four"}, r"method 'knobby': parameter 'k' expects an integer; got 'four'"),
    ({"k": "four"}, r"method 'knobby'"),
    ({"k": 2.5}, r"parameter 'k' expects an integer; got 2.5"),
    ({"k": True}, r"parameter 'k' expects an integer; got True"),
    ({"epochs": "many"}, r"parameter 'epochs' expects an integer or None; got 'many'"),
    ({"pooling": "max"}, r"parameter 'pooling' expects one of 'mean', 'cls'; got 'max'"),
    ({"beams": "2"}, r"parameter 'beams' expects one of 1, 4; got '2'"),
    ({"beams": "4.0"}, r"expects one of 1, 4"),
    ({"mode": "c"}, r"parameter 'mode' expects one of 'a', 'b' or None; got 'c'"),
    ({"shuffle": "maybe"}, r"parameter 'shuffle' expects true or false .*; got 'maybe'"),
    ({"shuffle": 1}, r"parameter 'shuffle' expects true or false"),
    ({"lr": "fast"}, r"parameter 'lr' expects a number; got 'fast'"),
    ({"name": 3}, r"parameter 'name' expects a string; got 3"),
    ({"shape": "1"},
     r"parameter 'shape' expects 2 comma-separated values \(an integer, a number\) \(2 values, got 1\)"),
    ({"layers": "1,x"}, r"parameter 'layers' expects"),
    ({"kk": "3"}, r"method 'knobby' has no parameter 'kk'\. Did you mean 'k'\? Known: k, epochs"),
])
def test_bad_values_name_the_method_field_and_what_is_allowed(raw, message):
    with pytest.raises(ParamError, match=message):
        parse_params(Knobs, raw, method="knobby")


def test_literal_and_optional_conversion():
    p = parse_params(Knobs, {"pooling": " cls ", "beams": "1", "mode": "None", "epochs": "null"})
    assert (p.pooling, p.beams, p.mode, p.epochs) == ("cls", 1, None, None)
    assert type(p.beams) is int
    assert parse_params(Knobs, {"mode": "a", "epochs": None}).mode == "a"
    assert parse_params(Knobs, {"targets": ""}).targets == ()


def test_profile_overrides_convert_and_user_values_win():
    small = {"k": "2", "lr": 1, "epochs": 1}
    p = parse_params(Knobs, {"k": "5"}, method="knobby", profile=small, profile_name="small")
    assert (p.k, p.lr, p.epochs) == (5, 1.0, 1) and type(p.lr) is float
    with pytest.raises(ParamError,
                       match=r"method 'knobby' \(profile 'small'\): parameter 'k' expects an integer; got 'two'"):
        parse_params(Knobs, {}, method="knobby", profile={"k": "two"}, profile_name="small")
    with pytest.raises(ParamError, match=r"method 'knobby' \(profile 'small'\) has no parameter 'epoch'"):
        parse_params(Knobs, {}, method="knobby", profile={"epoch": 1}, profile_name="small")


class Tuned(Method):
    Params = Knobs
    profiles = {"small": {"k": 2, "epochs": "1"}}

    def predict(self, batch):  # pragma: no cover - never run
        return []


def test_method_params_applies_the_run_profile():
    assert method_params(Tuned, {}, profile="small").k == 2
    assert method_params(Tuned, {"k": "7"}, profile="small").k == 7
    assert method_params(Tuned, {}, profile="paper") == Knobs()
    with pytest.raises(ParamError, match="unknown settings profile 'tiny'"):
        method_params(Tuned, {}, profile="tiny")


def test_every_builtin_methods_profiles_convert():
    for name, cls in METHODS.items():
        for profile in PROFILES:
            params = method_params(cls, {}, profile=profile, name=name)
            assert isinstance(params, cls.Params)


@dataclass(frozen=True)
class Unresolvable:
    k: int = 1
    order: OrderedDict | None = None


def test_an_unresolvable_annotation_only_fails_for_its_own_field():
    assert parse_params(Unresolvable, {"k": "2"}).k == 2
    with pytest.raises(ParamError, match=r"parameter 'order' cannot be converted: annotation 'OrderedDict \| None'"):
        parse_params(Unresolvable, {"order": "x"}, method="u")


def test_a_params_post_init_error_names_the_method():
    @dataclass(frozen=True)
    class Checked:
        k: int = 1

        def __post_init__(self):
            if self.k < 0:
                raise ValueError("k must be >= 0")

    with pytest.raises(ParamError, match=r"method 'checked': k must be >= 0"):
        parse_params(Checked, {"k": "-1"}, method="checked")
