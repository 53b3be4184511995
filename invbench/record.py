"""The result record: one typed, versioned JSON object per run, written atomically, validated on read.

``Record`` is what ``invbench run`` writes and ``invbench.run`` returns; tables, plots, the
regression gate and suites read records only through ``Record.read`` / ``load_records``, which
refuse anything that is not one: a truncated or non-UTF-8 file, JSON of another shape, a metric
that is not a number. ``table`` skips such a file with a warning naming it, ``check`` stops
(exit 2) naming it, ``suite run`` computes its cell again.

A row of a table is a *setting*: the run's configuration without its seeds (the run's and the
zoo generator's), hashed as ``setting``. ``precision`` (fp32, bf16) and ``profile`` (the scale:
digits, paper) are part of it and shown as columns, so rows that differ in them are never
averaged together nor compared by the gate. Records written before the schema had a version
(schema 1) are read too; their setting is hashed from their configuration as it was then.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from invbench import artifacts
from invbench.config import stable_hash
from invbench.errors import DataError

SCHEMA = 2


class InvalidRecord(DataError):
    """A file in a results folder that is not a valid record (exit 2 where it must be valid)."""


def setting_of(config: dict[str, Any]) -> str:
    """A short id of everything in the configuration except the seeds (the run's and the zoo
    generator's): records that differ only in them are seeds of one setting."""
    cfg = dict(config)
    cfg.pop("seed", None)
    if isinstance(cfg.get("generator"), dict):
        cfg["generator"] = {k: v for k, v in cfg["generator"].items() if k != "seed"}
    return stable_hash(cfg, 8)


@dataclass
class Record:
    """One run's result (the design card's record), with its identity and its files."""

    method: str
    dataset: str
    generator: str
    space: str
    seed: int
    metrics: dict[str, float | None]
    config: dict[str, Any]
    config_hash: str
    setting: str
    split: str = "test"
    n_test: int = 0
    precision: str = "fp32"
    profile: str = "digits"
    metric_flavors: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # grid, per_image, latents, images
    provenance: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    IDENTITY: ClassVar[tuple[str, ...]] = (
        "method", "dataset", "generator", "space", "precision", "profile",
    )  # fmt: skip

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def write(self, path: Path) -> None:
        """Atomically: a killed writer leaves the old file or none, never half of one."""
        artifacts.atomic_write_text(Path(path), self.to_json())

    @classmethod
    def from_dict(cls, obj: Any, where: str = "record") -> Record:
        """Validate ``obj`` (parsed JSON) and build the record; ``InvalidRecord`` names the
        problem and ``where`` it is."""

        def bad(problem: str) -> InvalidRecord:
            return InvalidRecord(
                f"{where}: not a valid invbench record ({problem}). Delete it or run its cell "
                "again (`invbench suite run` recomputes invalid cells)."
            )

        if not isinstance(obj, dict):
            raise bad(f"a JSON {type(obj).__name__}, not an object")
        schema = obj.get("schema", 1)
        if not isinstance(schema, int) or isinstance(schema, bool) or schema > SCHEMA:
            raise bad(f"schema {schema!r}; this invbench reads schemas 1 to {SCHEMA}")
        for key in ("method", "dataset", "generator"):
            if not isinstance(obj.get(key), str) or not obj[key]:
                raise bad(f"'{key}' must be a non-empty string")
        seed = obj.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise bad("'seed' must be an integer")
        for key in ("metrics", "config"):
            if not isinstance(obj.get(key), dict):
                raise bad(f"'{key}' must be a mapping")
        for name, v in obj["metrics"].items():
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise bad(f"metric '{name}' is {v!r}, not a finite number or null")
        for key in ("metric_flavors", "unavailable", "files"):
            v = obj.get(key) or {}
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise bad(f"'{key}' must map names to strings")
        ci = obj.get("ci") or {}
        if not isinstance(ci, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(_finite(x) for x in v) for v in ci.values()
        ):
            raise bad("'ci' must map metric names to [low, high] numbers")
        for key in ("space", "split", "precision", "profile", "config_hash", "setting"):
            if key in obj and not isinstance(obj[key], str):
                raise bad(f"'{key}' must be a string")
        if "n_test" in obj and (not isinstance(obj["n_test"], int) or obj["n_test"] < 0):
            raise bad("'n_test' must be a non-negative integer")
        if not isinstance(obj.get("provenance", {}), dict):
            raise bad("'provenance' must be a mapping")
        if schema == 1:  # before the version: the grid was a top-level field, setting unstored
            files = {"grid": obj["grid"]} if isinstance(obj.get("grid"), str) else {}
            obj = {**obj, "files": files, "setting": setting_of(obj["config"])}
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in obj.items() if k in known}
        values.setdefault("space", "")
        values.setdefault("config_hash", stable_hash(obj["config"]))
        values.setdefault("setting", setting_of(obj["config"]))
        values["schema"] = SCHEMA
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> Record:
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecord(f"{path}: not a valid invbench record (not UTF-8 text).") from None
        except OSError as e:
            raise InvalidRecord(f"{path}: cannot read it ({e.strerror}).") from None
        try:
            obj = json.loads(text, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, ValueError) as e:
            raise InvalidRecord(
                f"{path}: not a valid invbench record (not JSON, or truncated: {e}). Delete it or "
                "run its cell again."
            ) from None
        return cls.from_dict(obj, str(path))

    # -- reading it ------------------------------------------------------------------------------
    def row_key(self) -> tuple[str, ...]:
        """What makes two records seeds of one table row."""
        return (*(getattr(self, k) for k in self.IDENTITY), self.setting)

    def __getitem__(self, key: str) -> Any:
        """``record["metrics"]`` reads like the JSON object (code written against dicts)."""
        if key not in {f.name for f in dataclasses.fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a record may hold")


def is_valid(path: Path) -> bool:
    """Whether ``path`` holds a valid record (a suite cell is done only then)."""
    try:
        Record.read(path)
    except InvalidRecord:
        return False
    return True


def load_records(results: Path, strict: bool = False) -> list[Record]:
    """Every record in ``results`` (``*.json``, sorted by name). An invalid file is skipped with
    a warning naming it, or, with ``strict``, raises ``InvalidRecord`` (the gate must not
    silently lose a cell). JSON that is not meant as a record (an editing result) is ignored."""
    from invbench.errors import UsageError

    results = Path(results)
    if not results.is_dir():
        raise UsageError(
            f"results directory '{results}' does not exist. Run `invbench run` first or pass "
            "--results DIR."
        )
    out = []
    for path in sorted(results.glob("*.json")):
        try:
            rec = Record.read(path)
        except InvalidRecord as e:
            if _foreign(path):
                continue
            if strict:
                raise
            print(f"invbench: warning: skipping {e}", file=sys.stderr)
            continue
        out.append(rec)
    return out


def _foreign(path: Path) -> bool:
    """invbench's other JSON files: an editing result or a gate reference."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(obj, dict):
        return False
    return "directions" in obj or str(obj.get("format", "")).startswith("invbench-reference")
