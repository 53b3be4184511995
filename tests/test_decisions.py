"""Issue #15, class 5: tests that guard the decisions the suite makes — records that are never
half written, and committed leaderboards that still match the suites they name. (Claim verdicts
in both metric directions: tests/test_verdicts.py.)"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import re
import signal
import time
from pathlib import Path

import pytest

from invbench import suites
from invbench.artifacts import atomic_write_json
from invbench.metrics import METRICS

REPO = Path(__file__).resolve().parent.parent
BOARDS = REPO / "leaderboards"

# -- atomic writes --------------------------------------------------------------------------------
SIZE = 10_000_000  # characters per record: writing one takes long enough to be caught mid-way


def _writer(path: Path) -> None:
    """Rewrite the record at ``path`` forever (in a forked child: no second torch import)."""
    n = 0
    while True:
        atomic_write_json(path, {"version": n, "data": "x" * SIZE})
        n += 1


def _partial(folder: Path) -> bool:
    """A file in ``folder`` that is being written: non-empty and shorter than a record."""
    for entry in os.scandir(folder):
        try:
            size = entry.stat().st_size
        except FileNotFoundError:  # renamed or removed under us
            continue
        if 0 < size < SIZE:
            return True
    return False


def test_a_writer_killed_mid_write_leaves_the_old_record_or_none(tmp_path):
    """SIGKILL a (forked) process that rewrites a large record in a loop at a moment when a file in the
    folder is half written; the record read back is complete (the previous version). Written
    in place (``path.write_text``) it would be truncated, and this test fails."""
    target = tmp_path / "record.json"
    for _ in range(2):  # two kills at two different moments
        proc = multiprocessing.get_context("fork").Process(target=_writer, args=(target,))
        proc.start()
        try:
            deadline = time.time() + 120
            while not target.exists() and time.time() < deadline:  # a first version exists
                time.sleep(0.01)
            caught = False
            while time.time() < deadline and proc.is_alive():
                if _partial(tmp_path):
                    os.kill(proc.pid, signal.SIGKILL)
                    caught = True
                    break
        finally:
            proc.kill()
            proc.join()
        assert caught, "the writer was never seen mid-write"
        rec = json.loads(target.read_text())  # complete JSON ...
        assert len(rec["data"]) == SIZE and isinstance(rec["version"], int)  # ... a whole one
        assert [p.name for p in tmp_path.glob("*.json")] == ["record.json"]  # temp files hidden


# -- committed leaderboards -----------------------------------------------------------------------
def _setting_ids(suite: suites.Suite) -> dict[str, str]:
    """Each run label's setting id (the configuration without the seeds), as tables and the
    gate key rows, resolved from the suite as it is now."""
    from invbench.runner import resolve
    from invbench.tables import setting_id

    out = {}
    for run, _seed, spec, _path in suites.cells(suite, REPO / "results" / "unused"):
        out[run.label] = setting_id({"config": resolve(spec).config()})
    return out


REFERENCES = sorted(BOARDS.glob("*.json"))
TABLES = sorted(BOARDS.glob("*.md"))


@pytest.mark.parametrize("path", REFERENCES, ids=[p.name for p in REFERENCES])
def test_each_gate_reference_parses_and_matches_its_suite(path):
    ref = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: {c}"))
    assert ref["format"] == "invbench-reference/1"
    suite = suites.load(ref["suite"])  # names a suite that exists
    assert ref["command"].startswith(f"invbench suite run {suite.name} ")
    settings = _setting_ids(suite)
    runs = {r.label: r for r in suite.runs}
    assert [r["label"] for r in ref["rows"]] == list(runs)  # every row, in the suite's order
    for row in ref["rows"]:
        run = runs[row["label"]]
        assert (row["method"], row["dataset"]) == (run.method, run.dataset)
        assert row["setting"] == settings[row["label"]], f"{path}: {row['label']} is stale"
        assert row["seeds"] == len(suite.seeds)
        for metric, m in row["metrics"].items():
            assert metric in METRICS, metric
            assert isinstance(m["mean"], float) and math.isfinite(m["mean"]), (metric, m)
            std = m["std"]
            assert std is None or (isinstance(std, float) and math.isfinite(std) and std >= 0)
            assert m["flavor"] is None or isinstance(m["flavor"], str)


def _regenerate(text: str) -> str:
    """The command a table names (Markdown: in backticks; LaTeX: a visible \\texttt note)."""
    (line,) = [ln for ln in text.splitlines() if "Regenerate:" in ln]
    command = line.split("Regenerate:", 1)[1].strip().strip("`")
    if command.startswith("\\texttt{") and command.endswith("}"):
        command = command[len("\\texttt{") : -1].replace("\\&", "&")
    return command


@pytest.mark.parametrize("path", TABLES, ids=[p.name for p in TABLES])
def test_each_table_names_an_existing_suite_whose_rows_it_shows(path):
    text = path.read_text()
    command = _regenerate(text)
    make = re.fullmatch(r"make (\S+) \((.*)\)", command)
    if make:  # e.g. digits.md: `make leaderboard (...)` -- the target exists
        assert re.search(rf"^{make.group(1)}:", (REPO / "Makefile").read_text(), re.M)
        return
    m = re.fullmatch(
        r"invbench suite run (\S+) && invbench table --suite (\S+) --format md", command
    )
    assert m and m.group(1) == m.group(2) == path.stem, command
    suite = suites.load(m.group(1))
    labels = [r.label for r in suite.runs]
    shown = [ln.split(" | ")[0].lstrip("| ") for ln in text.splitlines() if ln.startswith("| ")]
    shown = [lab for lab in shown if not lab.startswith("↳ paper")]  # a paper's numbers, not a row
    assert shown[0] == "label" and shown[1:], shown
    assert set(shown[1:]) <= set(labels), set(shown[1:]) - set(labels)
    # the CSV and LaTeX versions: the same rows, the same command, the same verdicts
    with open(path.with_suffix(".csv"), newline="") as f:
        assert [r["label"] for r in csv.DictReader(f)] == shown[1:]
    tex = path.with_suffix(".tex").read_text()
    assert _regenerate(tex) == command.replace("--format md", "--format latex")
    claims_md = [ln[2:] for ln in text.splitlines() if ln.startswith("- Claim — ")]
    # ... and the suite's claims as they are stated now, in order: a table judged against claims
    # that were since rewritten (another direction, another bound) is not this suite's result.
    assert len(claims_md) == len(suite.claims), f"{path.name}: made for another suite definition"
    for line, claim in zip(claims_md, suite.claims, strict=True):
        assert line.startswith(f"Claim — {claim.text}: "), (path.name, line, claim.text)
    # the LaTeX table's notes: the same claims, in order, with the same verdicts
    claims_tex = [
        ln for ln in tex.splitlines() if ln.startswith(("% Claim — ", r"\item[] Claim --- "))
    ]
    verdict = re.compile(r": (HELD|DID NOT HOLD|INCONCLUSIVE|INVALID|NOT MEASURED) \(")
    assert [verdict.search(c)[1] for c in claims_tex] == [verdict.search(c)[1] for c in claims_md]


RENDERED = [p for p in TABLES if (BOARDS / "records" / p.stem).is_dir()]


@pytest.mark.parametrize("path", RENDERED, ids=[p.stem for p in RENDERED])
def test_each_suite_table_is_what_its_committed_records_render_to(path):
    """A committed table is the rendering of the records committed beside it (md, csv, LaTeX,
    byte for byte): no hand edit, and no table left behind when its records or the renderer
    changed (`invbench table --suite NAME --results leaderboards/records/NAME` regenerates it)."""
    from invbench.tables import render_suite

    suite = suites.load(path.stem)
    for fmt, suffix in (("md", ".md"), ("csv", ".csv"), ("latex", ".tex")):
        text = render_suite(suite, BOARDS / "records" / path.stem, fmt)
        assert text == path.with_suffix(suffix).read_text(), f"{path.stem}{suffix} is stale"
