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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from invbench.errors import UsageError
from invbench.metrics import METRICS, base_name, higher_better
from invbench.record import Record, load_records, setting_of

KEYS = ["method", "dataset", "generator", "space", "precision", "profile"]
ROW_ID = [*KEYS, "setting"]

__all__ = [
    "KEYS", "frame", "latex_escape", "load_records", "reference", "render", "render_suite",
    "seed_frame",
]  # fmt: skip


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


# A table without a suite shows these columns by default (``columns="all"``: every metric the
# records hold); a suite's ``table.metrics`` are its paper's columns. One headline metric per
# family, as a paper's table has them; the CSV always keeps every metric.
COMPACT = ("mse", "psnr", "ssim", "lpips", "fid_test_rec", "fid_rand", "sec_per_image")
COLUMNS = ("compact", "all")


def fmt_value(metric: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    spec = METRICS.find(metric)
    return spec.format(v) if spec else f"{v:.4g}"


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def cell_text(df: pd.DataFrame, i: int, metric: str) -> str:
    """Mean ± standard deviation over seeds (± omitted for a single seed)."""
    text = fmt_value(metric, df.at[i, metric])
    s = df.at[i, f"{metric}_std"]
    if df.at[i, "seeds"] > 1 and not _isnan(s) and not _isnan(df.at[i, metric]):
        text += f" ± {fmt_value(metric, s)}"
    return text


def best_row(df: pd.DataFrame, metric: str) -> int | None:
    """The row holding the best mean of ``metric`` (its registered direction), or None when no
    single row does: fewer than two values, or a tie as printed (two rows showing 411.55 are
    tied, whatever digits the table does not show)."""
    col = df[metric].dropna()
    if len(col) < 2:
        return None
    shown = {i: fmt_value(metric, v) for i, v in col.items()}
    best = col.idxmax() if higher_better(metric) else col.idxmin()
    ties = [i for i, text in shown.items() if text == shown[best]]
    return int(best) if len(ties) == 1 else None


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


def grouped(order: list[str]) -> list[tuple[str, list[str]]]:
    """Columns gathered by group (groups in order of first appearance, columns in their order
    within a group), so each group header spans its columns once."""
    groups: dict[str, list[str]] = {}
    for m in order:
        groups.setdefault(_group_of(m), []).append(m)
    return list(groups.items())


def shown_columns(order: list[str], explicit: bool, columns: str = "compact") -> list[str]:
    """The metric columns a Markdown or LaTeX table shows: an explicit list (a suite's paper
    columns, ``--metrics``) as given, else the ``COMPACT`` ones the records have (all of them
    when they have none); ``columns="all"``: every metric, grouped."""
    if columns not in COLUMNS:
        raise UsageError(f"unknown --columns '{columns}'. Use {' or '.join(COLUMNS)}.")
    if columns == "compact" and not explicit:
        order = [m for m in order if m in COMPACT] or order
    return [m for _, ms in grouped(order) for m in ms]


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
            _device(r.provenance),
            r.provenance.get("threads"),
            r.provenance.get("torch"),
            r.provenance.get("git"),
        )
        for r in records
    }
    parts = [f"{d}, {t} threads, torch {v}, invbench {g}" for d, t, v, g in sorted(prov, key=str)]
    return "Ran on: " + "; ".join(parts)


def _device(prov: dict[str, Any]) -> str | None:
    """The device, with the CPU kernels' instruction set where the record has it ("cpu (x86_64,
    AVX512 kernels)"; records made before it was recorded say "cpu (x86_64)")."""
    device, isa = prov.get("device"), prov.get("cpu_capability")
    if isa and isinstance(device, str) and device.startswith("cpu (") and device.endswith(")"):
        return f"{device[:-1]}, {isa} kernels)"
    return device


