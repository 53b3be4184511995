"""The regression gate: fresh results against a committed reference, metric by metric.

A reference (``invbench table --suite NAME --format json``) stores, per row and metric, the mean
over seeds, the seed-to-seed standard deviation and the metric's flavor. A fresh number fails
when it is worse than the reference by more than its tolerance

    tol = max(K_STD * std, REL_FLOOR * |mean|, ABS_FLOOR)      (std from the reference seeds)

or, when the reference has a single seed, ``SINGLE_SEED_REL * |mean|``. "Worse" follows the
metric's registered direction. Numbers of different flavors, of rows whose method flavor
(e.g. the perceptual network) differs, and of metrics the registry marks as not gated
(wall-clock) are never compared. Rows are matched on their identity, precision and profile
included: a reference row without a fresh twin fails as MISSING.

A reference must be well-formed and finite: a NaN, an infinity, a non-number, a missing key or a
list where a mapping belongs stops the gate (exit 2) naming the key; it never passes. A fresh
value that is not finite fails. Every record the gate reads must be valid (exit 2 otherwise).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invbench.errors import UsageError
from invbench.metrics import METRICS

K_STD = 3.0
REL_FLOOR = 0.02
ABS_FLOOR = 1e-6
SINGLE_SEED_REL = 0.10
ROW_KEYS = ("method", "dataset", "generator", "space", "precision", "profile", "setting")
ROW_DEFAULTS = {"precision": "fp32", "profile": "digits"}  # references written before them


def tolerance(mean: float, std: float | None) -> float:
    if std is None:
        return max(SINGLE_SEED_REL * abs(mean), ABS_FLOOR)
    return max(K_STD * std, REL_FLOOR * abs(mean), ABS_FLOOR)


@dataclass
class Finding:
    row: str
    metric: str
    status: str  # ok | improved | REGRESSION | MISSING | not compared
    detail: str


# -- the reference ---------------------------------------------------------------------------------
def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def validate_reference(ref: Any, where: str) -> dict[str, Any]:
    """``ref`` if it is a well-formed reference with finite numbers; else ``UsageError`` (exit
    2) naming the offending key, e.g. ``rows[0].metrics.mse.mean``."""

    def bad(key: str, problem: str) -> UsageError:
        return UsageError(
            f"reference {where}: {key} {problem}. A gate cannot pass on it; regenerate it with "
            "`invbench table --suite NAME --format json -o FILE`."
        )

    if not isinstance(ref, dict) or ref.get("format") != "invbench-reference/1":
        raise UsageError(
            f"'{where}' is not an invbench reference; make one with "
            "`invbench table --suite NAME --format json -o FILE`."
        )
    rows = ref.get("rows")
    if not isinstance(rows, list):
        raise bad("rows", "must be a list of rows")
    for i, row in enumerate(rows):
        at = f"rows[{i}]"
        if not isinstance(row, dict):
            raise bad(at, "must be a mapping")
        for k in ROW_KEYS:
            if k in ROW_DEFAULTS and k not in row:
                continue
            if not isinstance(row.get(k), str):
                raise bad(f"{at}.{k}", "is missing or not a string")
        if not isinstance(row.get("method_flavor", {}), dict):
            raise bad(f"{at}.method_flavor", "must be a mapping")
        metrics = row.get("metrics")
        if not isinstance(metrics, dict):
            raise bad(f"{at}.metrics", "must be a mapping of metric -> {mean, std, flavor}")
        for m, entry in metrics.items():
            key = f"{at}.metrics.{m}"
            if not isinstance(entry, dict):
                raise bad(key, "must be a mapping with mean, std and flavor")
            if "mean" not in entry:
                raise bad(f"{key}.mean", "is missing")
            mean, std = entry["mean"], entry.get("std")
            if not _number(mean):
                raise bad(f"{key}.mean", f"is {mean!r}, not a number")
            if not math.isfinite(mean):
                raise bad(f"{key}.mean", f"is {mean!r}, not finite")
            if std is not None and (not _number(std) or not math.isfinite(std) or std < 0):
                raise bad(f"{key}.std", f"is {std!r}, not a finite number >= 0 (or null)")
            flavor = entry.get("flavor")
            if flavor is not None and not isinstance(flavor, str):
                raise bad(f"{key}.flavor", f"is {flavor!r}, not a string (or null)")
    return ref


def load_reference(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"reference file '{path}' not found. Pass a leaderboards/*.json file."
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"reference file '{path}' cannot be read as UTF-8 text ({e}).") from None
    try:
        # NaN / Infinity are not JSON; Python's parser would accept them, the gate does not.
        ref = json.loads(text, parse_constant=lambda c: _refuse(path, c))
    except json.JSONDecodeError as e:
        raise UsageError(f"reference file '{path}' is not valid JSON ({e}).") from e
    return validate_reference(ref, str(path))


def _refuse(path: Path, constant: str) -> float:
    raise UsageError(
        f"reference {path}: holds {constant}, not a finite number; a gate cannot pass on it. "
        "Regenerate it with `invbench table --suite NAME --format json -o FILE`."
    )


# -- the comparison --------------------------------------------------------------------------------
def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(row.get(k, ROW_DEFAULTS.get(k, ""))) for k in ROW_KEYS)


def compare(ref: dict[str, Any], fresh: dict[str, Any]) -> list[Finding]:
    """Compare a committed reference with one computed from fresh records."""
    index = {_key(r): r for r in fresh["rows"]}
    out: list[Finding] = []
    for r in ref["rows"]:
        name = r.get("label") or r["method"]
        new = index.get(_key(r))
        if new is None:
            ident = ", ".join(f"{k}={r.get(k, ROW_DEFAULTS.get(k))}" for k in ROW_KEYS)
            out.append(Finding(name, "*", "MISSING", f"no fresh result with {ident}"))
            continue
        if (r.get("method_flavor") or {}) != (new.get("method_flavor") or {}):
            detail = f"method flavor {new.get('method_flavor')} != {r.get('method_flavor')}"
            out.append(Finding(name, "*", "not compared", detail))
            continue
        for m, old in r["metrics"].items():
            out.append(_compare_metric(name, m, old, new["metrics"].get(m)))
    return out


def _compare_metric(row: str, m: str, old: dict[str, Any], cur: dict[str, Any] | None) -> Finding:
    spec = METRICS.find(m)
    if cur is None:
        return Finding(row, m, "MISSING", "metric absent from the fresh result")
    if (old.get("flavor") or None) != (cur.get("flavor") or None):
        return Finding(row, m, "not compared", f"flavor {cur.get('flavor')} != {old.get('flavor')}")
    a, b = float(old["mean"]), cur.get("mean")
    if not _number(b) or not math.isfinite(b):
        return Finding(row, m, "REGRESSION", f"{a:.5g} -> {b!r}: not a finite number")
    tol = tolerance(a, old.get("std"))
    delta = b - a
    detail = f"{a:.5g} -> {b:.5g} (Δ {delta:+.3g}, tolerance {tol:.3g})"
    if spec is None:
        return Finding(row, m, "not compared", detail + "; no registered metric of that name")
    if not spec.gated:
        return Finding(row, m, "not compared", detail + "; not gated (e.g. wall-clock)")
    worse = -delta if spec.higher_better else delta
    if not math.isfinite(worse) or not math.isfinite(tol):
        return Finding(row, m, "REGRESSION", detail + "; not comparable as finite numbers")
    if worse > tol:
        return Finding(row, m, "REGRESSION", detail)
    if -worse > tol:
        return Finding(row, m, "improved", detail)
    return Finding(row, m, "ok", detail)


def report(findings: list[Finding]) -> tuple[bool, str]:
    failed = [f for f in findings if f.status in ("REGRESSION", "MISSING")]
    lines = []
    for f in findings:
        mark = {"ok": " ", "improved": "+", "not compared": "~"}.get(f.status, "!")
        spec = METRICS.find(f.metric) if f.metric != "*" else None
        unit = f" {spec.arrow}" if spec else ""
        lines.append(f"{mark} {f.row:28s} {f.metric:16s}{unit} {f.status:13s} {f.detail}")
    n_ok = sum(f.status in ("ok", "improved") for f in findings)
    lines.append(
        f"{n_ok} within tolerance, {len(failed)} failed, "
        f"{sum(f.status == 'not compared' for f in findings)} not compared"
    )
    if not n_ok:
        lines.append("nothing was compared: a gate that compares nothing does not pass")
    return not failed and n_ok > 0, "\n".join(lines)


def gate(against: Path, results: Path | None = None) -> tuple[bool, str]:
    """``invbench check``: the fresh records of the reference's suite (in ``results``, default
    ``results/suites/<suite>``) against the reference; (passed, the readable diff)."""
    from invbench import suites
    from invbench.record import load_records
    from invbench.tables import frame, reference, render_suite

    ref = load_reference(against)
    suite_name = ref.get("suite")
    if results is None and not suite_name:
        raise UsageError(f"{against} names no suite; pass --results DIR.")
    if suite_name:
        suite = suites.load(str(suite_name))
        results = results if results is not None else Path("results") / "suites" / suite.name
        fresh = json.loads(render_suite(suite, results, "json", strict=True))
    else:
        assert results is not None
        records = load_records(results, strict=True)
        df, order = frame(records)
        fresh = reference(df, order, records)
    passed, text = report(compare(ref, fresh))
    # Where each side ran: single-threaded numbers move between CPUs (instruction set, vendor,
    # libraries), so a reader of a drift sees at once whether the machines differ.
    sides = (("reference", ref.get("provenance")), ("this run", fresh.get("provenance")))
    where = [f"{side} ran on: {str(p).removeprefix('Ran on: ')}" for side, p in sides if p]
    return passed, "\n".join([text, *where])
