"""Tables a paper can paste: LaTeX that pdflatex compiles into a page, Markdown with the same
compact columns, CSV with every metric.

The independent judges are pdflatex itself (every committed ``leaderboards/*.tex`` and a freshly
rendered table compile, with booktabs and threeparttable, into a PDF of at least one page) and
the text of the table as a reader sees it (each group header once, bold only on a unique best,
notes inside the float rather than in ``%`` comments)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from invbench.metrics import METRICS
from invbench.record import Record, setting_of
from invbench.tables import latex_escape, render

ROOT = Path(__file__).resolve().parents[1]
PDFLATEX = shutil.which("pdflatex")
needs_pdflatex = pytest.mark.skipif(
    PDFLATEX is None,
    reason="SKIPPED LOUDLY: pdflatex is not installed, so no table was compiled. Install it "
    "with `make test-deps` (Debian: texlive-latex-base texlive-latex-extra).",
)

# Two rows tie as printed on ssim (0.8374 both), 'a' is uniquely best on mse, psnr and lpips.
VALUES = {
    "a": {"mse": 0.0100, "mae": 0.07, "psnr": 26.0, "ssim": 0.83741, "lpips": 0.10},
    "b": {"mse": 0.0200, "mae": 0.08, "psnr": 24.0, "ssim": 0.83739, "lpips": 0.20},
}
EXTRA = {"swd": 24.0, "fid_test_rec": 26.0, "latent_mse": 0.7, "sec_per_image": 0.6}


def records() -> list[Record]:
    out = []
    for method, vals in VALUES.items():
        for seed in (0, 1):
            cfg = {"method": {"name": method}, "seed": seed}
            metrics = {**vals, **EXTRA, "mse": vals["mse"] * (1 + 0.1 * seed)}
            out.append(
                Record(
                    method=method,
                    dataset="digits",
                    generator="dcgan",
                    space="z",
                    seed=seed,
                    metrics=metrics,
                    config=cfg,
                    config_hash=f"h{seed}",
                    setting=setting_of(cfg),
                    metric_flavors={"fid_test_rec": "lenet-digits/N=148/ref=train_%"},
                )  # fmt: skip
            )
    return out


def compile_tex(body: str, tmp: Path, name: str) -> str:
    """``body`` inside a minimal article with the packages the tables ask for; pdflatex's log."""
    doc = tmp / f"{name}.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n"
        "\\usepackage{booktabs,threeparttable}\n\\begin{document}\n"
        f"{body}\n\\end{{document}}\n"
    )
    assert PDFLATEX is not None
    proc = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    log = proc.stdout
    assert proc.returncode == 0, f"{name} does not compile:\n{log[-3000:]}"
    pages = re.search(r"Output written on .*?\((\d+) pages?", log)
    assert pages and int(pages.group(1)) >= 1, f"{name}: no page produced:\n{log[-2000:]}"
    assert (tmp / f"{name}.pdf").stat().st_size > 1000
    return log


COMMITTED = sorted((ROOT / "leaderboards").rglob("*.tex"))


@needs_pdflatex
@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_every_committed_latex_table_compiles_into_a_page(path: Path, tmp_path: Path) -> None:
    compile_tex(f"\\input{{{path}}}", tmp_path, path.stem)


@needs_pdflatex
def test_a_rendered_table_compiles_with_its_notes_inside_the_float(tmp_path: Path) -> None:
    notes = ["Claim — a < b on mse: PASS (p = 0.01, 100% of seeds) & more_{x}"]
    tex = render(records(), "latex", title="digits: a ~ b #1", notes=notes, label="tab:digits")
    log = compile_tex(tex, tmp_path, "rendered")
    assert "Undefined control sequence" not in log
    # Every note is text in the PDF's source float, none a %-comment only.
    info = [ln for ln in tex.splitlines() if ln.startswith("%")]
    assert all("usepackage" in ln for ln in info), info
    assert latex_escape(notes[0]) in tex and "PASS" in tex


def test_latex_is_a_captioned_labelled_booktabs_float_with_group_headers_once() -> None:
    tex = render(records(), "latex", title="Digits", label="tab:digits")
    for needle in (r"\begin{table}", r"\caption{Digits}", r"\label{tab:digits}", r"\toprule",
                   r"\midrule", r"\bottomrule", r"\begin{tablenotes}", r"\end{table}"):  # fmt: skip
        assert needle in tex, needle
    header = next(ln for ln in tex.splitlines() if r"\multicolumn" in ln)
    groups = re.findall(r"\\multicolumn\{\d+\}\{c\}\{([^}]*)\}", header)
    assert len(groups) == len(set(groups)), groups  # each group heads its columns once
    # The compact columns: mae, swd and latent_mse are left to the CSV; sec_per_image shown.
    assert "mae" not in tex and "latent" not in tex and r"sec\_per\_image" in tex
    assert "more metrics in the CSV" in tex


def _row(text: str, label: str, sep: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.strip(" |").startswith(label + " "))
    return [c.strip() for c in line.strip(" |\\").split(sep)]


def test_bold_marks_the_best_only_where_it_is_unique_in_the_metrics_direction() -> None:
    md = render(records(), "md")
    head = [c.strip() for c in md.splitlines()[0].strip(" |").split("|")]
    a, b = _row(md, "a", "|"), _row(md, "b", "|")
    col = {h.split()[0]: j for j, h in enumerate(head)}
    for m in ("mse", "psnr", "lpips"):  # lower / higher is better read from the registry
        assert METRICS.get(m).higher_better == (m == "psnr")
        assert a[col[m]].startswith("**") and not b[col[m]].startswith("**"), m
    # 0.83741 and 0.83739 both print as 0.8374: a tie as printed, so neither is bold.
    assert a[col["ssim"]].startswith("0.8374") and not a[col["ssim"]].startswith("**")
    assert not b[col["ssim"]].startswith("**")
    tex = render(records(), "latex")
    assert tex.count(r"\textbf") == 3  # mse, psnr, lpips; the equal fid and seconds: none


