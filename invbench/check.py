"""The regression gate: fresh results against a committed reference, metric by metric.

A reference (``invbench table --suite NAME --format json``) stores, per row and metric, the mean
over seeds, the seed-to-seed standard deviation and the metric's flavor. A fresh number fails
when it is worse than the reference by more than its tolerance

    tol = max(K_STD * std, REL_FLOOR * |mean|, ABS_FLOOR)      (std from the reference seeds)

or, when the reference has a single seed, ``SINGLE_SEED_REL * |mean|``. Numbers of different
flavors are never compared; wall-clock metrics are machine-dependent and only reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invbench.errors import UsageError
from invbench.metrics import INFO, higher_better

K_STD = 3.0
REL_FLOOR = 0.02
ABS_FLOOR = 1e-6
SINGLE_SEED_REL = 0.10
TIMING = {"sec_per_image", "fit_seconds", "gen_train_seconds"}
ROW_KEYS = ("method", "dataset", "generator", "space", "setting")


def tolerance(mean: float, std: float | None) -> float:
    if std is None:
        return max(SINGLE_SEED_REL * abs(mean), ABS_FLOOR)
    return max(K_STD * std, REL_FLOOR * abs(mean), ABS_FLOOR)


@dataclass
class Finding:
    row: str
    metric: str
    status: str  # ok | REGRESSION | improved | not compared | MISSING
    detail: str


def load_reference(path: Path) -> dict[str, Any]:
    try:
        ref = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(
            f"reference file '{path}' not found. Pass a leaderboards/*.json file."
        ) from None
    except json.JSONDecodeError as e:
        raise UsageError(f"reference file '{path}' is not valid JSON ({e}).") from e
    if not isinstance(ref, dict) or ref.get("format") != "invbench-reference/1":
        raise UsageError(
            f"'{path}' is not an invbench reference; make one with "
            "`invbench table --suite NAME --format json -o FILE`."
        )
    return ref


def compare(ref: dict[str, Any], fresh: dict[str, Any]) -> list[Finding]:
    """Compare two references (committed vs freshly computed)."""
    index = {tuple(r[k] for k in ROW_KEYS): r for r in fresh["rows"]}
    out: list[Finding] = []
    for r in ref["rows"]:
        key = tuple(r[k] for k in ROW_KEYS)
        name = r.get("label") or r["method"]
        new = index.get(key)
        if new is None:
            out.append(Finding(name, "*", "MISSING", "no fresh result for this configuration"))
            continue
        for m, old in r["metrics"].items():
            cur = new["metrics"].get(m)
            if cur is None:
                out.append(Finding(name, m, "MISSING", "metric absent from the fresh result"))
                continue
            if (old.get("flavor") or None) != (cur.get("flavor") or None):
                out.append(
                    Finding(
                        name,
                        m,
                        "not compared",
                        f"flavor {cur.get('flavor')} != {old.get('flavor')}",
                    )
                )
                continue
            a, b = old["mean"], cur["mean"]
            tol = tolerance(a, old.get("std"))
            delta = b - a
            worse = -delta if higher_better(m) else delta
            detail = f"{a:.5g} -> {b:.5g} (Δ {delta:+.3g}, tolerance {tol:.3g})"
            if m in TIMING:
                status = "not compared"
                detail += "; wall-clock, machine-dependent"
            elif worse > tol:
                status = "REGRESSION"
            elif -worse > tol:
                status = "improved"
            else:
                status = "ok"
            out.append(Finding(name, m, status, detail))
    return out


def report(findings: list[Finding]) -> tuple[bool, str]:
    failed = [f for f in findings if f.status in ("REGRESSION", "MISSING")]
    lines = []
    for f in findings:
        mark = {"ok": " ", "improved": "+", "not compared": "~"}.get(f.status, "!")
        unit = "" if f.metric == "*" else f" {'↑' if higher_better(f.metric) else '↓'}"
        lines.append(f"{mark} {f.row:28s} {f.metric:16s}{unit} {f.status:13s} {f.detail}")
    n_ok = sum(f.status in ("ok", "improved") for f in findings)
    lines.append(
        f"{n_ok} within tolerance, {len(failed)} failed, "
        f"{sum(f.status == 'not compared' for f in findings)} not compared"
    )
    return not failed, "\n".join(lines)


__all__ = ["INFO", "compare", "load_reference", "report", "tolerance"]
