"""Result records -> tables (CSV, Markdown, LaTeX booktabs) and gate references (JSON).

Records of one *setting* (the same configuration apart from the seeds, and the same precision
and profile) form one row; each metric shows mean ± standard deviation over seeds (± is omitted
for a single seed). Everything about a metric — its column order, group, arrow, format, which
way is best — comes from its registered spec (``invbench.metrics.METRICS``). The best value of
each column is bold; distribution metrics name their flavor (feature network, N, reference
split) in a footnote, and FIDs at small N are flagged as biased. Seeds whose flavors differ are
refused, never averaged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from invbench.errors import UsageError
from invbench.metrics import METRICS, base_name, higher_better
from invbench.record import Record, load_records, setting_of

KEYS = ["method", "dataset", "generator", "space", "precision", "profile"]
ROW_ID = [*KEYS, "setting"]

__all__ = ["KEYS", "frame", "load_records", "reference", "render", "render_suite", "seed_frame"]


def setting_id(rec: Record | dict[str, Any]) -> str:
    """A record's setting (its configuration without the seeds); dicts are hashed as read."""
    if isinstance(rec, Record):
        return rec.setting
    return str(rec.get("setting") or setting_of(rec.get("config", {})))


def _check_flavors(rec: Record, sid: str, seen: dict[tuple[str, str], tuple[str, Any]]) -> None:
    """Seeds of one setting are averaged only if each metric has one flavor among them (an
    Inception FID and a LeNet FID are different numbers: weights that appear half-way through a
    suite would otherwise be mixed into one mean). ``seen`` holds the first flavor per
    (setting, metric)."""
    for metric, flavor in rec.metric_flavors.items():
        first = seen.setdefault((sid, metric), (str(flavor), rec.seed))
        if first[0] != str(flavor):
            raise UsageError(
                f"{rec.method} ({sid}): {metric} is '{first[0]}' for seed {first[1]} "
                f"but '{flavor}' for seed {rec.seed}; numbers of different flavors "
                "are not averaged. Re-run those cells under one flavor (delete the odd "
                "records, e.g. after feature-network weights appeared)."
            )


