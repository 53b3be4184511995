"""``invbench report``: a static site checked in a real browser (headless Chromium via Playwright).

The records are written at the cells of a real suite (so labels, claims and the papers' numbers
come through ``invbench.suites`` as for a run suite) with metrics chosen here; the judges are
the browser (no console error, no request leaving the folder, every image decoded, clicking a
header reorders the rows by the numbers written here) and those numbers (the verdicts)."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import pytest
import torch

from invbench.cli import main
from invbench.plots import save_image_table
from invbench.record import Record

CHROMIUM = os.environ.get("INVBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

SUITE = """
description: "report test"
seeds: [0, 1]
runs:
  - {label: "bce", method: creswell, generator: dcgan, sets: ["steps=3", "loss=bce"]}
  - {label: "l2", method: creswell, generator: dcgan, sets: ["steps=3", "loss=l2"],
     paper: [{paper: "Someone et al.", table: "2", page: 7, differs: ["dataset: MNIST"],
              values: {mse: 0.0123, psnr: 31.5}}]}
  - {label: "long", method: creswell, generator: dcgan, sets: ["steps=5", "loss=l2"]}
table:
  metrics: [mse, psnr, sec_per_image]
claims:
  - {text: "l2 beats bce on mse", better: "l2", worse: "bce", metric: mse}
  - {text: "bce beats long on mse", better: "bce", worse: "long", metric: mse}
