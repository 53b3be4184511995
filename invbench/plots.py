"""Plots where a curve says more than a table: a metric against a configuration value (error vs
latent dimension, per method and split) and quality against cost as a Pareto chart.

Both work on result records like the tables do: records that differ only in their seeds are one
point (mean, with the standard deviation over seeds as an error bar). ``x`` and ``series`` name
either a metric (``sec_per_image``) or a configuration value by its dotted path in the record
(``generator.z_dim``, ``eval.split``, ``method.name``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from invbench import artifacts
from invbench.errors import UsageError
from invbench.metrics import higher_better
from invbench.record import Record
from invbench.tables import setting_id


def value(rec: Record | dict[str, Any], key: str) -> Any:
    """A metric of ``rec`` or a value of its configuration by dotted path; None if absent."""
    metrics, config = (rec.metrics, rec.config) if isinstance(rec, Record) else (
        rec.get("metrics", {}), rec.get("config", {}))  # fmt: skip
    if key in metrics:
        return metrics[key]
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def points(
    records: list[Record] | list[dict[str, Any]],
    x: str,
    y: str,
    series: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One point per setting: x, mean and std of y over seeds, its series and label."""
    groups: dict[str, list[Any]] = {}
    for rec in records:
        groups.setdefault(setting_id(rec), []).append(rec)
    out = []
    for sid, recs in groups.items():
        ys = [value(r, y) for r in recs]
        xs = [value(r, x) for r in recs]
        ys = [float(v) for v in ys if isinstance(v, int | float) and math.isfinite(v)]
        if not ys or any(v is None for v in xs):
            continue
        numeric = all(isinstance(v, int | float) for v in xs)
        out.append(
            {
                "x": float(np.mean(xs)) if numeric else xs[0],
                "y": float(np.mean(ys)),
                "y_std": float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0,
                "series": " / ".join(str(value(recs[0], s)) for s in series or []),
                "label": (labels or {}).get(sid, recs[0].get("method", "")),
            }
        )
    if not out:
        raise UsageError(
            f"no record has both '{x}' and '{y}'. x and series take a metric name or a "
            "configuration path such as generator.z_dim; see a record's 'config'."
        )
    return out


def pareto_front(pts: list[dict[str, Any]], x: str, y: str) -> list[int]:
    """Indices of the points no other point beats on both axes (each in its better direction)."""
    sx = -1.0 if higher_better(x) else 1.0
    sy = -1.0 if higher_better(y) else 1.0
    keys = [(sx * p["x"], sy * p["y"]) for p in pts]
    front = []
    for i, (a, b) in enumerate(keys):
        dominated = any(
            c <= a and d <= b and (c < a or d < b) for j, (c, d) in enumerate(keys) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: keys[i][0])


def _axes_label(name: str) -> str:
    arrow = "" if "." in name else (" ↑" if higher_better(name) else " ↓")
    return name + arrow


def plot(
    records: list[Record] | list[dict[str, Any]],
    x: str,
    y: str,
    out: Path,
    series: list[str] | None = None,
    labels: dict[str, str] | None = None,
    pareto: bool = False,
    logx: bool = False,
    title: str | None = None,
) -> Path:
    """Write a PNG: lines of y against x per series, or (``pareto``) a labelled scatter of every
    setting with its Pareto front. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points(records, x, y, series, labels)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=150)
    if pareto:
        if not all(isinstance(p["x"], float) for p in pts):
            raise UsageError(f"--pareto needs a numeric x; '{x}' is not.")
        front = pareto_front(pts, x, y)
        ax.errorbar(
            [p["x"] for p in pts], [p["y"] for p in pts], yerr=[p["y_std"] for p in pts],
            fmt="o", color="tab:blue", alpha=0.8, capsize=2,
        )  # fmt: skip
        ax.plot([pts[i]["x"] for i in front], [pts[i]["y"] for i in front], "--", color="tab:red",
                label="Pareto front")  # fmt: skip
        for p in pts:
            ax.annotate(p["label"], (p["x"], p["y"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        ax.legend(fontsize=8)
    else:
        by_series: dict[str, list[dict[str, Any]]] = {}
        for p in pts:
            by_series.setdefault(p["series"] or y, []).append(p)
        for name, ps in by_series.items():
            ps = sorted(ps, key=lambda p: p["x"])
            ax.errorbar([p["x"] for p in ps], [p["y"] for p in ps], yerr=[p["y_std"] for p in ps],
                        marker="o", capsize=2, label=name)  # fmt: skip
        if len(by_series) > 1 or series:
            ax.legend(fontsize=8, title=" / ".join(series or []) or None)
    if logx:
        ax.set_xscale("log")
        xs = sorted({p["x"] for p in pts})
        if len(xs) <= 12:  # label the measured values themselves, not powers of ten
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()
    ax.set_xlabel(_axes_label(x))
    ax.set_ylabel(_axes_label(y))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with artifacts.atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
