"""Result records -> tables (CSV, Markdown, LaTeX booktabs) and gate references (JSON).

Records with the same configuration apart from the seed form one row; each metric shows
mean ± standard deviation over seeds (± is omitted for a single seed). The best value of each
metric column is bold; headers carry ↑ / ↓; distribution metrics name their flavor (feature
network, N, reference split) in a footnote, and FIDs at small N are flagged as biased.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from invbench.config import stable_hash
from invbench.errors import UsageError
from invbench.metrics import INFO, higher_better

KEYS = ["method", "dataset", "generator", "space"]
DEFAULT_ORDER = list(INFO)
GROUPS = [
    ("Reconstruction", ("mse", "mae", "psnr", "ssim", "lpips")),
    ("Distribution", ("fid", "kid", "swd")),
    ("Latent", ("latent_mse", "recovery")),
    ("Cost", ("sec_per_image", "fit_seconds")),
]


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


def setting_id(rec: dict[str, Any]) -> str:
    """A short id of everything in the configuration except the seeds (the run's and the zoo
    generator's: records that differ only in them are seeds of one setting)."""
    cfg = dict(rec.get("config", {}))
    cfg.pop("seed", None)
    if isinstance(cfg.get("generator"), dict):
        cfg["generator"] = {k: v for k, v in cfg["generator"].items() if k != "seed"}
    return stable_hash(cfg, 8)


def _base(metric: str) -> str:
    """``fid_rand@N=100`` -> ``fid_rand``; ``recovery@eps=0.1`` -> ``recovery``."""
    return metric.split("@", 1)[0]


def _check_flavors(
    rec: dict[str, Any], sid: str, seen: dict[tuple[str, str], tuple[str, Any]]
) -> None:
    """Seeds of one setting are averaged only if each metric has one flavor among them (an
    Inception FID and a LeNet FID are different numbers: weights that appear half-way through a
    suite would otherwise be mixed into one mean). ``seen`` holds the first flavor per
    (setting, metric)."""
    for metric, flavor in (rec.get("metric_flavors") or {}).items():
        first = seen.setdefault((sid, metric), (str(flavor), rec.get("seed")))
        if first[0] != str(flavor):
            raise UsageError(
                f"{rec.get('method')} ({sid}): {metric} is '{first[0]}' for seed {first[1]} "
                f"but '{flavor}' for seed {rec.get('seed')}; numbers of different flavors "
                "are not averaged. Re-run those cells under one flavor (delete the odd "
                "records, e.g. after feature-network weights appeared)."
            )


def frame(
    records: list[dict[str, Any]],
    metrics: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per setting: mean, std and number of seeds of every metric."""
    if not records:
        raise UsageError("no result records found. Run `invbench run ...` first.")
    rows = []
    flavors_seen: dict[tuple[str, str], tuple[str, Any]] = {}
    for rec in records:
        row = {k: rec.get(k, "") for k in KEYS}
        row["setting"] = setting_id(rec)
        _check_flavors(rec, row["setting"], flavors_seen)
        row["label"] = (labels or {}).get(row["setting"], rec.get("method", ""))
        row["seed"] = rec.get("seed", 0)
        row.update({k: v for k, v in rec["metrics"].items() if isinstance(v, (int, float))})
        rows.append(row)
    df = pd.DataFrame(rows)
    skip = set(KEYS) | {"setting", "seed", "label"}
    present = [m for m in df.columns if m not in skip]
    # A known metric a record lacks (lpips without its weights) is left out; a name that is no
    # metric at all (a typo) is an error.
    unknown = [m for m in metrics or [] if m not in present and _base(m) not in INFO]
    if unknown:
        raise UsageError(
            f"unknown metric(s) {', '.join(unknown)}: these records have "
            f"{', '.join(sorted(present))}."
        )
    order = [m for m in (metrics or DEFAULT_ORDER) if m in present]
    if metrics is None:
        order += sorted(m for m in present if m not in order)
    groups = df.groupby(["label", *KEYS, "setting"], sort=False)
    mean = groups[order].mean()
    std = groups[order].std(ddof=1)
    n = groups.size().rename("seeds")
    out = mean.join(std, rsuffix="_std").join(n).reset_index()
    if labels:
        rank = {lab: i for i, lab in enumerate(dict.fromkeys(labels.values()))}
        out = out.sort_values("label", key=lambda s: s.map(rank), kind="stable").reset_index(
            drop=True
        )
    return out, order


def flavors(records: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, set[str]] = {}
    for rec in records:
        for k, v in (rec.get("metric_flavors") or {}).items():
            out.setdefault(k, set()).add(str(v))
    return {k: " | ".join(sorted(v)) for k, v in out.items()}


def _fmt(metric: str, v: Any) -> str:
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
    col = df[metric].dropna()
    if len(col) < 2 or isinstance(v, float) and math.isnan(v):
        return text, False
    best = col.max() if higher_better(metric) else col.min()
    return text, math.isclose(float(v), float(best), rel_tol=1e-12)


def arrow(metric: str, latex: bool = False) -> str:
    up = higher_better(metric)
    if latex:
        return r"$\uparrow$" if up else r"$\downarrow$"
    return "↑" if up else "↓"


def _group_of(metric: str) -> str:
    for name, prefixes in GROUPS:
        if metric.split("@")[0].startswith(prefixes):
            return name
    return "Other"


def footnotes(records: list[dict[str, Any]], order: list[str]) -> list[str]:
    notes = []
    for k, v in flavors(records).items():
        if k in order:
            notes.append(f"{k}: {v}")
    small = [m for m in order if m.startswith(("fid", "kid")) and "@" in m]
    if small:
        notes.append(
            f"{', '.join(small)}: computed on few samples; FID is biased upwards at small N, "
            "compare only numbers of the same N."
        )
    return notes


def render(
    records: list[dict[str, Any]],
    fmt: str = "md",
    metrics: list[str] | None = None,
    title: str | None = None,
    notes: list[str] | None = None,
    labels: dict[str, str] | None = None,
    command: str | None = None,
) -> str:
    df, order = frame(records, metrics, labels)
    label_cols = ["label"] if labels else [k for k in KEYS if df[k].nunique() > 1 or k == "method"]
    label_cols.append("seeds")
    all_notes = footnotes(records, order) + list(notes or [])
    if fmt == "csv":
        cols = ["label", *KEYS, "setting", "seeds"] + [c for m in order for c in (m, f"{m}_std")]
        return df[cols].to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        return json.dumps(reference(df, order, flavors(records)), indent=1) + "\n"
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
        if all_notes:
            out += [""] + [f"- {n}" for n in all_notes]
        if command:
            out += ["", f"Regenerate: `{command}`"]
        return "\n".join(out) + "\n"
    if fmt == "latex":
        return _latex(df, order, label_cols, all_notes, title, command)
    raise UsageError(f"unknown table format '{fmt}'. Use csv, md, latex or json.")


def _esc(s: Any) -> str:
    return (
        str(s)
        .replace("\\", r"\textbackslash{}")
        .replace("_", r"\_")
        .replace("%", r"\%")
        .replace("&", r"\&")
        .replace("#", r"\#")
    )


def _latex(
    df: pd.DataFrame,
    order: list[str],
    label_cols: list[str],
    notes: list[str],
    title: str | None,
    command: str | None,
) -> str:
    n_lab = len(label_cols)
    lines = []
    if title:
        lines.append(f"% {title}")
    if command:
        lines.append(f"% Regenerate: {command}")
    lines += [r"\begin{tabular}{" + "l" * n_lab + "r" * len(order) + "}", r"\toprule"]
    # grouped header: one \multicolumn per run of metrics in the same group
    spans: list[tuple[str, int, int]] = []
    for j, m in enumerate(order):
        g = _group_of(m)
        if spans and spans[-1][0] == g:
            spans[-1] = (g, spans[-1][1], j)
        else:
            spans.append((g, j, j))
    if len(spans) > 1 or (spans and spans[0][0] != "Other"):
        top = [""] * n_lab
        rules = []
        for g, a, b in spans:
            top.append(rf"\multicolumn{{{b - a + 1}}}{{c}}{{{g}}}")
            rules.append(rf"\cmidrule(lr){{{n_lab + a + 1}-{n_lab + b + 1}}}")
        lines.append(" & ".join(top) + r" \\")
        lines.append(" ".join(rules))
    head = [_esc(k) for k in label_cols] + [f"{_esc(m)} {arrow(m, True)}" for m in order]
    lines += [" & ".join(head) + r" \\", r"\midrule"]
    for i in df.index:
        cells = [_esc(df.at[i, k]) for k in label_cols]
        for m in order:
            text, best = _cell(df, i, m)
            text = text.replace("±", r"$\pm$").replace("–", "--")
            cells.append(rf"\textbf{{{text}}}" if best else text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += ["% " + n for n in notes]
    return "\n".join(lines) + "\n"


def reference(df: pd.DataFrame, order: list[str], flav: dict[str, str]) -> dict[str, Any]:
    """The gate's reference: per row and metric, mean, seed spread, n and flavor."""
    rows = []
    for i in df.index:
        row = {k: str(df.at[i, k]) for k in ["label", *KEYS, "setting"]}
        row["seeds"] = int(df.at[i, "seeds"])
        row["metrics"] = {}
        for m in order:
            v, s = df.at[i, m], df.at[i, f"{m}_std"]
            if isinstance(v, float) and math.isnan(v):
                continue
            row["metrics"][m] = {
                "mean": float(v),
                "std": None if (isinstance(s, float) and math.isnan(s)) else float(s),
                "flavor": flav.get(m),
            }
        rows.append(row)
    return {"format": "invbench-reference/1", "rows": rows}
