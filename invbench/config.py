"""Configuration: dataclass defaults, YAML files under ``configs/``, ``--set key=value`` overrides.

Every component (method, dataset, generator, evaluation) declares its hyper-parameters as a
dataclass with defaults. ``configs/<kind>s/<name>.yaml`` may override those defaults; the
command line overrides both. Unknown keys and values of the wrong type are errors that name
the key, the file it came from and the valid keys. The resolved configuration is hashed.

Scale profiles: a component's YAML may carry ``profiles: {paper: {...}}``, the paper's
configuration beside the digits-scale defaults (each value cited to the paper's section there).
``resolve(..., profile="paper")`` layers that block between the file's own keys and the command
line: defaults <- YAML <- YAML ``profiles[profile]`` <- ``--set``. A method's profile may pin the
dataset's settings it needs (the paper's resolution) in a nested ``dataset:`` mapping
(``profile_dataset_keys``); ``--set dataset.…`` still wins.

Every numeric field declares its sane range beside its default, ``lr: float = bounded(2e-4,
gt=0, le=10)``; ``build`` refuses a value outside it with the range in the message (exit 2),
before anything is trained. A subclass that changes a default keeps its parent's range.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from invbench.errors import UsageError

C = TypeVar("C")

CONFIG_PACKAGE = "invbench.configs"


# Upper ends shared by many fields (one place). Each is far above any paper's setting and below
# where memory or float arithmetic fails: a batch of 2**16 digits images is 0.8 GB in float32
# (1e12 would need 12 PB); 1e7 samples or steps is 200x the 50,000 of the FID protocol; Adam or
# RMSprop at a learning rate above 10 diverges on any of these networks and 1e300 overflows to
# inf in the first update; a loss weight of 1e6 already drowns every other term (a larger one
# only brings float32 overflow nearer); 2**14 channels or latent dimensions is 32x StyleGAN's 512.
MAX_BATCH = 65_536
MAX_SAMPLES = 10_000_000
MAX_STEPS = 10_000_000
MAX_LR = 10.0
MAX_WEIGHT = 1e6
MAX_WIDTH = 16_384
MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds in [0, 2**32)

BOUNDS = "invbench.bounds"  # the dataclass field metadata key of a numeric field's range


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The sane range of a number: exclusive (``gt``, ``lt``) and inclusive (``ge``, ``le``)
    ends. A tuple-valued field applies it to each element."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def holds(self, v: float) -> bool:
        return (
            math.isfinite(v)
            and (self.gt is None or v > self.gt)
            and (self.ge is None or v >= self.ge)
            and (self.lt is None or v < self.lt)
            and (self.le is None or v <= self.le)
        )

    def __str__(self) -> str:
        ends = [(">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)]
        return " and ".join(f"{op} {_num(b)}" for op, b in ends if b is not None) or "finite"


def _num(b: float) -> str:
    """1000000 -> 1_000_000 (readable, and a valid --set value), 2e-4 stays 0.0002."""
    return f"{int(b):_}" if float(b).is_integer() and abs(b) >= 10_000 else f"{b:g}"


def bounded(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    since: int | str | None = None,
) -> Any:
    """A dataclass field with ``default`` and its sane range (checked by ``build``).

    An upper end is given where memory or arithmetic needs one (batch sizes, sample counts,
    steps, learning rates and loss weights that would overflow), generous enough for the
    papers' own settings. ``since``: a field added after results existed, left out of keys and
    record hashes while it holds ``default`` (``invbench.artifacts.later``).
    """
    meta = {BOUNDS: Bounds(gt, ge, lt, le)}
    if since is None:
        return dataclasses.field(default=default, metadata=meta)
    from invbench.artifacts import later

    return later(default, since, **meta)


def field_bounds(cls: type, name: str) -> Bounds | None:
    """The range of field ``name``: the nearest declaration in the MRO that has one (a subclass
    that only changes the default, ``batch_size: int = 32``, keeps its parent's range)."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and BOUNDS in f.metadata:
            return f.metadata[BOUNDS]
    return None


def check_bounds(cfg: Any, sources: dict[str, str] | None = None) -> None:
    """Raise ``UsageError`` naming the key, its value, its range and where the value came
    from, for the first numeric field of dataclass ``cfg`` outside its declared range."""
    for f in dataclasses.fields(cfg):
        b = field_bounds(type(cfg), f.name)
        value = getattr(cfg, f.name)
        if b is None or value is None:
            continue
        items = value if isinstance(value, (tuple, list)) else (value,)
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not b.holds(v):
                source = (sources or {}).get(f.name, "default")
                scalar = isinstance(f.default, (int, float)) and not isinstance(f.default, bool)
                fix = f"e.g. --set {f.name}={_num(f.default)} (the default)" if scalar else ""
                raise UsageError(
                    f"{source}: '{f.name}' = {value!r} is out of range: "
                    f"{'each value ' if value is not v else ''}must be {b}. "
                    f"Pick a value in that range{', ' + fix if fix else ''}."
                )


def config_file(kind: str, name: str) -> Path | None:
    """The YAML defaults file of a component, if the suite ships one."""
    try:
        path = resources.files(CONFIG_PACKAGE).joinpath(f"{kind}s", f"{name}.yaml")
    except ModuleNotFoundError:  # pragma: no cover - broken install
        return None
    return Path(str(path)) if path.is_file() else None


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}). "
            "Save the file as UTF-8."
        ) from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML ({e}). Fix the file's syntax.") from e
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}. Check the path.") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of key: value, got {type(data).__name__}.")
    return data


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Convert ``value`` (a YAML value or a command-line string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        ):
            return None
        last: UsageError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key, source)
            except UsageError as e:
                last = e
        assert last is not None
        raise last
    bad = UsageError(
        f"{source}: '{key}' must be {_type_name(tp)}, got {value!r}. "
        f"Fix the value, e.g. --set {key}=<{_type_name(tp)}>."
    )
    if origin is Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if value == c or (isinstance(value, str) and str(c) == value):
                return c
        raise bad
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise bad
        (inner, *_) = typing.get_args(tp) or (str,)
        return tuple(coerce(v, inner, key, source) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise bad
    if tp is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, bool):
            raise bad
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(out):
            raise UsageError(f"{source}: '{key}' must be a finite number, got {value!r}.")
        return out
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    return value


