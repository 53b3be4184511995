"""Suites, tables and the regression gate, end to end through the CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from invbench import check, suites
from invbench.errors import UsageError
from invbench.tables import latex_escape

CLI = [sys.executable, "-m", "invbench.cli"]

SUITE = """
description: "test suite"
seeds: [0, 1]
runs:
  - {label: "bce", method: creswell, generator: dcgan, sets: ["steps=4", "generator.steps=30", "eval.n_test=8", "eval.bootstrap=50", "eval.tracks=false"]}
  - {label: "l2", method: creswell, generator: dcgan, sets: ["steps=4", "loss=l2", "generator.steps=30", "eval.n_test=8", "eval.bootstrap=50", "eval.tracks=false"]}
table:
  metrics: [mse, mae, psnr, ssim]
claims:
  - {text: "l2 beats bce on mse", better: "l2", worse: "bce", metric: mse}
"""


def cli(args: list[str], home: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, INVBENCH_HOME=str(home), OMP_NUM_THREADS="2")
    return subprocess.run(CLI + args, capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    path = root / "tiny.yaml"
    path.write_text(SUITE)
    home, results = root / "home", root / "results"
    p = cli(["suite", "run", str(path), "--results", str(results), "--quiet"], home)
    assert p.returncode == 0, p.stderr
    return root, path, home, results, p.stdout


def parse_tabular(tex: str) -> tuple[int, list[int]]:
    """A LaTeX-free check of a booktabs tabular: returns (columns, cells per row)."""
    body = tex[tex.index(r"\begin{tabular}") : tex.index(r"\end{tabular}")]
    spec = re.match(r"\\begin\{tabular\}\{(?:@\{\})?([lrc]+)(?:@\{\})?\}", body).group(1)
    rules = re.findall(r"\\(toprule|midrule|bottomrule)", body)
    assert rules == ["toprule", "midrule", "bottomrule"]
    widths = []
    for line in body.splitlines():
        if line.endswith(r"\\"):
            cells = line[:-2].split(" & ")
            spans = [int(m) for c in cells for m in re.findall(r"\\multicolumn\{(\d+)\}", c)]
            widths.append(len(cells) - len(spans) + sum(spans))
            assert line.count("{") == line.count("}")
    return len(spec), widths


def test_suite_runs_every_cell_and_renders_all_formats(suite_run):
    root, path, home, results, stdout = suite_run
    assert len(list(results.glob("*.json"))) == 4
    assert "| bce |" in stdout and "Claim — l2 beats bce on mse" in stdout
    (verdict,) = suites.verdicts(suites.load(str(path)), results)
    for fmt in ("csv", "md", "latex"):
        p = cli(["table", "--suite", str(path), "--results", str(results), "--format", fmt], home)
        assert p.returncode == 0, p.stderr
        if fmt != "csv":  # the same verdict wherever it is printed
            shown = latex_escape(verdict.line()) if fmt == "latex" else verdict.line()
            assert shown in p.stdout and verdict.line() in stdout  # LaTeX: as pdflatex reads it
        if fmt == "latex":
            ncol, widths = parse_tabular(p.stdout)
            assert widths and all(w == ncol for w in widths)
            assert r"\textbf" in p.stdout and r"$\pm$" in p.stdout
        if fmt == "csv":
            lines = p.stdout.strip().splitlines()
            assert lines[0].startswith("label,method") and len(lines) == 3


def test_gate_passes_unchanged_and_fails_on_a_pushed_number(suite_run, tmp_path):
    root, path, home, results, _ = suite_run
    ref = tmp_path / "ref.json"
    p = cli(
        [
            "table",
            "--suite",
            str(path),
            "--results",
            str(results),
            "--format",
            "json",
            "-o",
            str(ref),
        ],
        home,
    )
    assert p.returncode == 0, p.stderr
    ok = cli(["check", "--against", str(ref), "--results", str(results)], home)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 failed" in ok.stdout
    # push one number beyond its tolerance in a copy of the results
    pushed = tmp_path / "pushed"
    pushed.mkdir()
    for f in results.glob("*.json"):
        (pushed / f.name).write_text(f.read_text())
    data = json.loads(ref.read_text())
    row = next(r for r in data["rows"] if r["label"] == "l2")
    tol = check.tolerance(row["metrics"]["mse"]["mean"], row["metrics"]["mse"]["std"])
    for f in pushed.glob("*.json"):
        rec = json.loads(f.read_text())
        if rec["config"]["method"]["loss"] == "l2":
            rec["metrics"]["mse"] += 2 * tol
            f.write_text(json.dumps(rec))
    bad = cli(["check", "--against", str(ref), "--results", str(pushed)], home)
    assert bad.returncode == 1
    assert re.search(r"l2\s+mse\s+↓ REGRESSION", bad.stdout), bad.stdout


def test_killed_suite_resumes_without_recomputing(suite_run, tmp_path):
    root, _, home, _, _ = suite_run
    path = tmp_path / "slow.yaml"  # same cached generator, cells slow enough to be killed
    path.write_text(SUITE.replace("steps=4", "steps=150"))
    results = tmp_path / "results"
    env = dict(os.environ, INVBENCH_HOME=str(home), OMP_NUM_THREADS="2")
    proc = subprocess.Popen(
        CLI + ["suite", "run", str(path), "--results", str(results), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not list(results.glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {f.name: f.stat().st_mtime_ns for f in results.glob("*.json")}
    assert 1 <= len(first) < 4
    p = cli(["suite", "run", str(path), "--results", str(results), "--quiet"], home)
    assert p.returncode == 0, p.stderr
    after = {f.name: f.stat().st_mtime_ns for f in results.glob("*.json")}
    assert len(after) == 4 and not list(results.glob(".*tmp"))
    assert all(after[k] == v for k, v in first.items())  # finished cells were not recomputed


def test_bad_suite_files_name_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs:\n  - {method: creswell, colour: red}\n")
    with pytest.raises(UsageError, match="unknown key"):
        suites.load(str(bad))
    bad.write_text("runs: [\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        suites.load(str(bad))
    with pytest.raises(UsageError, match="unknown suite"):
        suites.load("no-such-suite")


def test_tolerance_comes_from_seed_spread():
    assert check.tolerance(1.0, 0.1) == pytest.approx(0.3)  # 3 sigma of the seed spread
    assert check.tolerance(1.0, 0.0) == pytest.approx(0.02)  # relative floor
    assert check.tolerance(1.0, None) == pytest.approx(0.10)  # single seed: wide floor


def test_claims_are_validated_and_a_factor_bounds_the_ratio(tmp_path):
    head = "runs:\n  - {label: a, method: creswell}\n  - {label: b, method: creswell}\nclaims:\n"
    bad = tmp_path / "bad.yaml"
    for claim, match in [
        ("{better: a, worse: c, metric: mse}", "not a run label"),
        ("{better: a, worse: b, metric: mse, factr: 2}", "unknown key"),
        ("{better: a, worse: b, metric: mse, factor: -1}", "factor must be positive"),
        ("{better: a, worse: b, metric: mse, factor: .nan}", "finite number"),
        ("{better: a, metric: mse}", "needs better, worse and metric"),
        ("{row: a, metric: mse}", "needs row and at_least / at_most"),
        ("{row: a, better: a, metric: mse, at_most: 1}", "not both"),
        ("{better: a, worse: b, metric: mse, at_most: 1}", "not both"),
        ("{row: a, metric: mse, at_least: 2, at_most: 1}", "can never hold"),
        ("{row: z, metric: mse, at_most: 1}", "not a run label"),
    ]:
        bad.write_text(head + f"  - {claim}\n")
        with pytest.raises(UsageError, match=match):
            suites.load(str(bad))
    good = tmp_path / "good.yaml"
    good.write_text(
        head
        + '  - {text: "a within 1.5x", better: a, worse: b, metric: fid_rand, factor: 1.5}\n'
        + '  - {text: "a within 1.5x (ssim)", better: a, worse: b, metric: ssim, factor: 1.5}\n'
        + '  - {text: "a below b", better: a, worse: b, metric: fid_rand}\n'
        + '  - {text: "b in range", row: b, metric: ssim, at_least: 0.6, at_most: 0.8}\n'
        + '  - {text: "a above 0.6", row: a, metric: ssim, at_least: 0.6}\n'
    )
    suite = suites.load(str(good))  # judged from per-seed values: tests/test_verdicts.py
    assert [c.factor for c in suite.claims] == [1.5, 1.5, 1.0, 1.0, 1.0]
    assert (suite.claims[3].at_least, suite.claims[3].at_most) == (0.6, 0.8)


def test_seed_placeholder_ties_the_generator_seed_and_stays_one_setting(tmp_path):
    from invbench.tables import setting_id

    path = tmp_path / "s.yaml"
    path.write_text(
        "seeds: [0, 3]\nruns:\n  - {label: a, method: creswell, sets: "
        '["generator.seed={seed}", "steps=1"]}\n'
    )
    cells = suites.cells(suites.load(str(path)), tmp_path)
    assert [c[2].sets for c in cells] == [
        ["generator.seed=0", "steps=1"],
        ["generator.seed=3", "steps=1"],
    ]
    rec = {"config": {"seed": 0, "generator": {"name": "dcgan", "seed": 0, "steps": 9}}}
    other = {"config": {"seed": 3, "generator": {"name": "dcgan", "seed": 3, "steps": 9}}}
    assert setting_id(rec) == setting_id(other)  # seeds of one setting, one table row
    other["config"]["generator"]["steps"] = 10
    assert setting_id(rec) != setting_id(other)


def test_only_selects_runs_by_label_pattern(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "seeds: [0, 1]\nruns:\n"
        "  - {label: 'creswell / dcgan z', method: creswell}\n"
        "  - {label: 'projected / dcgan z', method: projected}\n"
        "  - {label: 'creswell / stylegan-lite w', method: creswell, generator: stylegan-lite,"
        " sets: [space=w]}\n"
    )
    suite = suites.load(str(path))
    all_cells = suites.cells(suite, tmp_path / "r")
    assert len(suites.select(all_cells, None)) == 6
    picked = suites.select(all_cells, "*dcgan z")
    assert [(c[0].label, c[1]) for c in picked] == [
        ("creswell / dcgan z", 0),
        ("creswell / dcgan z", 1),
        ("projected / dcgan z", 0),
        ("projected / dcgan z", 1),
    ]
    with pytest.raises(UsageError, match="matches no run label") as e:
        suites.select(all_cells, "nope*")
    assert str(e.value).endswith(
        "the labels are: creswell / dcgan z, projected / dcgan z, creswell / stylegan-lite w."
    )


def test_tables_refuse_to_average_seeds_of_different_flavors():
    from invbench.record import Record
    from invbench.tables import frame

    def rec(seed: int, flavor: str) -> Record:
        return Record.from_dict(
            {
                "method": "creswell",
                "dataset": "digits",
                "generator": "dcgan",
                "seed": seed,
                "config": {"seed": seed, "method": {"name": "creswell"}},
                "metrics": {"fid_test_rec": 20.0 + seed, "mse": 0.01},
                "metric_flavors": {"fid_test_rec": flavor},
            }
        )

    df, _ = frame([rec(0, "lenet-digits/N=297/ref=train"), rec(1, "lenet-digits/N=297/ref=train")])
    assert df.at[0, "seeds"] == 2 and df.at[0, "fid_test_rec"] == 20.5
    with pytest.raises(UsageError, match="numbers of different flavors are not averaged"):
        frame([rec(0, "lenet-digits/N=297/ref=train"), rec(1, "inception-v3/N=297/ref=train")])
