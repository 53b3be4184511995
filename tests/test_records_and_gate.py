"""Records validated when read, and a gate that cannot pass on a bad reference.

Through the command line: ``table`` skips an invalid record with a warning naming it, ``check``
stops with exit 2 naming it, ``suite run`` computes the cell again; a reference with NaN / inf
or of the wrong shape stops the gate with exit 2 naming the key; rows that differ in precision
or profile are never averaged nor compared; "worse" follows each metric's direction."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from invbench import check
from invbench.cli import main
from invbench.record import Record, setting_of

SUITE = """
description: "records test"
seeds: [0, 1]
runs:
  - {label: "c", method: creswell, generator: dcgan, sets: ["steps=3", "generator.steps=30", "eval.n_test=6", "eval.bootstrap=20", "eval.tracks=false"]}
table:
  metrics: [mse, psnr, ssim]
"""


@pytest.fixture(scope="module")
def suite_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    suite = root / "recs.yaml"
    suite.write_text(SUITE)
    results = root / "results"
    assert main(["suite", "run", str(suite), "--results", str(results), "--quiet"]) == 0
    ref = root / "ref.json"
    assert main(["table", "--suite", str(suite), "--results", str(results), "--format", "json",
                 "-o", str(ref)]) == 0  # fmt: skip
    return suite, results, ref


def _copy(suite_results, tmp_path) -> tuple[Path, Path, Path]:
    suite, results, ref = suite_results
    shutil.copytree(results, tmp_path / "results")
    return suite, tmp_path / "results", ref


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


BAD_RECORDS = {
    "truncated": lambda text: text[: len(text) // 2].encode(),
    "not UTF-8": lambda text: b"\xff\xfe" + text.encode("utf-16-le"),
    "structurally wrong": lambda text: json.dumps([json.loads(text)]).encode(),
    "a metric that is a string": lambda text: text.replace(
        '"mse": ', '"mse": "0.5", "x": ', 1
    ).encode(),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_an_invalid_record_is_skipped_by_table_fatal_to_check_recomputed_by_suite(
    case, suite_results, tmp_path, capsys
) -> None:
    suite, results, ref = _copy(suite_results, tmp_path)
    victim = sorted(results.glob("*.json"))[0]
    victim.write_bytes(BAD_RECORDS[case](victim.read_text()))
    code, out, err = _cli(capsys, "table", "--results", str(results))
    assert code == 0 and victim.name in err and "skipping" in err and "Traceback" not in err
    assert "| creswell |" in out and "A single seed per row" in out  # the other seed's row
    code, out, err = _cli(capsys, "check", "--against", str(ref), "--results", str(results))
    assert code == 2 and victim.name in err and "not a valid invbench record" in err
    code, out, err = _cli(capsys, "suite", "run", str(suite), "--results", str(results))
    assert code == 0 and "not a valid record; computing it again" in err
    assert Record.read(victim).seed in (0, 1)  # valid again
    assert _cli(capsys, "check", "--against", str(ref), "--results", str(results))[0] == 0


def test_a_record_of_an_earlier_definition_of_a_row_is_not_averaged_into_the_suites_table(
    suite_results, tmp_path, capsys
):
    """A row redefined so that its cells' config hashes change (here: a generator seed per suite
    seed) leaves the old records in the folder with the row's setting and seeds. The suite's table
    and plot show the suite's cells only, as its verdicts do; a loose-records table still shows
    every record."""
    suite, results, ref = _copy(suite_results, tmp_path)
    args = ["table", "--suite", str(suite), "--results", str(results), "--format", "csv"]
    before = _cli(capsys, *args)[1]
    rec = Record.read(sorted(results.glob("*__s1__*.json"))[0])
    config = json.loads(json.dumps(rec.config))
    config["generator"]["seed"] = 7  # not part of the setting, part of the config hash
    old = dataclasses.replace(rec, config=config, config_hash="0123456789abcdef",
                              metrics={**rec.metrics, "mse": 9.0})  # fmt: skip
    assert old.setting == rec.setting and old.seed == rec.seed
    old.write(results / "creswell__digits__dcgan__s1__0123456789abcdef.json")
    assert _cli(capsys, *args)[1] == before
    loose = _cli(capsys, "table", "--results", str(results), "--format", "csv")[1]
    row = next(csv.DictReader(io.StringIO(loose)))
    assert row["seeds"] == "3" and float(row["mse"]) > 9.0 / 3  # the old record counted in


def test_the_gate_says_where_the_reference_and_the_fresh_run_ran(suite_results, tmp_path, capsys):
    """Single-threaded numbers move between CPUs, so the gate's report ends with both sides'
    "Ran on" (device with the kernels' instruction set, threads, torch, commit)."""
    suite, results, ref = _copy(suite_results, tmp_path)
    code, out, _ = _cli(capsys, "check", "--against", str(ref), "--results", str(results))
    isa = torch.backends.cpu.get_cpu_capability()
    assert code == 0 and out.splitlines()[-2] == out.splitlines()[-1].replace(
        "this run", "reference"
    )
    assert out.splitlines()[-1].startswith("this run ran on: cpu (") and f", {isa} kernels)" in out
    older = json.loads(ref.read_text()) | {"provenance": "Ran on: cpu (x86_64), 1 threads"}
    (tmp_path / "old.json").write_text(json.dumps(older))
    code, out, _ = _cli(
        capsys, "check", "--against", str(tmp_path / "old.json"), "--results", str(results)
    )
    assert code == 0 and out.splitlines()[-2] == "reference ran on: cpu (x86_64), 1 threads"


def _bad_reference(ref: Path, tmp_path: Path, edit) -> Path:
    """``edit`` changes the parsed reference in place, or returns new JSON text."""
    obj = json.loads(ref.read_text())
    text = edit(obj)
    out = tmp_path / "bad.json"
    out.write_text(text if isinstance(text, str) and text.startswith("{") else json.dumps(obj))
    return out


REFS = {
    "NaN mean": (lambda o: json.dumps(o).replace('"mean": ', '"mean": NaN, "was": ', 1), "NaN"),
    "Infinity std": (
        lambda o: json.dumps(o).replace('"std": ', '"std": Infinity, "was": ', 1),
        "Infinity",
    ),
    "non-numeric mean": (
        lambda o: o["rows"][0]["metrics"]["mse"].update(mean="0.08"),
        "rows[0].metrics.mse.mean",
    ),
    "missing mean": (
        lambda o: o["rows"][0]["metrics"]["mse"].pop("mean"),
        "rows[0].metrics.mse.mean",
    ),
    "list for metrics": (
        lambda o: o["rows"][0].update(metrics=list(o["rows"][0]["metrics"])),
        "rows[0].metrics",
    ),
    "missing row key": (lambda o: o["rows"][0].pop("setting"), "rows[0].setting"),
    "rows not a list": (lambda o: o.update(rows={"a": 1}), "rows"),
}


@pytest.mark.parametrize("case", list(REFS))
def test_a_malformed_or_non_finite_reference_stops_the_gate(
    case, suite_results, tmp_path, capsys
) -> None:
    _, results, ref = suite_results
    edit, key = REFS[case]
    bad = _bad_reference(ref, tmp_path, edit)
    code, out, err = _cli(capsys, "check", "--against", str(bad), "--results", str(results))
    assert code == 2 and key in err and "Traceback" not in err, (case, err)
    assert "within tolerance" not in out


def test_a_nan_comparison_is_never_a_pass() -> None:
    old = {"mean": 0.1, "std": 0.001, "flavor": None}
    for fresh in (float("nan"), float("inf"), None, "0.1"):
        f = check._compare_metric("row", "mse", old, {"mean": fresh, "flavor": None})
        assert f.status == "REGRESSION", fresh
    ok, _ = check.report([])
    assert not ok  # a gate that compared nothing does not pass


def test_the_gate_reads_a_drop_of_a_higher_is_better_metric_as_a_regression(
    suite_results, tmp_path, capsys
) -> None:
    _, results, ref = suite_results
    obj = json.loads(ref.read_text())
    for metric, sign in (("psnr", +1), ("ssim", +1), ("mse", -1)):
        pushed = json.loads(json.dumps(obj))
        entry = pushed["rows"][0]["metrics"][metric]
        step = 3 * check.tolerance(entry["mean"], entry["std"])
        # The reference claims a better number than measured: the fresh one is a regression.
        entry["mean"] += sign * step
        path = tmp_path / f"{metric}.json"
        path.write_text(json.dumps(pushed))
        code, out, _ = _cli(capsys, "check", "--against", str(path), "--results", str(results))
        assert code == 1 and f"{metric}" in out and "REGRESSION" in out, metric
        # ... and a reference worse than measured is an improvement, never a failure.
        entry["mean"] -= 2 * sign * step
        path.write_text(json.dumps(pushed))
        code, out, _ = _cli(capsys, "check", "--against", str(path), "--results", str(results))
        assert code == 0 and "improved" in out, metric


def _as_precision(rec: Record, precision: str) -> Record:
    cfg = json.loads(json.dumps(rec.config))
    cfg["eval"]["precision"] = precision
    return dataclasses.replace(rec, precision=precision, config=cfg, setting=setting_of(cfg))


def test_rows_of_another_precision_or_profile_are_never_averaged_nor_compared(
    suite_results, tmp_path, capsys
) -> None:
    from invbench.tables import frame

    _, results, ref = _copy(suite_results, tmp_path)
    records = [Record.read(p) for p in sorted(results.glob("*.json"))]
    bf16 = [_as_precision(r, "bf16") for r in records]
    df, _ = frame(records + bf16)
    assert sorted(df["precision"]) == ["bf16", "fp32"] and set(df["seeds"]) == {2}
    paper = dataclasses.replace(records[0], profile="paper")
    df, _ = frame([*records, paper])
    assert len(df) == 2  # the profile is part of the row, even with one setting id
    # A reference row measured in bf16 has no fp32 twin to be compared with: MISSING, exit 1.
    obj = json.loads(ref.read_text())
    obj["rows"][0]["precision"] = "bf16"
    path = tmp_path / "bf16.json"
    path.write_text(json.dumps(obj))
    code, out, _ = _cli(capsys, "check", "--against", str(path), "--results", str(results))
    assert code == 1 and "MISSING" in out and "precision=bf16" in out


def test_rows_whose_method_flavor_differs_are_not_compared() -> None:
    """A method's perceptual network (``method.perceptual``) changes what all its numbers mean:
    a reference measured with VGG is not compared with a fresh run that fell back to LeNet."""
    row = {"label": "r", "method": "lia", "dataset": "digits", "generator": "own", "space": "y",
           "setting": "s", "metrics": {"mse": {"mean": 0.1, "std": 0.0, "flavor": None}}}  # fmt: skip
    ref = {"rows": [{**row, "method_flavor": {"method.perceptual": "vgg16-conv4_3"}}]}
    fresh = {"rows": [{**row, "method_flavor": {"method.perceptual": "lenet-digits"}}]}
    (finding,) = check.compare(ref, fresh)
    assert finding.status == "not compared" and "lenet-digits" in finding.detail
    fresh["rows"][0]["method_flavor"] = {"method.perceptual": "vgg16-conv4_3"}
    assert [f.status for f in check.compare(ref, fresh)] == ["ok"]
