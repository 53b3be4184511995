"""The gate's decisions, in process (so `make mutation` sees them: the CLI tests of
test_records_and_gate.py run `invbench check` in a subprocess, which never loads a mutant).

Each expectation is written from the rule in check.py's docstring, not read back from the code:
tol = max(3 std, 2% |mean|, 1e-6), or 10% |mean| for a single-seed reference; "worse" follows the
metric's registered direction.
"""

from __future__ import annotations

import math

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


def ref_row(metrics: dict, **ident) -> dict:
    row = {"label": "a", "method": "creswell", "dataset": "digits", "generator": "dcgan"}
    row |= {"space": "z", "setting": "s1", "method_flavor": {}, **ident}
    row["metrics"] = {m: {"mean": v, "std": 0.0, "flavor": None} for m, v in metrics.items()}
    return row


def statuses(ref_metrics: dict, fresh_metrics: dict, **fresh_ident) -> dict[str, str]:
    ref = {"rows": [ref_row(ref_metrics)]}
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
    ref = {"rows": [ref_row({"mse": 1.0, "ssim": 1.0})]}
    for m in ("mse", "ssim"):
        ref["rows"][0]["metrics"][m]["std"] = 0.25
    edge = {"rows": [ref_row({"mse": 1.75, "ssim": 0.25})]}
    assert {f.metric: f.status for f in check.compare(ref, edge)} == {"mse": "ok", "ssim": "ok"}
    past = {"rows": [ref_row({"mse": 1.875, "ssim": 0.125})]}
    assert {f.metric: f.status for f in check.compare(ref, past)} == {
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