class PaperNumbers:
    """The values papers report beside a table's rows (a suite's ``paper:`` entries): per row
    label and metric an object with ``value``, ``cite`` (paper, table, page) and ``differs``
    (the settings that are not the paper's). Each distinct source + differences is one note,
    marked a, b, c ... where its numbers appear."""

    def __init__(self, by_label: dict[str, dict[str, Any]] | None = None) -> None:
        self.by_label = {k: v for k, v in (by_label or {}).items() if v}
        self.marks: dict[str, str] = {}
        for row in self.by_label.values():
            for pv in row.values():
                self.marks.setdefault(
                    self.note_of(pv), "abcdefghijklmnopqrstuvwxyz"[len(self.marks) % 26]
                )

    @staticmethod
    def note_of(pv: Any) -> str:
        text = f"paper: {pv.cite}"
        if pv.differs:
            text += "; settings that differ: " + "; ".join(pv.differs)
        return text

    def row(self, label: str, metrics: list[str]) -> tuple[str, dict[str, Any]] | None:
        """(mark, metric -> number) of ``label``'s paper values among ``metrics``; None if none."""
        got = {m: pv for m, pv in self.by_label.get(label, {}).items() if m in metrics}
        if not got:
            return None
        marks = sorted({self.marks[self.note_of(pv)] for pv in got.values()})
        return ",".join(marks), {m: pv.value for m, pv in got.items()}

    def notes(self) -> list[tuple[str, str]]:
        return [(mark, note) for note, mark in self.marks.items()]


@dataclass
class Table:
    """What a Markdown or LaTeX table shows, decided once for both renderers."""

    df: pd.DataFrame
    columns: list[str]  # metric columns, grouped
    label_cols: list[str]
    notes: list[str]  # visible notes under the table, in order
    paper: PaperNumbers
    title: str | None
    command: str | None


def layout(
    records: list[Record],
    metrics: list[str] | None,
    labels: dict[str, str] | None,
    notes: list[str] | None,
    title: str | None,
    command: str | None,
    columns: str,
    paper: PaperNumbers,
) -> Table:
    df, order = frame(records, metrics, labels)
    cols = shown_columns(order, metrics is not None, columns)
    label_cols = ["label"] if labels else [k for k in KEYS if df[k].nunique() > 1 or k == "method"]
    seeds = sorted({int(n) for n in df["seeds"]})
    lead = []
    if len(seeds) == 1:  # one seed count: said once below the table, not in a column
        lead.append(
            f"Mean ± standard deviation over {seeds[0]} seeds"
            if seeds[0] > 1 else "A single seed per row (no spread)"
        )  # fmt: skip
    else:
        label_cols.append("seeds")
        lead.append("Mean ± standard deviation over the row's seeds")
    lead[0] += "; ↑ / ↓: higher / lower is better; bold: the best value where it is unique."
    for key in ("precision", "profile"):  # part of a row's identity: a column when they vary
        vals = sorted({str(v) for v in df[key]})
        if len(vals) == 1 and key not in label_cols:
            lead.append(f"{key.capitalize()}: {vals[0]}.")
        elif key not in label_cols:
            label_cols.append(key)
    hidden = [m for m in order if m not in cols]
    if hidden:
        lead.append(f"{len(hidden)} more metrics in the CSV (or with --columns all).")
    all_notes = lead + footnotes(records, cols) + list(notes or [])
    return Table(df, cols, label_cols, all_notes, paper, title, command)


def render(
    records: list[Record],
    fmt: str = "md",
    metrics: list[str] | None = None,
    title: str | None = None,
    notes: list[str] | None = None,
    labels: dict[str, str] | None = None,
    command: str | None = None,
    *,
    columns: str = "compact",
    label: str | None = None,
    paper: dict[str, dict[str, Any]] | None = None,
) -> str:
    r"""The table of ``records`` in ``fmt`` (csv, md, latex, or json: the gate's reference).

    Markdown and LaTeX show the compact columns (``columns="all"``: every metric); CSV and JSON
    keep every metric (``metrics``, when given, for JSON). ``paper``: per row label and metric
    the value a paper reports (``PaperNumbers``), shown in a row under the measured one.
    ``label``: the LaTeX ``\label`` (default ``tab:invbench``)."""
    if fmt not in ("csv", "md", "latex", "json"):
        raise UsageError(f"unknown table format '{fmt}'. Use csv, md, latex or json.")
    if columns not in COLUMNS:
        raise UsageError(f"unknown --columns '{columns}'. Use {' or '.join(COLUMNS)}.")
    numbers = PaperNumbers(paper)
    if fmt == "csv":
        df, order = frame(records, None, labels)
        cols = ["label", *ROW_ID, "seeds"] + [c for m in order for c in (m, f"{m}_std")]
        out = df[cols].copy()
        for m in order:  # the paper's value beside the measured one, where a suite gives it
            vals = [numbers.by_label.get(lab, {}).get(m) for lab in out["label"]]
            if any(v is not None for v in vals):
                out.insert(out.columns.get_loc(f"{m}_std") + 1, f"{m}_paper",
                           [None if v is None else v.value for v in vals])  # fmt: skip
        return out.to_csv(index=False, float_format="%.6g")
    if fmt == "json":
        df, order = frame(records, metrics, labels)
        return json.dumps(reference(df, order, records), indent=1) + "\n"
    t = layout(records, metrics, labels, notes, title, command, columns, numbers)
    return _latex(t, label or "tab:invbench") if fmt == "latex" else _markdown(t)


