"""The gate's decisions, in process (so `make mutation` sees them: the CLI tests of
test_records_and_gate.py run `invbench check` in a subprocess, which never loads a mutant).

Each expectation is written from the rule in check.py's docstring, not read back from the code:
tol = max(3 std, 2% |mean|, 1e-6), or 10% |mean| for a single-seed reference; "worse" follows the
metric's registered direction.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from invbench import check


@pytest.mark.parametrize(
    ("mean", "std", "tol"),
    [
        (1.0, 0.1, 0.3),  # three standard deviations dominate
        (10.0, 0.01, 0.2),  # the 2% floor dominates
        (-10.0, 0.01, 0.2),  # ... of |mean|
        (0.0, 0.0, 1e-6),  # the absolute floor
        (5.0, None, 0.5),  # one seed: 10% of |mean|
        (-5.0, None, 0.5),
        (0.0, None, 1e-6),  # one seed at zero: the absolute floor
    ],
)
def test_tolerance_is_the_documented_rule(mean, std, tol):
    assert check.tolerance(mean, std) == pytest.approx(tol, rel=1e-12, abs=0)


def ref_row(metrics: dict, std: float = 0.0, **ident) -> dict:
    row = {"label": "a", "method": "creswell", "dataset": "digits", "generator": "dcgan"}
    row |= {"space": "z", "setting": "s1", "method_flavor": {}, **ident}
    row["metrics"] = {m: {"mean": v, "std": std, "flavor": None} for m, v in metrics.items()}
    return row


def statuses(
    ref_metrics: dict, fresh_metrics: dict, ref_std: float = 0.0, **fresh_ident
) -> dict[str, str]:
    ref = {"rows": [ref_row(ref_metrics, ref_std)]}
    fresh = {"rows": [ref_row(fresh_metrics, **fresh_ident)]}
    return {f.metric: f.status for f in check.compare(ref, fresh)}


def test_worse_follows_each_metrics_direction():
    # 2% of 1.0 is the tolerance (std 0): 1.05 is worse for mse (lower is better) and better for
    # ssim and psnr (higher is better); 0.95 the other way round.
    up = statuses({"mse": 1.0, "ssim": 1.0, "psnr": 1.0}, {"mse": 1.05, "ssim": 1.05, "psnr": 1.05})
    assert up == {"mse": "REGRESSION", "ssim": "improved", "psnr": "improved"}
    down = statuses(
        {"mse": 1.0, "ssim": 1.0, "psnr": 1.0}, {"mse": 0.95, "ssim": 0.95, "psnr": 0.95}
    )
    assert down == {"mse": "improved", "ssim": "REGRESSION", "psnr": "REGRESSION"}


def test_inside_the_tolerance_is_ok_and_its_edge_is_not_a_regression():
    assert statuses({"mse": 1.0}, {"mse": 1.019}) == {"mse": "ok"}
    assert statuses({"mse": 1.0}, {"mse": 1.021}) == {"mse": "REGRESSION"}
    assert statuses({"ssim": 1.0}, {"ssim": 0.981}) == {"ssim": "ok"}
    # At the edge (binary-exact numbers: std 0.25, tol 0.75): worse > tol fails, == passes.
    ref = {"mse": 1.0, "ssim": 1.0}
    assert statuses(ref, {"mse": 1.75, "ssim": 0.25}, 0.25) == {"mse": "ok", "ssim": "ok"}
    assert statuses(ref, {"mse": 1.875, "ssim": 0.125}, 0.25) == {
        "mse": "REGRESSION",
        "ssim": "REGRESSION",
    }


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "0.5", None, True])
def test_a_fresh_value_that_is_not_a_finite_number_fails(bad):
    ref = {"rows": [ref_row({"mse": 1.0})]}
    fresh = {"rows": [ref_row({"mse": 1.0})]}
    fresh["rows"][0]["metrics"]["mse"]["mean"] = bad
    (f,) = check.compare(ref, fresh)
    assert f.status == "REGRESSION"
    ok, text = check.report([f])
    assert not ok and "1 failed" in text


def test_rows_of_another_precision_flavor_or_setting_are_never_compared():
    assert statuses({"mse": 1.0}, {"mse": 1.0}, precision="bf16") == {"*": "MISSING"}
    assert statuses({"mse": 1.0}, {"mse": 1.0}, setting="s2") == {"*": "MISSING"}
    assert statuses({"mse": 1.0}, {"mse": 9.0}, method_flavor={"perceptual": "vgg"}) == {
        "*": "not compared"
    }
    ref, fresh = {"rows": [ref_row({"fid_rand": 1.0})]}, {"rows": [ref_row({"fid_rand": 9.0})]}
    fresh["rows"][0]["metrics"]["fid_rand"]["flavor"] = "inception/N=10"
    assert [f.status for f in check.compare(ref, fresh)] == ["not compared"]


def test_wall_clock_is_not_gated_and_a_gate_that_compares_nothing_fails():
    found = check.compare(
        {"rows": [ref_row({"sec_per_image": 1.0})]}, {"rows": [ref_row({"sec_per_image": 50.0})]}
    )
    assert [f.status for f in found] == ["not compared"]
    ok, text = check.report(found)
    assert not ok and "compares nothing" in text


def test_a_missing_metric_fails_the_gate():
    found = check.compare(
        {"rows": [ref_row({"mse": 1.0, "ssim": 0.5})]}, {"rows": [ref_row({"mse": 1.0})]}
    )
    assert {f.metric: f.status for f in found} == {"mse": "ok", "ssim": "MISSING"}
    assert check.report(found)[0] is False


def test_numbers_of_one_flavor_are_compared_and_rows_are_named():
    """A shared flavor is compared (only a differing one is not); a row without a label is named
    by its method."""
    ref, fresh = {"rows": [ref_row({"fid_rand": 1.0})]}, {"rows": [ref_row({"fid_rand": 9.0})]}
    for side in (ref, fresh):
        side["rows"][0]["metrics"]["fid_rand"]["flavor"] = "lenet-digits/N=148/ref=train"
        del side["rows"][0]["label"]
    (f,) = check.compare(ref, fresh)
    assert (f.row, f.metric, f.status) == ("creswell", "fid_rand", "REGRESSION")


# -- the reference, in process (validate_reference / load_reference / gate) ----------------------
def good_reference() -> dict:
    row = ref_row({"mse": 0.5, "ssim": 0.5})
    row |= {"precision": "fp32", "profile": "digits"}
    return {"format": "invbench-reference/1", "suite": "smoke", "rows": [row]}


def _set(ref: dict, path: str, value) -> dict:
    """``path`` like 'rows.0.metrics.mse.mean'; a value of ``_DEL`` deletes the key."""
    *head, last = path.split(".")
    node = ref
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if value is _DEL:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return ref


_DEL = object()


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("rows", {"a": 1}, "rows must be a list"),
        ("rows.0", ["mse"], "rows[0] must be a mapping"),
        ("rows.0.method", _DEL, "rows[0].method is missing or not a string"),
        ("rows.0.space", 3, "rows[0].space is missing or not a string"),
        ("rows.0.precision", 16, "rows[0].precision is missing or not a string"),
        ("rows.0.method_flavor", "vgg", "rows[0].method_flavor must be a mapping"),
        ("rows.0.metrics", [0.5], "rows[0].metrics must be a mapping"),
        ("rows.0.metrics.mse", 0.5, "rows[0].metrics.mse must be a mapping"),
        ("rows.0.metrics.mse.mean", _DEL, "rows[0].metrics.mse.mean is missing"),
        ("rows.0.metrics.mse.mean", "0.5", "rows[0].metrics.mse.mean is '0.5', not a number"),
        ("rows.0.metrics.mse.mean", True, "rows[0].metrics.mse.mean is True, not a number"),
        ("rows.0.metrics.mse.mean", math.nan, "rows[0].metrics.mse.mean is nan, not finite"),
        ("rows.0.metrics.ssim.mean", -math.inf, "rows[0].metrics.ssim.mean is -inf, not finite"),
        ("rows.0.metrics.mse.std", -0.1, "rows[0].metrics.mse.std is -0.1, not a finite"),
        ("rows.0.metrics.mse.std", math.inf, "rows[0].metrics.mse.std is inf, not a finite"),
        ("rows.0.metrics.mse.std", "0", "rows[0].metrics.mse.std is '0', not a finite"),
        ("rows.0.metrics.mse.flavor", 3, "rows[0].metrics.mse.flavor is 3, not a string"),
    ],
)
def test_a_malformed_or_non_finite_reference_is_refused_naming_its_key(path, value, named):
    ref = _set(good_reference(), path, value)
    with pytest.raises(check.UsageError) as e:
        check.validate_reference(ref, "ref.json")
    assert named in str(e.value) and "reference ref.json" in str(e.value)
    assert "A gate cannot pass on it" in str(e.value)


def test_a_well_formed_reference_is_accepted_as_it_is():
    ref = good_reference()
    assert check.validate_reference(ref, "ref.json") is ref
    # references written before precision / profile existed default to fp32 / digits; a null
    # std (one seed) and a null flavor are well formed
    for k in ("precision", "profile"):
        del ref["rows"][0][k]
    ref["rows"][0]["metrics"]["mse"] |= {"std": None, "flavor": None}
    ref["rows"][0]["metrics"]["ssim"]["std"] = 0
    assert check.validate_reference(ref, "ref.json") is ref


@pytest.mark.parametrize("doc", [[], "x", {"rows": []}, {"format": "invbench-reference/2"}])
def test_something_that_is_not_a_reference_is_named_as_such(doc):
    with pytest.raises(check.UsageError, match="'r.json' is not an invbench reference"):
        check.validate_reference(doc, "r.json")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (None, "not found"),
        (b"\xff\xfe{}", "cannot be read as UTF-8"),
        (b'{"rows": [', "is not valid JSON"),
        (b'{"format": "invbench-reference/1", "rows": [], "x": NaN}', "holds NaN"),
        (b'{"format": "invbench-reference/1", "rows": [], "x": Infinity}', "holds Infinity"),
        (b'{"format": "invbench-reference/1", "rows": [], "x": -Infinity}', "holds -Infinity"),
    ],
)
def test_load_reference_refuses_unreadable_files_naming_them(tmp_path, text, named):
    path = tmp_path / "ref.json"
    if text is not None:
        path.write_bytes(text)
    with pytest.raises(check.UsageError) as e:
        check.load_reference(path)
    assert named in str(e.value) and str(path) in str(e.value)


def test_load_reference_reads_a_valid_file(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(good_reference()), encoding="utf-8")
    assert check.load_reference(path) == good_reference()


LEADERBOARDS = Path(__file__).resolve().parents[1] / "leaderboards"


def test_the_gate_in_process_passes_on_its_own_records_and_fails_on_a_worse_twin(tmp_path):
    """The committed smoke reference was rendered from the committed smoke records: gated against
    them every metric is Δ 0 (an invariance). Shifting the reference by more than the tolerance in
    each metric's better direction makes the same records a regression, in both directions of
    'better'."""
    ref_path = LEADERBOARDS / "smoke.json"
    records = LEADERBOARDS / "records" / "smoke"
    passed, text = check.gate(ref_path, records)
    assert passed, text
    assert "0 failed" in text and "REGRESSION" not in text

    ref = json.loads(ref_path.read_text(encoding="utf-8"))
    row = ref["rows"][0]
    for m, sign in (("mse", -1), ("psnr", +1)):  # mse lower is better, psnr higher is better
        e = row["metrics"][m]
        e["mean"] += sign * 2 * check.tolerance(e["mean"], e["std"])
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps(ref), encoding="utf-8")
    passed, text = check.gate(shifted, records)
    assert not passed
    bad = set(re.findall(r" (\w+)\s+[↑↓] REGRESSION ", text))
    assert bad == {"mse", "psnr"}, text


def test_the_gate_reads_the_suites_default_results_folder_and_a_suiteless_reference(
    tmp_path, monkeypatch
):
    """Without --results the gate reads results/suites/<the reference's suite> under the current
    folder; a reference that names no suite is compared with the records of --results directly
    (Δ 0 again), and without --results it is refused naming the fix."""
    ref = json.loads((LEADERBOARDS / "smoke.json").read_text(encoding="utf-8"))
    records = tmp_path / "results" / "suites" / "smoke"
    records.mkdir(parents=True)
    for f in (LEADERBOARDS / "records" / "smoke").glob("*.json"):
        (records / f.name).write_bytes(f.read_bytes())
    monkeypatch.chdir(tmp_path)
    passed, text = check.gate(LEADERBOARDS / "smoke.json")
    assert passed and "0 failed" in text, text

    del ref["suite"]
    suiteless = tmp_path / "suiteless.json"
    suiteless.write_text(json.dumps(ref), encoding="utf-8")
    passed, text = check.gate(suiteless, records)
    assert passed and "0 failed" in text, text
    with pytest.raises(check.UsageError, match="names no suite; pass --results DIR"):
        check.gate(suiteless)
    (records.parent / "empty").mkdir()
    with pytest.raises(check.UsageError, match="no result records found"):
        check.gate(suiteless, records.parent / "empty")


def test_a_non_finite_constant_is_refused_with_the_way_to_regenerate(tmp_path):
    path = tmp_path / "ref.json"
    path.write_bytes(b'{"format": "invbench-reference/1", "rows": [], "x": NaN}')
    with pytest.raises(check.UsageError) as e:
        check.load_reference(path)
    assert str(e.value) == (
        f"reference {path}: holds NaN, not a finite number; a gate cannot pass on it. "
        "Regenerate it with `invbench table --suite NAME --format json -o FILE`."
    )


def test_every_reference_row_is_compared_after_a_missing_or_uncomparable_one():
    """A MISSING or 'not compared' row does not end the comparison: a regression in a later row
    still fails the gate."""
    ref = {
        "rows": [
            ref_row({"mse": 1.0}, label="gone", setting="s9"),
            ref_row({"mse": 1.0}, label="other flavor", method_flavor={"perceptual": "vgg"}),
            ref_row({"mse": 1.0}, label="worse", space="w"),
        ]
    }
    fresh = {
        "rows": [
            ref_row({"mse": 1.0}, label="other flavor", method_flavor={"perceptual": "lenet"}),
            ref_row({"mse": 2.0}, label="worse", space="w"),
        ]
    }
    found = [(f.row, f.metric, f.status) for f in check.compare(ref, fresh)]
    assert found == [
        ("gone", "*", "MISSING"),
        ("other flavor", "*", "not compared"),
        ("worse", "mse", "REGRESSION"),
    ]
    (missing, flavor, _) = check.compare(ref, fresh)
    assert "no fresh result with" in missing.detail and "setting=s9" in missing.detail
    assert "precision=fp32" in missing.detail  # the default of a row written before precision
    assert flavor.detail == "method flavor {'perceptual': 'lenet'} != {'perceptual': 'vgg'}"


def test_rows_with_one_method_flavor_are_compared():
    same = {"perceptual": "vgg16-conv4_3"}
    found = check.compare(
        {"rows": [ref_row({"mse": 1.0}, method_flavor=same)]},
        {"rows": [ref_row({"mse": 1.5}, method_flavor=dict(same))]},
    )
    assert [(f.metric, f.status) for f in found] == [("mse", "REGRESSION")]


def test_a_reference_written_before_precision_and_profile_matches_fp32_digits_rows():
    old = ref_row({"mse": 1.0})  # no precision / profile keys: fp32 and digits
    fresh = ref_row({"mse": 1.0}, precision="fp32", profile="digits")
    found = check.compare({"rows": [old]}, {"rows": [fresh]})
    assert [(f.metric, f.status) for f in found] == [("mse", "ok")]
    bf16 = ref_row({"mse": 1.0}, precision="bf16", profile="digits")
    assert [f.status for f in check.compare({"rows": [old]}, {"rows": [bf16]})] == ["MISSING"]


def test_one_comparison_within_tolerance_passes_and_each_line_carries_its_mark():
    ok, text = check.report([check.Finding("a", "mse", "ok", "1 -> 1")])
    assert ok and text.splitlines()[-1] == "1 within tolerance, 0 failed, 0 not compared"
    findings = [
        check.Finding("a", "mse", "ok", "d"),
        check.Finding("a", "ssim", "improved", "d"),
        check.Finding("a", "sec_per_image", "not compared", "d"),
        check.Finding("a", "psnr", "REGRESSION", "d"),
        check.Finding("b", "*", "MISSING", "d"),
    ]
    ok, text = check.report(findings)
    marks = [ln[0] for ln in text.splitlines()[:5]]
    assert not ok and marks == [" ", "+", "~", "!", "!"]
    assert " mse              ↓ ok" in text and " ssim             ↑ improved" in text
    assert "b                            *                MISSING" in text
    assert text.splitlines()[-1] == "2 within tolerance, 2 failed, 1 not compared"


def test_a_reference_holds_each_rows_seed_mean_std_count_and_flavors(tmp_path):
    """The reference the gate compares against, rendered from committed records, against numpy:
    per row (one setting) the mean and the sample standard deviation (ddof 1) over its seeds, the
    seed count, each metric's flavor and the method's flavors; one seed gives std None (the
    single-seed tolerance)."""
    import numpy as np

    from invbench import suites
    from invbench.record import load_records
    from invbench.tables import render_suite

    src = LEADERBOARDS / "records" / "invgan-table1"
    suite = suites.load("invgan-table1")
    ref = json.loads(render_suite(suite, src, "json"))
    by_setting: dict[str, list] = {}
    for rec in load_records(src):
        by_setting.setdefault(rec.setting, []).append(rec)
    assert sorted(r["setting"] for r in ref["rows"]) == sorted(by_setting)
    for row in ref["rows"]:
        recs = by_setting[row["setting"]]
        assert row["seeds"] == len(recs) == 3
        assert row["method_flavor"] == {
            k: v for k, v in recs[0].metric_flavors.items() if k.startswith("method.")
        }
        assert {"fid_rand", "mae", "sec_per_image"} <= set(row["metrics"])  # the table's columns
        for m, entry in row["metrics"].items():
            vals = np.array([r.metrics[m] for r in recs], dtype=float)
            assert entry["mean"] == pytest.approx(vals.mean(), rel=1e-9), m
            assert entry["std"] == pytest.approx(vals.std(ddof=1), rel=1e-9, abs=1e-15), m
            assert entry["flavor"] == recs[0].metric_flavors.get(m), m

    one = tmp_path / "one"
    one.mkdir()
    for f in src.glob("*__s0__*.json"):
        (one / f.name).write_bytes(f.read_bytes())
    single = json.loads(render_suite(suite, one, "json"))
    assert [r["seeds"] for r in single["rows"]] == [1, 1]
    assert all(e["std"] is None for r in single["rows"] for e in r["metrics"].values())


def test_a_metric_the_registry_does_not_know_is_not_compared_and_named():
    (f,) = check.compare({"rows": [ref_row({"nope": 1.0})]}, {"rows": [ref_row({"nope": 9.0})]})
    assert (f.row, f.metric, f.status) == ("a", "nope", "not compared")
    assert f.detail.endswith("; no registered metric of that name")


def test_an_improvement_exactly_at_the_tolerance_is_ok_and_beyond_it_improved():
    ref = {"mse": 1.0, "ssim": 1.0}  # std 0.25: tol 0.75, binary-exact
    assert statuses(ref, {"mse": 0.25, "ssim": 1.75}, 0.25) == {"mse": "ok", "ssim": "ok"}
    assert statuses(ref, {"mse": 0.125, "ssim": 1.875}, 0.25) == {
        "mse": "improved",
        "ssim": "improved",
    }


def test_a_row_without_precision_still_has_its_later_keys_checked():
    ref = good_reference()
    del ref["rows"][0]["precision"]
    ref["rows"][0]["setting"] = 3
    with pytest.raises(check.UsageError, match=r"rows\[0\]\.setting is missing or not a string"):
        check.validate_reference(ref, "ref.json")


def test_load_reference_names_the_file_of_a_malformed_reference(tmp_path):
    path = tmp_path / "ref.json"
    ref = good_reference()
    ref["rows"][0]["metrics"]["mse"]["mean"] = "x"
    path.write_text(json.dumps(ref), encoding="utf-8")
    with pytest.raises(check.UsageError, match=f"reference {re.escape(str(path))}: rows"):
        check.load_reference(path)


def test_the_gate_stops_on_an_invalid_record_naming_it(tmp_path):
    """An invalid record among the gate's inputs stops it (exit 2) naming the file; it is never
    skipped as `table` does."""
    from invbench.record import InvalidRecord

    records = tmp_path / "smoke"
    records.mkdir()
    for f in (LEADERBOARDS / "records" / "smoke").glob("*.json"):
        (records / f.name).write_bytes(f.read_bytes())
    victim = sorted(records.glob("*.json"))[0]
    victim.write_text(victim.read_text(encoding="utf-8")[:200], encoding="utf-8")  # truncated
    for ref in (LEADERBOARDS / "smoke.json", None):
        if ref is None:
            doc = json.loads((LEADERBOARDS / "smoke.json").read_text(encoding="utf-8"))
            del doc["suite"]
            ref = tmp_path / "suiteless.json"
            ref.write_text(json.dumps(doc), encoding="utf-8")
        with pytest.raises(InvalidRecord) as e:  # a DataError: the CLI exits 2
            check.gate(ref, records)
        assert victim.name in str(e.value)


def test_a_row_without_one_metric_keeps_the_metrics_after_it_in_the_reference():
    """creswell-models' train rows have no fid_rand (no tracks on train images): in a reference
    of [fid_rand, mse] those rows still carry mse, equal to numpy's mean over their records."""
    import numpy as np

    from invbench.record import load_records
    from invbench.tables import render

    recs = load_records(LEADERBOARDS / "records" / "creswell-models")
    ref = json.loads(render(recs, "json", metrics=["fid_rand", "mse"]))
    lacking = [r for r in ref["rows"] if "fid_rand" not in r["metrics"]]
    assert len(lacking) == 3 and len(ref["rows"]) == 6
    for row in ref["rows"]:
        vals = np.array([r.metrics["mse"] for r in recs if r.setting == row["setting"]])
        assert row["metrics"]["mse"]["mean"] == pytest.approx(vals.mean(), rel=1e-9)