"""
MSE = {"bce": 0.030, "l2": 0.010, "long": 0.020}  # sorted ascending: l2, long, bce
SEC = {"bce": 0.5, "l2": 0.2, "long": 0.9}


def _write_results(tmp: Path) -> tuple[Path, Path]:
    from invbench import suites

    path = tmp / "rep.yaml"
    path.write_text(SUITE)
    suite = suites.load(str(path))
    results = tmp / "results" / "suites" / "rep"
    results.mkdir(parents=True)
    for entry, seed, _spec, rec_path in suites.cells(suite, results):
        stem = rec_path.stem
        mse = MSE[entry.label] * (1 + 0.01 * seed)
        ids = [f"test/{i}" for i in range(4)]
        tiles = torch.rand(2, 4, 1, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        save_image_table(results / f"{stem}.png", tiles, row_labels=["original", "reconstruction"],
                         col_labels=ids, title=entry.label)  # fmt: skip
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "mse", "psnr"])
        for i, image_id in enumerate(ids):
            w.writerow([image_id, mse * (i + 1), 20 + i])
        (results / f"{stem}.per_image.csv").write_text(buf.getvalue())
        cfg = {"method": {"name": "creswell", "label": entry.label}, "seed": seed}
        Record(
            method="creswell", dataset="digits", generator="dcgan", space="z", seed=seed,
            metrics={"mse": mse, "psnr": 20.0 + seed, "ssim": 0.8, "sec_per_image": SEC[entry.label]},
            config=cfg, config_hash=stem.rsplit("__", 1)[1], setting=f"set-{entry.label}",
            n_test=4, ci={"mse": [mse * 0.9, mse * 1.1]},
            metric_flavors={"psnr": "data_range=2"},
            files={"grid": f"{stem}.png", "per_image": f"{stem}.per_image.csv"},
        ).write(rec_path)  # fmt: skip
    return path, tmp / "results"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("report")
    suite, results = _write_results(tmp)
    out = tmp / "site"
    from invbench.report import build

    index = build(results, out, [str(suite)])
    return index, out, results, suite


def test_the_site_holds_every_page_and_its_files_without_a_network_reference(site) -> None:
    index, out, *_ = site
    pages = sorted(out.rglob("*.html"))
    assert len(pages) == 1 + 1 + 6  # the index, the suite page, one page per run (3 x 2 seeds)
    for page in pages:
        text = page.read_text()
        assert "http://" not in text and "https://" not in text, page  # nothing to fetch
    suite_page = (out / "rep" / "index.html").read_text()
    # The claims as the tables print them: the first held, the second did not.
    assert "l2 beats bce on mse: HELD" in suite_page
    # The paper's numbers beside the measured ones, its source and what differs as a note.
    assert "paper (a): 0.0123" in suite_page and "paper (a): 31.50" in suite_page
    assert "(a) paper: Someone et al., Table 2, p. 7; settings that differ: dataset: MNIST" in (
        suite_page
    )
    assert "bce beats long on mse: DID NOT HOLD" in suite_page
    # l2's mse over seeds 0, 1: 0.0100, 0.0101; sample std 1e-4 / sqrt(2) = 7.1e-05 (two digits)
    assert "mse ↓" in suite_page and "psnr ↑" in suite_page and "0.0100 ± 7.1e-05" in suite_page
    assert '<span class="best">0.0100 ± 7.1e-05</span>' in suite_page  # l2's mse, lowest
    runs = [p.read_text() for p in (out / "rep" / "runs").glob("*.html")]
    assert all("95% CI" in text for text in runs)
    assert sum("[0.0090, 0.0110]" in text for text in runs) == 1  # l2, seed 0: mse 0.01 ± 10%


def _browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="SKIPPED LOUDLY: Playwright is not installed, so the report was not opened in a "
        "browser. Install it with `make test-deps` (pip install playwright; it drives the "
        "system's Chromium, nothing is downloaded).",
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(
            f"SKIPPED LOUDLY: no Chromium at {CHROMIUM}, so the report was not opened in a "
            "browser. Install it with `make test-deps` (Debian: apt-get install chromium) or "
            "set INVBENCH_CHROMIUM."
        )
    return sync_api


def test_every_page_loads_in_chromium_sorts_and_shows_its_images(site, tmp_path) -> None:
    index, out, *_ = site
    sync_api = _browser()
    errors: list[str] = []
    outside: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
        page.on("request", lambda r: None if r.url.startswith(("file://", "data:")) else
                outside.append(r.url))  # fmt: skip
        for html_page in sorted(out.rglob("*.html")):
            page.goto(html_page.as_uri())
            page.wait_for_load_state("load")
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                ".map(i => i.src)"
            )
            assert not broken, (html_page, broken)
        assert not errors, errors
        assert not outside, outside

        page.goto((out / "rep" / "index.html").as_uri())
        table = page.locator("table.leaderboard").first
        labels = lambda: table.locator("tbody tr td:first-child").all_inner_texts()  # noqa: E731
        assert page.locator("img").count() >= 1  # the Pareto chart
        assert labels() == ["bce", "l2", "long"]  # the suite's order
        header = table.locator("th", has_text="mse")
        header.click()
        assert labels() == sorted(MSE, key=MSE.get)  # ascending mse: l2, long, bce
        header.click()
        assert labels() == sorted(MSE, key=MSE.get, reverse=True)
        table.locator("th", has_text="sec_per_image").click()
        assert labels() == sorted(SEC, key=SEC.get)
        shot = tmp_path / "report-suite.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5000
        print(f"\nreport screenshot: {shot}")

        run_page = next((out / "rep" / "runs").glob("*.html"))
        page.goto(run_page.as_uri())
        per_image = page.locator("table.per-image")
        ids = lambda: per_image.locator("tbody tr td:first-child").all_inner_texts()  # noqa: E731
        per_image.locator("th", has_text="mse").click()
        per_image.locator("th", has_text="mse").click()  # descending: the worst image first
        assert ids() == [f"test/{i}" for i in (3, 2, 1, 0)]
        browser.close()
    assert not errors, errors


def test_the_suite_tables_show_the_papers_numbers_and_compile(site, tmp_path, capsys) -> None:
    from test_latex import PDFLATEX, compile_tex

    _, _, results, suite = site
    res = results / "suites" / "rep"
    assert main(["table", "--suite", str(suite), "--results", str(res)]) == 0
    md = capsys.readouterr().out
    assert "| ↳ paper (a) | *0.0123* | *31.50* |  |" in md
    assert main(["table", "--suite", str(suite), "--results", str(res), "--format", "csv"]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    cols = head.split(",")
    assert cols.index("mse_paper") == cols.index("mse_std") + 1
    assert [r.split(",")[cols.index("mse_paper")] for r in rows] == ["", "0.0123", ""]
    assert main(["table", "--suite", str(suite), "--results", str(res), "--format", "latex"]) == 0
    tex = capsys.readouterr().out
    assert r"\tnote{a}" in tex and r"\item[a] paper: Someone et al., Table 2, p. 7" in tex
    if PDFLATEX:
        compile_tex(tex, tmp_path, "paper")


def test_a_paper_block_naming_no_metric_is_refused(tmp_path) -> None:
    from invbench import suites
    from invbench.errors import UsageError

    bad = SUITE.replace("values: {mse: 0.0123", "values: {msee: 0.0123")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(UsageError, match="unknown metric 'msee'"):
        suites.load(str(tmp_path / "bad.yaml"))


def test_report_refuses_a_folder_it_did_not_write_and_a_missing_results_dir(
    site, tmp_path, capsys
) -> None:
    _, out, results, suite = site
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    assert (
        main(["report", "--results", str(results), "--suite", str(suite), "--out", str(other)]) == 2
    )
    assert "is not an invbench report" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]
    assert main(["report", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "s").exists()
    # An earlier report is replaced, and no temporary folder is left beside it.
    assert (
        main(["report", "--results", str(results), "--suite", str(suite), "--out", str(out)]) == 0
    )
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".report-")) == []


COMMITTED = Path(__file__).resolve().parents[1] / "leaderboards" / "records"


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed records (leaderboards/records)")
def test_make_report_builds_the_committed_records(tmp_path) -> None:
    """What `make report` does on a fresh clone: a page per committed suite, linked from the
    index (the browser test above checks what pages hold)."""
    from invbench.report import build

    index = build(COMMITTED, tmp_path / "site")
    names = sorted(p.name for p in COMMITTED.iterdir() if p.is_dir())
    assert names and all((tmp_path / "site" / n / "index.html").is_file() for n in names)
    assert all(f'href="{n}/index.html"' in index.read_text() for n in names)