def test_markdown_shows_the_latex_columns_and_the_csv_keeps_all() -> None:
    recs = records()
    md_head = render(recs, "md").splitlines()[0]
    md_cols = [c.strip().split()[0] for c in md_head.strip(" |").split("|")][1:]
    tex = render(recs, "latex")
    tex_head = next(ln for ln in tex.splitlines() if ln.startswith("method"))
    tex_cols = [c.strip().split()[0].replace(r"\_", "_") for c in tex_head.split("&")][1:]
    assert md_cols == tex_cols == ["mse", "psnr", "ssim", "lpips", "fid_test_rec", "sec_per_image"]
    assert max(len(ln) for ln in render(recs, "md").splitlines() if ln.startswith("|")) < 160
    csv_head = render(recs, "csv").splitlines()[0].split(",")
    assert {"mae", "swd", "latent_mse", "mae_std"} <= set(csv_head)
    every = render(recs, "md", columns="all").splitlines()[0]
    assert "mae" in every and "latent_mse" in every


def test_an_unknown_columns_choice_names_the_choices() -> None:
    from invbench.errors import UsageError

    with pytest.raises(UsageError, match="compact or all"):
        render(records(), "md", columns="some")


def test_latex_cells_are_the_records_mean_and_std_and_the_paper_row_the_suites_values() -> None:
    """Each measured cell is mean{\\scriptsize$\\pm$std} of the row's seeds (numpy over the
    committed records), and the row below it is the paper's values as the suite YAML declares
    them, in italics, with its note letters."""
    import numpy as np
    import yaml

    from invbench import suites
    from invbench.record import load_records
    from invbench.tables import render_suite

    src = ROOT / "leaderboards" / "records" / "invgan-table1"
    tex = render_suite(suites.load("invgan-table1"), src, "latex")
    lines = tex.splitlines()
    row = next(i for i, ln in enumerate(lines) if ln.startswith("InvGAN (DCGAN) &"))
    cells = [c.strip().removesuffix("\\\\").strip() for c in lines[row].split("&")]
    vals = np.array(
        [r.metrics["fid_rand"] for r in load_records(src) if r.method == "invgan"], dtype=float
    )
    assert len(vals) == 3
    expect = f"{vals.mean():.2f}{{\\scriptsize$\\pm${vals.std(ddof=1):.2f}}}"
    assert cells[1] in (expect, f"\\textbf{{{expect}}}")

    spec = yaml.safe_load((ROOT / "configs" / "suites" / "invgan-table1.yaml").read_text())
    reported = spec["runs"][0]["paper"][0]["values"]
    paper = [c.strip().removesuffix("\\\\").strip() for c in lines[row + 1].split("&")]
    assert paper[0] == "\\quad\\textit{paper}\\tnote{a,b}"
    assert paper[1] == f"\\textit{{{reported['fid_rand']:.2f}}}"
    assert paper[2] == f"\\textit{{{reported['fid_rand@N=100']:.2f}}}"


def test_markdown_cells_are_the_records_mean_and_std_and_the_paper_row_the_suites_values(
    tmp_path: Path,
) -> None:
    """The markdown twin of the LaTeX test above: a cell is mean ± sample std (ddof 1) of the
    records, also with two seeds; a single seed shows the mean alone; the paper row under a row
    is the suite's values in italics with its note letters; a metric a row lacks is '–'."""
    import numpy as np
    import yaml

    from invbench import suites
    from invbench.record import load_records
    from invbench.tables import render_suite

    def cells(md: str, label: str, below: int = 0) -> list[str]:
        lines = md.splitlines()
        row = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {label} |")) + below
        return [
            c.strip().removeprefix("**").removesuffix("**") for c in lines[row].split("|")[1:-1]
        ]

    suite = suites.load("invgan-table1")
    src = ROOT / "leaderboards" / "records" / "invgan-table1"
    spec = yaml.safe_load((ROOT / "configs" / "suites" / "invgan-table1.yaml").read_text())
    reported = spec["runs"][0]["paper"][0]["values"]
    for seeds in ((0, 1, 2), (0, 1), (0,)):
        folder = tmp_path / "".join(map(str, seeds))
        folder.mkdir()
        for s in seeds:
            for f in src.glob(f"*__s{s}__*.json"):
                (folder / f.name).write_bytes(f.read_bytes())
        md = render_suite(suite, folder, "md")
        vals = np.array(
            [r.metrics["fid_rand"] for r in load_records(folder) if r.method == "invgan"]
        )
        assert len(vals) == len(seeds)
        row = cells(md, "InvGAN (DCGAN)")
        if len(seeds) > 1:
            assert row[1] == f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f}"
        else:
            assert row[1] == f"{vals[0]:.2f}"
        paper = cells(md, "InvGAN (DCGAN)", below=1)
        assert paper[0] == "↳ paper (a,b)"
        assert paper[1:3] == [
            f"*{reported['fid_rand']:.2f}*",
            f"*{reported['fid_rand@N=100']:.2f}*",
        ]

    md = render_suite(
        suites.load("creswell-models"), ROOT / "leaderboards" / "records" / "creswell-models", "md"
    )
    train = cells(md, "GAN train")
    assert train[4] == "–" and train[1] != "–"  # no fid_rand on train rows; mse there
