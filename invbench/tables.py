"""Result records -> tables (CSV, Markdown, LaTeX booktabs).

Records with the same (method, dataset, generator, space) and configuration apart from the
seed are grouped; each metric shows mean ± standard deviation over seeds (± is omitted for a
single seed). The best value of each metric column is bold; headers carry ↑ / ↓.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from invbench.errors import UsageError
from invbench.metrics import INFO, higher_better

KEYS = ["method", "dataset", "generator", "space"]
DEFAULT_ORDER = list(INFO)


def load_records(results: Path) -> list[dict[str, Any]]:
    results = Path(results)
    if not results.is_dir():
        raise UsageError(
            f"results directory '{results}' does not exist. Run `invbench run` first or pass --results DIR."
        )
    out = []
    for path in sorted(results.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"invbench: skipping unreadable record {path}: {e}", file=sys.stderr)
            continue
        if isinstance(rec, dict) and "metrics" in rec and "method" in rec:
            out.append(rec)
    return out


def _setting(rec: dict[str, Any]) -> str:
    """A short id of everything in the configuration except the seed."""
    from invbench.config import stable_hash

    cfg = dict(rec.get("config", {}))
    cfg.pop("seed", None)
    return stable_hash(cfg, 8)


def frame(
    records: list[dict[str, Any]], metrics: list[str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """One row per (method, dataset, generator, space, setting): mean and std over seeds."""
    if not records:
        raise UsageError("no result records found. Run `invbench run ...` first.")
    rows = []
    for rec in records:
        row = {k: rec.get(k, "") for k in KEYS}
        row["setting"] = _setting(rec)
        row["seed"] = rec.get("seed", 0)
        row.update(rec["metrics"])
        rows.append(row)
    df = pd.DataFrame(rows)
    present = [m for m in df.columns if m not in KEYS + ["setting", "seed"]]
    order = [m for m in (metrics or DEFAULT_ORDER) if m in present]
    order += [m for m in present if m not in order and metrics is None]
    groups = df.groupby(KEYS + ["setting"], sort=False)
    mean = groups[order].mean()
    std = groups[order].std(ddof=1)
    n = groups.size().rename("seeds")
    out = mean.join(std, rsuffix="_std").join(n).reset_index()
    return out.drop(columns=["setting"]), order


def _best(df: pd.DataFrame, metric: str) -> float | None:
    col = df[metric].dropna()
    if col.empty:
        return None
    return float(col.max() if higher_better(metric) else col.min())


def _fmt(metric: str, v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    info = INFO.get(metric.split("@")[0])
    return (info.fmt if info else "{:.4g}").format(v)


def _cell(df: pd.DataFrame, i: int, metric: str) -> tuple[str, bool]:
    v = df.at[i, metric]
    s = df.at[i, f"{metric}_std"]
    text = _fmt(metric, v)
    if df.at[i, "seeds"] > 1 and not (isinstance(s, float) and math.isnan(s)):
        text += f" ± {_fmt(metric, s)}"
    best = _best(df, metric)
    is_best = best is not None and not math.isnan(v) and math.isclose(v, best, rel_tol=1e-12)
    return text, is_best


def arrow(metric: str, latex: bool = False) -> str:
    up = higher_better(metric)
    if latex:
        return r"$\uparrow$" if up else r"$\downarrow$"
    return "↑" if up else "↓"


def render(
    records: list[dict[str, Any]],
    fmt: str = "md",
    metrics: list[str] | None = None,
    title: str | None = None,
    footnotes: list[str] | None = None,
) -> str:
    df, order = frame(records, metrics)
    label_cols = [k for k in KEYS if df[k].nunique() > 1 or k in ("method",)] + ["seeds"]
    if fmt == "csv":
        cols = KEYS + ["seeds"] + [c for m in order for c in (m, f"{m}_std")]
        return df[cols].to_csv(index=False, float_format="%.6g")
    notes = list(footnotes or [])
    if fmt == "md":
        head = label_cols + [f"{m} {arrow(m)}" for m in order]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        for i in df.index:
            cells = [str(df.at[i, k]) for k in label_cols]
            for m in order:
                text, best = _cell(df, i, m)
                cells.append(f"**{text}**" if best else text)
            lines.append("| " + " | ".join(cells) + " |")
        out = ([f"### {title}", ""] if title else []) + lines
        if notes:
            out += [""] + [f"- {n}" for n in notes]
        return "\n".join(out) + "\n"
    if fmt == "latex":

        def esc(s: str) -> str:
            return str(s).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

        head = [esc(k) for k in label_cols] + [f"{esc(m)} {arrow(m, True)}" for m in order]
        lines = [
            r"\begin{tabular}{" + "l" * len(label_cols) + "r" * len(order) + "}",
            r"\toprule",
            " & ".join(head) + r" \\",
            r"\midrule",
        ]
        for i in df.index:
            cells = [esc(df.at[i, k]) for k in label_cols]
            for m in order:
                text, best = _cell(df, i, m)
                text = text.replace("±", r"$\pm$")
                cells.append(rf"\textbf{{{text}}}" if best else text)
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if notes:
            lines += ["% " + n for n in notes]
        return "\n".join(lines) + "\n"
    raise UsageError(f"unknown table format '{fmt}'. Use csv, md or latex.")