def seed_frame(records: list[Record], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per record: label, identity keys, setting, seed and every numeric metric — the
    per-seed values claims and paired comparisons need."""
    if not records:
        raise UsageError("no result records found. Run `invbench run ...` first.")
    rows = []
    seen: dict[tuple[str, str], tuple[str, Any]] = {}
    for rec in records:
        row: dict[str, Any] = {k: getattr(rec, k) for k in KEYS}
        row["setting"] = rec.setting
        _check_flavors(rec, rec.setting, seen)
        row["label"] = (labels or {}).get(rec.setting, rec.method)
        row["seed"] = rec.seed
        row.update({k: v for k, v in rec.metrics.items() if v is not None})
        rows.append(row)
    return pd.DataFrame(rows)


def _order(present: list[str], metrics: list[str] | None) -> list[str]:
    """Registry order, each base name followed by its qualified values (``fid_rand@N=100``);
    unregistered names last. An explicit ``metrics`` list keeps its own order."""
    if metrics is not None:
        return [m for m in metrics if m in present]
    out = []
    for spec in METRICS.specs():
        if spec.name in present:
            out.append(spec.name)
        out += sorted(m for m in present if base_name(m) == spec.name and m != spec.name)
    return out + sorted(m for m in present if m not in out)


def frame(
    records: list[Record],
    metrics: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per setting: mean, std and number of seeds of every metric."""
    df = seed_frame(records, labels)
    skip = {*ROW_ID, "seed", "label"}
    present = [m for m in df.columns if m not in skip]
    # A known metric a record lacks (lpips without its weights) is left out; a name that is no
    # metric at all (a typo) is an error.
    unknown = [m for m in metrics or [] if m not in present and m not in METRICS]
    if unknown:
        raise UsageError(
            f"unknown metric(s) {', '.join(unknown)}: these records have "
            f"{', '.join(sorted(present))}."
        )
    order = _order(present, metrics)
    groups = df.groupby(["label", *ROW_ID], sort=False)
    mean = groups[order].mean()
    std = groups[order].std(ddof=1)
    n = groups.size().rename("seeds")
    out = mean.join(std.add_suffix("_std")).join(n).reset_index()
    if labels:
        rank = {lab: i for i, lab in enumerate(dict.fromkeys(labels.values()))}
        out = out.sort_values("label", key=lambda s: s.map(rank), kind="stable").reset_index(
            drop=True
        )
    return out, order


def flavors(records: list[Record]) -> dict[str, str]:
    out: dict[str, set[str]] = {}
    for rec in records:
        for k, v in rec.metric_flavors.items():
            out.setdefault(k, set()).add(str(v))
    return {k: " | ".join(sorted(v)) for k, v in out.items()}


def _fmt(metric: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    spec = METRICS.find(metric)
    return spec.format(v) if spec else f"{v:.4g}"


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
    spec = METRICS.find(metric)
    if spec is None:
        return ""
    if latex:
        return r"$\uparrow$" if spec.higher_better else r"$\downarrow$"
    return spec.arrow


def _group_of(metric: str) -> str:
    spec = METRICS.find(metric)
    return spec.group if spec else "Other"


def footnotes(records: list[Record], order: list[str]) -> list[str]:
    notes = []
    for k, v in flavors(records).items():
        if k in order or k.startswith("method."):
            notes.append(f"{k}: {v}")
    small = [m for m in order if m.startswith(("fid", "kid")) and "@" in m]
    if small:
        notes.append(
            f"{', '.join(small)}: computed on few samples; FID is biased upwards at small N, "
            "compare only numbers of the same N."
        )
    return notes


def provenance_note(records: list[Record]) -> str:
    """Where the numbers were measured: device, threads, torch and invbench commit."""
    prov = {
        (
            r.provenance.get("device"),
            r.provenance.get("threads"),
            r.provenance.get("torch"),
            r.provenance.get("git"),
        )
        for r in records
    }
    parts = [f"{d}, {t} threads, torch {v}, invbench {g}" for d, t, v, g in sorted(prov, key=str)]
    return "Ran on: " + "; ".join(parts)


def render(
    records: list[Record],
    fmt: str = "md",
    metrics: list[str] | None = None,
    title: str | None = None,
    notes: list[str] | None = None,
    labels: dict[str, str] | None = None,
    command: str | None = None,
) -> str:
    """The table of ``records`` in ``fmt`` (csv, md, latex, or json: the gate's reference)."""
    if fmt not in ("csv", "md", "latex", "json"):
        raise UsageError(f"unknown table format '{fmt}'. Use csv, md, latex or json.")
    df, order = frame(records, metrics, labels)
    label_cols = ["label"] if labels else [k for k in KEYS if df[k].nunique() > 1 or k == "method"]
    label_cols.append("seeds")
    all_notes = footnotes(records, order) + list(notes or [])
    if fmt == "csv":
        cols = ["label", *ROW_ID, "seeds"] + [c for m in order for c in (m, f"{m}_std")]
        return df[cols].to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        return json.dumps(reference(df, order, records), indent=1) + "\n"
    if fmt == "latex":
        return _latex(df, order, label_cols, all_notes, title, command)
    head = label_cols + [f"{m} {arrow(m)}".rstrip() for m in order]
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


def table(records: list[Record], fmt: str = "md", **options: Any) -> str:
    """``invbench.table(records)``: ``render`` with a provenance line, as ``invbench table``."""
    notes = list(options.pop("notes", None) or []) + [provenance_note(records)]
    return render(records, fmt, notes=notes, **options)


def render_suite(
    suite: Any,
    results: Path,
    fmt: str = "md",
    metrics: list[str] | None = None,
    title: str | None = None,
    strict: bool = False,
) -> str:
    """A suite's table: its rows labelled, its claims checked, its command named; with
    ``fmt='json'`` the gate's reference, which names the suite so ``check`` can rerun it."""
    from invbench import suites

    labels = suites.labels_by_setting(suite, results)
    records = [r for r in load_records(results, strict) if r.setting in labels]
    notes = list(suite.notes) + suites.report(suite, results)  # FAILED rows, claim verdicts
    notes.append(provenance_note(records))
    cmd = f"invbench suite run {suite.name} && invbench table --suite {suite.name} --format {fmt}"
    title = title or f"{suite.name}: {suite.description}"
    out = render(records, fmt, metrics or suite.metrics, title, notes, labels, cmd)
    if fmt == "json":
        ref = json.loads(out)
        builtin = suite.path.resolve().parent == suites.suite_dir().resolve()
        ident = suite.name if builtin else str(suite.path)  # so `check` can load it again
        ref.update({"suite": ident, "command": cmd, "provenance": provenance_note(records)})
        out = json.dumps(ref, indent=1) + "\n"
    return out


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
    head = [_esc(k) for k in label_cols] + [f"{_esc(m)} {arrow(m, True)}".rstrip() for m in order]
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


def reference(df: pd.DataFrame, order: list[str], records: list[Record]) -> dict[str, Any]:
    """The gate's reference: per row its identity and method flavors, and per metric the mean,
    seed spread and flavor (one per row: ``seed_frame`` refuses seeds of mixed flavors)."""
    row_flavors: dict[tuple[Any, ...], dict[str, str]] = {}
    for rec in records:
        row_flavors.setdefault(tuple(getattr(rec, k) for k in ROW_ID), {}).update(
            rec.metric_flavors
        )
    rows = []
    for i in df.index:
        row: dict[str, Any] = {k: str(df.at[i, k]) for k in ["label", *ROW_ID]}
        row["seeds"] = int(df.at[i, "seeds"])
        flav = row_flavors.get(tuple(df.at[i, k] for k in ROW_ID), {})
        row["method_flavor"] = {k: v for k, v in flav.items() if k.startswith("method.")}
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