def _markdown(t: Table) -> str:
    head = t.label_cols + [f"{m} {arrow(m)}".rstrip() for m in t.columns]
    align = [":--"] * len(t.label_cols) + ["--:"] * len(t.columns)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    best = {m: best_row(t.df, m) for m in t.columns}
    for i in t.df.index:
        cells = [str(t.df.at[i, k]) for k in t.label_cols]
        for m in t.columns:
            text = cell_text(t.df, i, m)
            cells.append(f"**{text}**" if best[m] == i else text)
        lines.append("| " + " | ".join(cells) + " |")
        reported = t.paper.row(str(t.df.at[i, "label"]), t.columns)
        if reported:
            mark, vals = reported
            cells = [f"↳ paper ({mark})"] + [""] * (len(t.label_cols) - 1)
            cells += [f"*{fmt_value(m, vals[m])}*" if m in vals else "" for m in t.columns]
            lines.append("| " + " | ".join(cells) + " |")
    out = ([f"### {t.title}", ""] if t.title else []) + lines + [""]
    out += [f"- ({mark}) {note}" for mark, note in t.paper.notes()]
    out += [f"- {n}" for n in t.notes]
    if t.command:
        out += ["", f"Regenerate: `{t.command}`"]
    return "\n".join(out) + "\n"


def table(records: list[Record], fmt: str = "md", **options: Any) -> str:
    """``invbench.table(records)``: ``render`` with a provenance line, as ``invbench table``."""
    notes = list(options.pop("notes", None) or []) + [provenance_note(records)]
    return render(records, fmt, notes=notes, **options)


def suite_records(
    suite: Any, results: Path, strict: bool = False
) -> tuple[list[Record], dict[str, str]]:
    """The records of a suite's cells in ``results`` (in file order) and each setting's row label.
    Only the suite's own cells: a record left by an earlier definition of a row (before a
    "generator.seed={seed}", say) has the row's setting and one of its seeds but another config
    hash; averaged in, the row would count that seed twice and disagree with its verdicts."""
    from invbench import suites

    rows = suites.rows(suite, results)
    labels = {rec.setting: label for label, row in rows.items() for rec in row.records.values()}
    cells = {(rec.config_hash, rec.seed) for row in rows.values() for rec in row.records.values()}
    records = [r for r in load_records(results, strict) if (r.config_hash, r.seed) in cells]
    return records, labels


def suite_parts(
    suite: Any, results: Path, strict: bool = False
) -> tuple[list[Record], dict[str, str], list[str]]:
    """A suite's records, their row labels and the notes its table prints under itself (the
    suite's notes, claim verdicts, provenance): what its table and its report page show."""
    from invbench import suites

    records, labels = suite_records(suite, results, strict)
    notes = list(suite.notes) + suites.report(suite, results)  # FAILED rows, claim verdicts
    notes.append(provenance_note(records))
    return records, labels, notes


def suite_command(suite: Any, fmt: str) -> str:
    return f"invbench suite run {suite.name} && invbench table --suite {suite.name} --format {fmt}"


def render_suite(
    suite: Any,
    results: Path,
    fmt: str = "md",
    metrics: list[str] | None = None,
    title: str | None = None,
    strict: bool = False,
    columns: str = "compact",
) -> str:
    """A suite's table: its rows labelled, its claims checked, its command named, the papers'
    numbers beside its own; with ``fmt='json'`` the gate's reference, which names the suite so
    ``check`` can rerun it. ``columns="all"`` shows every metric, not the suite's columns."""
    from invbench import suites

    records, labels, notes = suite_parts(suite, results, strict)
    cmd = suite_command(suite, fmt)
    title = title or f"{suite.name}: {suite.description}"
    shown = metrics or (None if columns == "all" and fmt != "json" else suite.metrics)
    out = render(
        records, fmt, shown, title, notes, labels, cmd, columns=columns,
        label=f"tab:{suite.name}", paper=getattr(suite, "paper_numbers", dict)(),
    )  # fmt: skip
    if fmt == "json":
        ref = json.loads(out)
        builtin = suite.path.resolve().parent == suites.suite_dir().resolve()
        ident = suite.name if builtin else str(suite.path)  # so `check` can load it again
        ref.update({"suite": ident, "command": cmd, "provenance": provenance_note(records)})
        out = json.dumps(ref, indent=1) + "\n"
    return out


