"""Every numeric configuration field declares a sane range, and ``config.build`` enforces it."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

import pytest

from invbench.config import (
    Bounds,
    bounded,
    build,
    check_bounds,
    config_file,
    field_bounds,
    load_yaml,
    profiles_of,
    resolve,
)
from invbench.errors import UsageError


def _config_classes() -> list[tuple[str, str, type]]:
    """(kind, name, Config) of everything a user can configure: every registered method,
    dataset, generator and direction plugin, the evaluation and the editing benchmark."""
    from invbench.editing import EditConfig
    from invbench.registry import DATASETS, DIRECTIONS, GENERATORS, METHODS
    from invbench.runner import EvalConfig

    out = [("eval", "default", EvalConfig), ("edit", "default", EditConfig)]
    for kind, reg in (
        ("method", METHODS),
        ("dataset", DATASETS),
        ("generator", GENERATORS),
        ("directions", DIRECTIONS),
    ):
        out += [(kind, name, cls.Config) for name, cls in reg.items()]
    return out


CLASSES = _config_classes()


def _numeric(tp: typing.Any) -> bool:
    """int / float, optional or as the items of a tuple (bool is not a number here)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, tuple) or isinstance(tp, type(int | None)):
        return any(_numeric(a) for a in args if a is not type(None) and a is not Ellipsis)
    return tp in (int, float)


@pytest.mark.parametrize("kind,name,cls", CLASSES, ids=[f"{k}:{n}" for k, n, _ in CLASSES])
def test_every_numeric_field_has_a_range_its_default_and_yaml_satisfy(kind, name, cls):
    hints = typing.get_type_hints(cls)
    numeric = [f.name for f in dataclasses.fields(cls) if _numeric(hints[f.name])]
    missing = [n for n in numeric if field_bounds(cls, n) is None]
    assert not missing, f"{kind} '{name}': no declared range for {missing}"
    check_bounds(cls())  # the defaults lie inside their own ranges
    if config_file(kind, name) is not None:  # and so do the shipped YAML defaults and profiles
        # (the paper profiles' encoders start from ArcFace's file, absent offline: ranges only)
        offline = {"enc_init": "random", "enc_id_weight": "0"}
        offline = {
            k: v for k, v in offline.items() if k in {f.name for f in dataclasses.fields(cls)}
        }
        for profile in (None, *profiles_of(kind, name)):
            resolve(cls, kind, name, offline if profile else None, profile=profile)


def test_numeric_fields_are_recognised():
    assert all(_numeric(t) for t in (int, float, int | None, tuple[float, ...], tuple[int, ...]))
    assert not any(_numeric(t) for t in (bool, str, tuple[str, ...], str | None))


def test_a_subclass_that_changes_a_default_keeps_the_parents_range():
    @dataclass
    class Parent:
        batch_size: int = bounded(64, ge=1, le=100)

    @dataclass
    class Child(Parent):
        batch_size: int = 32

    assert Child.__dataclass_fields__["batch_size"].metadata == {}  # dataclasses drop it ...
    assert field_bounds(Child, "batch_size") == Bounds(ge=1, le=100)  # ... the MRO keeps it
    with pytest.raises(UsageError, match=r"'batch_size' = 101 is out of range: must be >= 1"):
        build(Child, ("--set", {"batch_size": "101"}))


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("lr", "1e300", r"'lr' = 1e\+300 is out of range: must be > 0 and <= 10\b"),
        ("lr", "0", r"'lr' = 0.0 is out of range: must be > 0 and <= 10"),
        ("lr", "-0.01", r"must be > 0 and <= 10"),
        ("batch_size", "1000000000000", r"'batch_size' = 1000000000000 .* <= 65_536"),
        ("steps", "-1", r"'steps' = -1 is out of range: must be >= 0 and <= 10_000_000"),
        ("restarts", "0", r"must be >= 1 and <= 1000"),
        ("prior_weight", "1e9", r"must be >= 0 and <= 1_000_000"),
    ],
)
def test_out_of_range_values_are_refused_with_the_range(key, value, message):
    from invbench.registry import METHODS

    cls = METHODS.get("creswell").Config
    with pytest.raises(UsageError, match=message) as e:
        build(cls, ("--set (method 'creswell')", {key: value}))
    assert "--set (method 'creswell')" in str(e.value)  # where the value came from
    assert f"--set {key}=" in str(e.value)  # and a value that works


def test_non_finite_and_tuple_values():
    from invbench.runner import EvalConfig

    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(UsageError, match="finite"):
            build(EvalConfig, ("--set", {"recovery_eps": f"0.1,{bad}"}))
    with pytest.raises(UsageError, match=r"'recovery_eps' = \(0.1, -1.0\) .* each value must"):
        build(EvalConfig, ("--set", {"recovery_eps": "0.1,-1"}))
    assert build(EvalConfig, ("--set", {"recovery_eps": "0.05"})).recovery_eps == (0.05,)


def test_bounds_text_and_edges():
    b = Bounds(gt=0, le=10)
    assert str(b) == "> 0 and <= 10"
    assert b.holds(10) and b.holds(1e-300) and not b.holds(0) and not b.holds(10.000001)
    assert not b.holds(math.nan) and not Bounds().holds(math.inf) and Bounds().holds(-1e300)
    assert str(Bounds(ge=0, lt=1)) == ">= 0 and < 1"
    assert str(Bounds(le=1e7)) == "<= 10_000_000"


def test_a_yaml_value_out_of_range_names_the_file(tmp_path):
    from invbench.registry import GENERATORS

    path = tmp_path / "dcgan.yaml"
    path.write_text("batch_size: 100000000\n")
    with pytest.raises(UsageError, match=rf"{path}: 'batch_size' = 100000000 is out of range"):
        build(GENERATORS.get("dcgan").Config, (str(path), load_yaml(path)))
    path.write_bytes(b"steps: 10\nnote: \xff\xfe caf\xe9\n")
    with pytest.raises(UsageError, match=r"not UTF-8 text \(byte 0xff at offset 16\)"):
        load_yaml(path)


def test_resolve_applies_bounds_to_command_line_overrides():
    from invbench.registry import GENERATORS

    cls = GENERATORS.get("wgan-gp").Config
    assert resolve(cls, "generator", "wgan-gp", {"lr_g": "0.001"}).lr_g == 0.001
    with pytest.raises(UsageError, match=r"'beta2' = 1.0 is out of range: must be >= 0 and < 1"):
        resolve(cls, "generator", "wgan-gp", {"beta2": "1"})


def test_a_field_added_later_keeps_its_range_and_stays_out_of_identity_at_its_default():
    from invbench import artifacts

    @dataclass
    class Cfg:
        a: int = bounded(3, ge=1, le=10, since="paper")

    assert field_bounds(Cfg, "a") == Bounds(ge=1, le=10)
    assert artifacts.identity(Cfg()) == {} and artifacts.identity(Cfg(a=4)) == {"a": 4}
    with pytest.raises(UsageError, match=r"'a'.*>= 1"):
        build(Cfg, ("--set", {"a": "0"}))
