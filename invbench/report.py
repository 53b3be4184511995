"""``invbench report``: a static site of result records that opens from disk.

    invbench report [--results DIR] [--suite NAME ...] --out DIR

One page per suite (its sortable leaderboard: mean ± std over seeds, each run's bootstrap CI,
↑ / ↓, the papers' numbers beside ours, flavors, notes and claim verdicts exactly as the tables
print them; a Pareto chart of quality against seconds per image; a metric-vs-dimension curve
when the suite varies a numeric configuration value), one page per run (its metrics with CIs
and flavors, labelled reconstruction grid, interpolation strip, best / worst images, edit strips
where ``invbench edit`` wrote them beside the records, and the sortable per-image scores).

Self-contained: the stylesheet and the sorting script ship in ``invbench/report_assets`` and are
copied beside the pages; every image is copied in; nothing is fetched. Records that are not in
any suite (``results/*.json`` of single runs) get a page of their own.

Hand-written HTML rather than a templating library: the pages are a few tables and figures, and
every table cell comes from ``invbench.tables`` (one owner of what a table shows).
"""

from __future__ import annotations

import csv
import html
import math
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from invbench.errors import UsageError
from invbench.metrics import METRICS
from invbench.record import InvalidRecord, Record
from invbench.tables import (
    COMPACT,
    PaperNumbers,
    Table,
    arrow,
    best_row,
    cell_text,
    fmt_value,
    grouped,
    layout,
    provenance_note,
)

MARKER = ".invbench-report"  # a folder holding this file is a report `--out` may replace
ASSETS = ("report.css", "report.js")
IMAGE_KINDS = {  # record file kind -> caption
    "grid": "Reconstruction grid: originals above their reconstructions, one test image a column.",
    "interp": "Interpolation strip: decode((1 - t) z_a + t z_b) between disjoint test pairs.",
    "extremes": "Worst and best reconstructions by the first per-image metric.",
}

__all__ = ["build"]


@dataclass
class Page:
    """One leaderboard page: its records (with their files' folder), labels and table."""

    slug: str
    title: str
    description: str
    results: Path
    records: list[tuple[Record, Path]]  # record, its JSON file
    table: Table
    wide: Table
    command: str