# -- LaTeX -----------------------------------------------------------------------------------------
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    # what pdflatex's utf8 input does not know (every character our suites and flavors use)
    "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "→": r"$\rightarrow$",
    "↳": r"$\hookrightarrow$", "≤": r"$\leq$", "≥": r"$\geq$", "×": r"$\times$",
    "≈": r"$\approx$", "–": "--", "—": "---", "−": "--", "…": r"\ldots{}", "§": r"\S{}",
    "φ": r"$\varphi$", "ϕ": r"$\phi$", "ε": r"$\varepsilon$", "σ": r"$\sigma$", "µ": r"$\mu$",
    "μ": r"$\mu$", "’": "'", "‘": "`", "“": "``", "”": "''", "\u00a0": "~",
}  # fmt: skip


def latex_escape(text: Any) -> str:
    """``text`` as LaTeX source that pdflatex compiles: special characters escaped, the
    non-ASCII ones our tables use spelled as LaTeX commands."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _latex(t: Table, label: str) -> str:
    r"""A ``table`` float that pastes into a paper: caption, label, booktabs rules, one header
    per metric group, the best value bold where unique, and every note visible under the
    table (threeparttable's ``tablenotes``). Needs ``\usepackage{booktabs,threeparttable}``."""
    n_lab = len(t.label_cols)
    groups = grouped(t.columns)
    lines = [
        "% Needs \\usepackage{booktabs,threeparttable}.",
        r"\begin{table}[tbp]",
        r"\centering",
        r"\small",
        r"\setlength{\tabcolsep}{4pt}",
    ]
    if t.title:
        lines.append(rf"\caption{{{latex_escape(t.title)}}}")
    lines += [rf"\label{{{label}}}", r"\begin{threeparttable}"]
    lines += [r"\begin{tabular}{@{}" + "l" * n_lab + "r" * len(t.columns) + "@{}}", r"\toprule"]
    if len(groups) > 1 or groups[0][0] != "Other":
        top, rules, j = [""] * n_lab, [], n_lab + 1
        for g, ms in groups:
            top.append(rf"\multicolumn{{{len(ms)}}}{{c}}{{{latex_escape(g)}}}")
            rules.append(rf"\cmidrule(lr){{{j}-{j + len(ms) - 1}}}")
            j += len(ms)
        lines += [" & ".join(top) + r" \\", " ".join(rules)]
    head = [latex_escape(k) for k in t.label_cols]
    head += [f"{latex_escape(m)} {arrow(m, True)}".rstrip() for m in t.columns]
    lines += [" & ".join(head) + r" \\", r"\midrule"]
    best = {m: best_row(t.df, m) for m in t.columns}
    for i in t.df.index:
        cells = [latex_escape(t.df.at[i, k]) for k in t.label_cols]
        for m in t.columns:
            # the spread in a smaller size, as papers print it: the columns stay narrow
            mean, _, std = cell_text(t.df, i, m).partition(" ± ")
            text = latex_escape(mean) + (rf"{{\scriptsize$\pm${latex_escape(std)}}}" if std else "")
            cells.append(rf"\textbf{{{text}}}" if best[m] == i else text)
        lines.append(" & ".join(cells) + r" \\")
        reported = t.paper.row(str(t.df.at[i, "label"]), t.columns)
        if reported:
            mark, vals = reported
            cells = [rf"\quad\textit{{paper}}\tnote{{{mark}}}"] + [""] * (n_lab - 1)
            cells += [rf"\textit{{{latex_escape(fmt_value(m, vals[m]))}}}" if m in vals else ""
                      for m in t.columns]  # fmt: skip
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\begin{tablenotes}\footnotesize"]
    lines += [rf"\item[{mark}] {latex_escape(note)}" for mark, note in t.paper.notes()]
    lines += [rf"\item[] {latex_escape(n)}" for n in t.notes]
    if t.command:
        lines.append(rf"\item[] Regenerate: \texttt{{{latex_escape(t.command)}}}")
    lines += [r"\end{tablenotes}", r"\end{threeparttable}", r"\end{table}"]
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