def build(cls: type[C], *layers: tuple[str, dict[str, Any]]) -> C:
    """Instantiate dataclass ``cls`` from its defaults and ``layers`` of (source, overrides)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, raw in layer.items():
            if key not in fields:
                import difflib

                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise UsageError(
                    f"{source}: unknown key '{key}'.{hint} Valid keys: {', '.join(fields)}."
                )
            values[key] = coerce(raw, hints[key], key, source)
            sources[key] = source
    cfg = cls(**values)
    check_bounds(cfg, sources)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as e:
            raise UsageError(f"invalid configuration: {e}") from e
    return cfg


PROFILES = "profiles"
DIGITS = "digits"  # the suite's own scale: every Config's defaults and its YAML's base keys


def _profile_blocks(path: Path, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    blocks = data.pop(PROFILES, None) or {}
    if not isinstance(blocks, dict) or not all(isinstance(v, dict) for v in blocks.values()):
        raise UsageError(
            f"{path}: '{PROFILES}' must map a profile name to a mapping of key: value, e.g. "
            "profiles: {paper: {z_dim: 512}}."
        )
    return blocks


def profiles_of(kind: str, name: str) -> dict[str, dict[str, Any]]:
    """The profiles a component declares (name -> its YAML block), {} when none."""
    path = config_file(kind, name)
    return {} if path is None else _profile_blocks(path, load_yaml(path))


def component_layers(
    kind: str, name: str, profile: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """The YAML layers of a component: its file's own keys, then ``profiles[profile]`` (without
    a nested ``dataset:`` mapping, which belongs to the dataset). Absent file or profile: fewer
    layers (the component keeps its digits-scale defaults)."""
    path = config_file(kind, name)
    if path is None:
        return []
    data = load_yaml(path)
    blocks = _profile_blocks(path, data)
    layers = [(str(path), data)]
    if profile and profile != DIGITS and profile in blocks:
        block = {k: v for k, v in blocks[profile].items() if k != "dataset"}
        layers.append((f"{path} (profile {profile})", block))
    return layers


def profile_dataset_keys(kind: str, name: str, profile: str | None) -> dict[str, Any]:
    """The dataset settings a component's profile pins (its nested ``dataset:`` mapping)."""
    if not profile or profile == DIGITS:
        return {}
    keys = profiles_of(kind, name).get(profile, {}).get("dataset") or {}
    if not isinstance(keys, dict):
        raise UsageError(f"{kind} '{name}': profiles.{profile}.dataset must be a mapping.")
    return dict(keys)


def resolve(
    cls: type[C],
    kind: str,
    name: str,
    overrides: dict[str, str] | None = None,
    profile: str | None = None,
    source: str = "--set",
    pinned: tuple[str, dict[str, Any]] | None = None,
) -> C:
    """Dataclass defaults <- ``configs/<kind>s/<name>.yaml`` <- its ``profiles[profile]`` <-
    ``pinned`` (another component's profile keys for this one: (source, keys)) <- command-line
    overrides (``source`` names them in messages)."""
    layers = component_layers(kind, name, profile)
    if pinned and pinned[1]:
        layers.append(pinned)
    if overrides:
        layers.append((source, overrides))
    return build(cls, *layers)


def as_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def stable_hash(obj: Any, n: int = 16) -> str:
    """Content hash of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """Split ``--set`` items into per-component overrides.

    ``key=value`` goes to whichever component declares ``key`` (resolved later);
    ``method.key=value``, ``dataset.key=...``, ``generator.key=...``, ``eval.key=...`` are explicit.
    """
    out: dict[str, dict[str, str]] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got '{item}'. Example: --set steps=200.")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UsageError(f"--set expects key=value, got '{item}'.")
        scope, _, bare = key.rpartition(".")
        out.setdefault(scope, {})[bare] = value
    return out


# -- command-line numbers that are not configuration fields ---------------------------------------
def arg_number(
    kind: type,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Callable[[str], Any]:
    """An argparse ``type``: the text parsed as ``kind`` (int or float), finite and within the
    bounds; argparse turns the error into exit 2 with the option named (``--samples``)."""
    bounds = Bounds(gt, ge, lt, le)

    def parse(text: str) -> Any:
        try:
            value = kind(text.replace("_", "") if kind is int else text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not bounds.holds(value):
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {bounds}")
        return value

    parse.__name__ = kind.__name__
    return parse


MAX_EDIT_STEPS = 1000  # edit strips and scores are per step; 1,000 is already far past readable


def edit_steps_arg(text: str) -> str:
    """The argparse ``type`` of ``edit --steps`` (``start:stop:count`` or ``a,b,c``): every
    number finite (nan or inf would reach the generator) and at most ``MAX_EDIT_STEPS`` steps
    (a count of 1e12 would fill memory). Returns the text; ``editing.parse_steps`` reads it."""
    parts = text.split(":") if ":" in text else text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected start:stop:count (e.g. -3:3:7) or a list (e.g. -2,0,2)"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every step must be a finite number")
    count = values[2] if ":" in text and len(values) == 3 else len(values)
    if count > MAX_EDIT_STEPS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {count:g} steps; at most {MAX_EDIT_STEPS} are allowed"
        )
    return text