def build(results: Path, out: Path, suites: list[str] | None = None) -> Path:
    """Write the site for ``results`` into ``out`` (replacing an earlier report there, never
    another folder) and return its index page. ``suites``: only these (default: every suite
    with records under ``results/suites/NAME`` or ``results/NAME``, and the loose records in
    ``results``). The site is built in a temporary folder and moved into place, so a failure
    leaves the earlier report (or nothing)."""
    results, out = Path(results), Path(out)
    if not results.is_dir():
        raise UsageError(
            f"results directory '{results}' does not exist. Run `invbench suite run NAME` "
            "first or pass --results DIR (the committed ones: leaderboards/records)."
        )
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise UsageError(
            f"'{out}' exists and is not an invbench report; choose another --out or remove it."
        )
    pages = _pages(results, suites)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out.parent))
    try:
        _write_site(tmp, pages)
        (tmp / MARKER).write_text("written by `invbench report`; replaced by the next one\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


# -- what the pages hold -----------------------------------------------------------------------
def _read_dir(results: Path) -> list[tuple[Record, Path]]:
    out = []
    for path in sorted(results.glob("*.json")):
        try:
            out.append((Record.read(path), path))
        except InvalidRecord:
            continue  # an editing result or a broken file: `invbench table` warns about those
    return out


def _suite_dir(results: Path, name: str) -> Path | None:
    for d in (results / "suites" / name, results / name):
        if d.is_dir() and any(d.glob("*.json")):
            return d
    return None


def _pages(results: Path, wanted: list[str] | None) -> list[Page]:
    from invbench import suites
    from invbench.tables import suite_command, suite_parts

    pages = []
    for name in wanted or suites.names():
        suite = suites.load(name)
        d = _suite_dir(results, suite.name)
        if d is None:
            if wanted:
                raise UsageError(
                    f"no records of suite '{suite.name}' under {results}/suites/{suite.name} or "
                    f"{results}/{suite.name}. Run `invbench suite run {suite.name}` first."
                )
            continue
        records, labels, notes = suite_parts(suite, d)
        if not records:
            continue
        keep = {(r.setting, r.seed, r.config_hash) for r in records}
        files = [(r, p) for r, p in _read_dir(d) if (r.setting, r.seed, r.config_hash) in keep]
        paper = PaperNumbers(getattr(suite, "paper_numbers", dict)())
        title = f"{suite.name}: {suite.description}"
        cmd = suite_command(suite, "md")
        table = layout(records, suite.metrics, labels, notes, title, cmd, "compact", paper)
        wide = layout(records, None, labels, notes, title, cmd, "all", paper)
        pages.append(Page(suite.name, title, suite.description, d, files, table, wide, cmd))
    loose = [] if wanted else _read_dir(results)
    if loose:
        recs = [r for r, _ in loose]
        notes = [provenance_note(recs)]
        table = layout(recs, None, None, notes, "Single runs", None, "compact", PaperNumbers())
        wide = layout(recs, None, None, notes, "Single runs", None, "all", PaperNumbers())
        desc = f"records of `invbench run` in {results}"
        pages.append(Page("runs", "Single runs", desc, results, loose, table, wide, ""))
    if not pages:
        raise UsageError(
            f"no result records under {results}. Run `invbench suite run NAME` (or "
            "`invbench run`) first, or pass --results DIR."
        )
    return pages


# -- HTML ----------------------------------------------------------------------------------------
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _document(title: str, body: str, root: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n"
        f'<link rel="icon" href="data:,">\n<link rel="stylesheet" href="{root}assets/report.css">\n'
        f'<script src="{root}assets/report.js" defer></script>\n</head>\n<body>\n'
        f'<nav><a href="{root}index.html">invbench report</a></nav>\n{body}\n</body>\n</html>\n'
    )


def _number(v: Any) -> str:
    """A cell's sort key: the number, or '' (sorted last) when there is none."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(float(v))


def _notes(table: Table) -> str:
    items = [f"({m}) {n}" for m, n in table.paper.notes()] + table.notes
    lis = []
    for n in items:
        cls = ""  # the verdict words of invbench.suites (Verdict.line, report)
        if n.startswith("FAILED") or (n.startswith("Claim") and ": DID NOT HOLD (" in n):
            cls = ' class="verdict-failed"'
        elif n.startswith("Claim") and ": HELD (" in n:
            cls = ' class="verdict-held"'
        elif n.startswith("Claim"):
            cls = ' class="verdict-open"'  # INCONCLUSIVE or INVALID
        lis.append(f"<li{cls}>{_e(n)}</li>")
    return '<ul class="notes">' + "".join(lis) + "</ul>"


def _leaderboard(table: Table, runs: dict[str, list[tuple[Record, str]]]) -> str:
    """The table as HTML: group headers once, sortable columns (by the mean), the best value
    bold where unique, each run's CI under a single-seed value, the paper's number below."""
    df, cols = table.df, table.columns
    labels = [c for c in table.label_cols if c != "seeds"]
    group_row = "".join(f'<th colspan="{len(ms)}">{_e(g)}</th>' for g, ms in grouped(cols))
    head = [f'<th class="label sortable" data-col="{j}">{_e(k)}</th>' for j, k in enumerate(labels)]
    head.append(f'<th class="sortable" data-col="{len(labels)}">seeds</th>')
    for j, m in enumerate(cols, start=len(labels) + 1):
        head.append(f'<th class="sortable" data-col="{j}">{_e(m)} {arrow(m)}</th>')
    best = {m: best_row(df, m) for m in cols}
    body = []
    for i in df.index:
        label = str(df.at[i, "label"])
        row = [f'<td class="label">{_e(df.at[i, k])}</td>' for k in labels]
        links = " ".join(
            f'<a href="{_e(href)}">seed {rec.seed}</a>'
            for rec, href in runs.get(_row_key(df, i), [])
        )
        row.append(f'<td data-value="{int(df.at[i, "seeds"])}">{int(df.at[i, "seeds"])}'
                   f'<span class="seeds">{links}</span></td>')  # fmt: skip
        reported = table.paper.row(label, cols)
        seeds = runs.get(_row_key(df, i), [])
        for m in cols:
            cls = ' class="best"' if best[m] == i else ""
            text = f"<span{cls}>{_e(cell_text(df, i, m))}</span>"
            if len(seeds) == 1 and m in seeds[0][0].ci:
                lo, hi = seeds[0][0].ci[m]
                text += f'<span class="ci">95% CI [{_e(fmt_value(m, lo))}, {_e(fmt_value(m, hi))}]</span>'
            if reported and m in reported[1]:
                text += (f'<span class="paper">paper ({reported[0]}): '
                         f"{_e(fmt_value(m, reported[1][m]))}</span>")  # fmt: skip
            row.append(f'<td data-value="{_number(df.at[i, m])}">{text}</td>')
        body.append("<tr>" + "".join(row) + "</tr>")
    n_lab = len(labels) + 1
    return (
        '<div class="scroll"><table class="leaderboard">\n<thead>'
        f'<tr class="group"><th colspan="{n_lab}"></th>{group_row}</tr>'
        f"<tr>{''.join(head)}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )


def _row_key(df: Any, i: int) -> tuple[str, str, str, str]:
    return (str(df.at[i, "label"]), str(df.at[i, "setting"]), str(df.at[i, "precision"]),
            str(df.at[i, "profile"]))  # fmt: skip


def _plots(page: Page, folder: Path) -> list[tuple[str, str]]:
    """(file, caption) of the suite's charts; a chart the records cannot give is left out."""
    from invbench.plots import plot, value

    recs = [r for r, _ in page.records]
    labels = _labels(page)
    quality = [m for m in (*page.table.columns, *COMPACT) if m != "sec_per_image"]
    y = next((m for m in quality if any(r.metrics.get(m) is not None for r in recs)), None)
    out: list[tuple[str, str]] = []
    if y is None:
        return out
    if any(r.metrics.get("sec_per_image") is not None for r in recs):
        plot(recs, "sec_per_image", y, folder / "pareto.png", labels=labels, pareto=True,
             title=f"{page.slug}: {y} against seconds per image")  # fmt: skip
        out.append(("pareto.png", f"Pareto chart: {y} against sec_per_image, one point a row "
                    "(mean over seeds, error bar: std), the front joined."))  # fmt: skip
    varying = _varying_numbers(recs)
    if varying:
        x = next((k for k in varying if "dim" in k), varying[0])
        splits = {value(r, "eval.split") for r in recs}
        series = ["method.name"] + (["eval.split"] if len(splits) > 1 else [])
        plot(recs, x, y, folder / "dimension.png", series=series, labels=labels,
             title=f"{page.slug}: {y} against {x}")  # fmt: skip
        out.append(("dimension.png", f"{y} against {x}, one line per {' / '.join(series)}."))
    return out


def _labels(page: Page) -> dict[str, str]:
    df = page.table.df
    return {str(df.at[i, "setting"]): str(df.at[i, "label"]) for i in df.index}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _varying_numbers(recs: list[Record]) -> list[str]:
    """Numeric configuration paths (not seeds) that take several values across the records."""
    seen: dict[str, set[float]] = {}
    for r in recs:
        for k, v in _flat(r.config).items():
            if isinstance(v, int | float) and not isinstance(v, bool) and "seed" not in k:
                seen.setdefault(k, set()).add(float(v))
    return sorted(k for k, vs in seen.items() if len(vs) > 1)


def _run_page(rec: Record, path: Path, page: Page, folder: Path, label: str) -> str:
    """A run's page: metrics with CI and flavor, its images (copied beside it), per-image scores."""
    rows = []
    for name, v in rec.metrics.items():
        spec = METRICS.find(name)
        ci = rec.ci.get(name)
        ci_text = f"[{fmt_value(name, ci[0])}, {fmt_value(name, ci[1])}]" if ci else ""
        rows.append(
            f'<tr><td class="label">{_e(name)} {arrow(name)}</td><td data-value="{_number(v)}">'
            f"{_e(fmt_value(name, v))}</td><td>{_e(ci_text)}</td>"
            f'<td class="label">{_e(rec.metric_flavors.get(name, ""))}</td>'
            f'<td class="label">{_e(spec.meaning if spec else "")}</td></tr>'
        )
    head = "".join(f'<th class="{"label " if j in (0, 3, 4) else ""}sortable" data-col="{j}">{h}</th>'
                   for j, h in enumerate(("metric", "value", "95% CI (bootstrap over images)",
                                          "flavor", "what it measures")))  # fmt: skip
    parts = [
        f"<h1>{_e(label)} — seed {rec.seed}</h1>",
        f"<p>{_e(rec.method)} on {_e(rec.dataset)} ({_e(rec.generator)}), space {_e(rec.space)}, "
        f"{_e(rec.precision)}, profile {_e(rec.profile)}, {rec.n_test} {_e(rec.split)} images. "
        f'Suite page: <a href="../index.html">{_e(page.title)}</a>. Record: <code>{_e(path.name)}</code>.</p>',
        "<h2>Metrics</h2>",
        f'<div class="scroll"><table class="metrics"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows) + "</tbody></table></div>",
    ]  # fmt: skip
    if rec.unavailable:
        parts.append("<p>Not measured: " + "; ".join(
            f"{_e(k)} ({_e(v)})" for k, v in rec.unavailable.items()) + "</p>")  # fmt: skip
    figures = []
    for kind, caption in IMAGE_KINDS.items():
        name = rec.files.get(kind)
        if name and (page.results / name).is_file():
            shutil.copy2(page.results / name, folder / name)
            figures.append((name, caption))
    pattern = f"{rec.method}__*__{rec.dataset}__s{rec.seed}__k*.png"
    for strip in sorted(page.results.rglob(pattern)):
        shutil.copy2(strip, folder / strip.name)
        figures.append((strip.name, f"Edit strip ({strip.stem.split('__')[1]} directions): the "
                        "original, then one column per step along the direction."))  # fmt: skip
    if figures:
        parts.append("<h2>Images</h2>")
        parts += [f'<figure><img src="{_e(f)}" alt="{_e(c)}"><figcaption>{_e(c)}</figcaption>'
                  "</figure>" for f, c in figures]  # fmt: skip
    per_image = rec.files.get("per_image")
    if per_image and (page.results / per_image).is_file():
        parts.append("<h2>Per-image scores</h2><p>Click a column to sort; the worst and best "
                     "reconstructions are shown above.</p>" + _csv_table(page.results / per_image))  # fmt: skip
    if rec.provenance:
        parts.append("<h2>Provenance</h2><p>" + _e(provenance_note([rec])) + "</p>")
    return _document(f"{label} seed {rec.seed}", "\n".join(parts), "../../")


def _csv_table(path: Path) -> str:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return ""
    head = "".join(
        f'<th class="{"label " if j == 0 else ""}sortable" data-col="{j}">{_e(h)} {arrow(h)}</th>'
        for j, h in enumerate(rows[0])
    )
    body = "".join(
        "<tr>" + f'<td class="label">{_e(r[0])}</td>'
        + "".join(f'<td data-value="{_e(v)}">{_e(v)}</td>' for v in r[1:]) + "</tr>"
        for r in rows[1:]
    )  # fmt: skip
    return (f'<div class="scroll"><table class="per-image"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")  # fmt: skip


def _write_site(root: Path, pages: list[Page]) -> None:
    assets = root / "assets"
    assets.mkdir()
    for name in ASSETS:
        src = resources.files("invbench").joinpath("report_assets", name)
        (assets / name).write_bytes(src.read_bytes())
    items = []
    for page in pages:
        folder = root / page.slug
        (folder / "runs").mkdir(parents=True)
        runs: dict[tuple[str, str, str, str], list[tuple[Record, str]]] = {}
        labels = _labels(page)
        for rec, path in page.records:
            label = labels.get(rec.setting, rec.method)
            html_name = f"runs/{path.stem}.html"
            (folder / html_name).write_text(
                _run_page(rec, path, page, folder / "runs", label), encoding="utf-8"
            )
            key = (label, rec.setting, rec.precision, rec.profile)
            runs.setdefault(key, []).append((rec, html_name))
        charts = _plots(page, folder)
        body = [f"<h1>{_e(page.title)}</h1>"]
        if page.command:
            body.append(f"<p>Regenerate: <code>{_e(page.command)}</code></p>")
        body += ["<h2>Leaderboard</h2>", _leaderboard(page.table, runs), _notes(page.table)]
        if page.wide.columns != page.table.columns:
            body += ["<details><summary>Every metric</summary>", _leaderboard(page.wide, runs),
                     "</details>"]  # fmt: skip
        if charts:
            body.append("<h2>Plots</h2>")
            body += [f'<figure><img src="{_e(f)}" alt="{_e(c)}"><figcaption>{_e(c)}</figcaption>'
                     "</figure>" for f, c in charts]  # fmt: skip
        (folder / "index.html").write_text(_document(page.title, "\n".join(body), "../"),
                                           encoding="utf-8")  # fmt: skip
        items.append(f'<li><a href="{_e(page.slug)}/index.html">{_e(page.slug)}</a>: '
                     f"{_e(page.description)} ({len(page.table.df)} rows, "
                     f"{len(page.records)} runs)</li>")  # fmt: skip
    index = "<h1>invbench report</h1>\n<ul>" + "\n".join(items) + "</ul>"
    (root / "index.html").write_text(_document("invbench report", index, ""), encoding="utf-8")
