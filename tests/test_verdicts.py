"""Claim verdicts (design card, issue #17 item 6): HELD / DID NOT HOLD / INCONCLUSIVE / INVALID,
judged from per-seed values against two standard errors computed here by hand (numpy), paired
when the rows share each seed's model. Every metric's direction is taken into account: a claim
that "a is better" on a higher-is-better metric (psnr, ssim) holds when a is *higher*."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from invbench import suites
from invbench.record import InvalidRecord, Record
from invbench.suites import HELD, INCONCLUSIVE, INVALID, NOT_HELD, NOT_MEASURED, Claim, Row
from invbench.tables import render_suite


def record(seed: int, metrics: dict, provenance: dict | None = None, **config) -> Record:
    """A validated record (``Record.from_dict``, as read from disk) of seed ``seed``."""
    return Record.from_dict(
        {"method": "creswell", "dataset": "digits", "generator": "dcgan", "seed": seed,
         "metrics": metrics, "config": {"method": {"name": "creswell", **config}, "seed": seed},
         "provenance": provenance or {}}
    )  # fmt: skip


def row(label: str, metric: str, values: list, gens=None, **extra) -> Row:
    """A row whose seed s has ``values[s]`` (and ``extra[m][s]``); ``gens[s]`` its generator."""
    recs = {}
    for s, v in enumerate(values):
        metrics = {metric: v, **{m: vs[s] for m, vs in extra.items()}}
        recs[s] = record(s, metrics, {"generator_key": None if gens is None else gens[s]})
    return Row(label, recs)


def suite_of(*labels: str, valid_if=None) -> suites.Suite:
    runs = [suites.SuiteRun(method="creswell", label=lab) for lab in labels]
    return suites.Suite("t", None, "", [0, 1, 2], runs, None, [], [], valid_if=valid_if or {})


def judge(claim: Claim, *rows: Row, valid_if=None) -> suites.Verdict:
    s = suite_of(*(r.label for r in rows), valid_if=valid_if)
    return suites.judge(s, claim, {r.label: r for r in rows})


def two_se_unpaired(a: list[float], b: list[float]) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return 2 * math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))


def two_se_paired(a: list[float], b: list[float]) -> float:
    d = np.asarray(a) - np.asarray(b)
    return 2 * d.std(ddof=1) / math.sqrt(len(d))


# -- direction ------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["psnr", "ssim", "class_share_min"])
def test_higher_is_better_metrics_hold_when_the_better_row_is_higher(metric):
    hi, lo = [0.90, 0.91, 0.92], [0.50, 0.52, 0.51]
    c = Claim(metric=metric, better="a", worse="b")
    assert judge(c, row("a", metric, hi), row("b", metric, lo)).verdict == HELD
    assert judge(c, row("a", metric, lo), row("b", metric, hi)).verdict == NOT_HELD


@pytest.mark.parametrize("metric", ["mse", "lpips", "fid_rand", "swd", "sec_per_image"])
def test_lower_is_better_metrics_hold_when_the_better_row_is_lower(metric):
    hi, lo = [0.90, 0.91, 0.92], [0.50, 0.52, 0.51]
    c = Claim(metric=metric, better="a", worse="b")
    assert judge(c, row("a", metric, lo), row("b", metric, hi)).verdict == HELD
    assert judge(c, row("a", metric, hi), row("b", metric, lo)).verdict == NOT_HELD


# -- noise: two standard errors, unpaired and paired ----------------------------------------------
def test_unpaired_gap_against_two_standard_errors():
    a, b = [10.0, 12.0, 14.0], [13.0, 15.0, 17.0]  # gap 3, 2 s.e. = 2 sqrt(8/3) = 3.27
    assert 3 < two_se_unpaired(a, b) < 3.3
    c = Claim(metric="fid_rand", better="a", worse="b")
    v = judge(c, row("a", "fid_rand", a), row("b", "fid_rand", b))
    assert v.verdict == INCONCLUSIVE and "unpaired" in v.detail and "within 2 s.e." in v.detail
    b = [14.0, 16.0, 18.0]  # gap 4 > 3.27
    assert judge(c, row("a", "fid_rand", a), row("b", "fid_rand", b)).verdict == HELD
    # the same noise the other way round
    assert judge(c, row("a", "fid_rand", b), row("b", "fid_rand", a)).verdict == NOT_HELD


def test_rows_sharing_each_seeds_generator_are_paired():
    # Each seed's generator moves both rows alike: unpaired, the spread (s.d. 10) hides a gap
    # of 1; paired, every seed shows it (differences 0.9, 1.0, 1.1).
    a = [10.0, 20.0, 30.0]
    b = [10.9, 21.0, 31.1]
    gap = float(np.mean(b) - np.mean(a))
    assert two_se_paired(b, a) < gap < two_se_unpaired(a, b)
    c = Claim(metric="mse", better="a", worse="b")
    shared = ["g0", "g1", "g2"]
    v = judge(c, row("a", "mse", a, shared), row("b", "mse", b, shared))
    assert v.verdict == HELD and "paired over 3 seeds" in v.detail
    own = judge(c, row("a", "mse", a, ["x0", "x1", "x2"]), row("b", "mse", b, shared))
    assert own.verdict == INCONCLUSIVE and "unpaired" in own.detail
    none = judge(c, row("a", "mse", a), row("b", "mse", b))  # a method's own generator
    assert none.verdict == INCONCLUSIVE
    declared = Claim(metric="mse", better="a", worse="b", paired=True)  # e.g. one LIA training
    assert judge(declared, row("a", "mse", a), row("b", "mse", b)).verdict == HELD
    forced = Claim(metric="mse", better="a", worse="b", paired=False)
    assert judge(forced, row("a", "mse", a, shared), row("b", "mse", b, shared)).verdict == (
        INCONCLUSIVE
    )


def test_paired_verdict_at_the_two_standard_error_edge():
    a = [1.0, 2.0, 3.0]
    d = np.array([0.5, 1.5, 1.0])  # mean 1.0, 2 s.e. = 2 * 0.5 / sqrt(3) = 0.577
    c = Claim(metric="mse", better="a", worse="b", paired=True)
    assert judge(c, row("a", "mse", a), row("b", "mse", list(a + d))).verdict == HELD
    d = np.array([-0.5, 1.5, 0.5])  # mean 0.5, 2 s.e. = 2 * 1 / sqrt(3) = 1.15
    assert judge(c, row("a", "mse", a), row("b", "mse", list(a + d))).verdict == INCONCLUSIVE
    assert judge(c, row("a", "mse", list(a + d)), row("b", "mse", a)).verdict == INCONCLUSIVE
    d = np.array([-1.0, -1.1, -0.9])
    assert judge(c, row("a", "mse", a), row("b", "mse", list(a + d))).verdict == NOT_HELD


def test_a_single_seed_is_inconclusive_however_large_the_gap():
    c = Claim(metric="mse", better="a", worse="b")
    v = judge(c, row("a", "mse", [0.01]), row("b", "mse", [0.5]))
    assert v.verdict == INCONCLUSIVE and "single seed" in v.detail
    b = Claim(metric="gen_train_seconds", row="a", at_most=300)
    assert judge(b, row("a", "gen_train_seconds", [60.0])).verdict == INCONCLUSIVE


def test_equal_rows_are_inconclusive():
    c = Claim(metric="mse", better="a", worse="b", paired=True)
    same = [0.1, 0.2, 0.3]
    assert judge(c, row("a", "mse", same), row("b", "mse", same)).verdict == INCONCLUSIVE


# -- factor and bound claims ----------------------------------------------------------------------
def test_factor_relaxes_the_ordering_in_the_metrics_direction():
    # "InvGAN's fid_rand is within 1.5x of the plain GAN's": a <= 1.5 b (lower is better).
    c = Claim(metric="fid_rand", better="a", worse="b", factor=1.5)
    b = [10.0, 10.5, 9.5]
    assert judge(c, row("a", "fid_rand", [12.0, 12.5, 11.5]), row("b", "fid_rand", b)).verdict == (
        HELD  # 12 <= 15 by far more than the noise
    )
    assert judge(c, row("a", "fid_rand", [20.0, 20.5, 19.5]), row("b", "fid_rand", b)).verdict == (
        NOT_HELD  # 20 > 15
    )
    # higher is better: a >= b / 1.5
    c = Claim(metric="ssim", better="a", worse="b", factor=1.5)
    b = [0.90, 0.91, 0.89]
    assert judge(c, row("a", "ssim", [0.70, 0.71, 0.69]), row("b", "ssim", b)).verdict == HELD
    assert judge(c, row("a", "ssim", [0.50, 0.51, 0.49]), row("b", "ssim", b)).verdict == NOT_HELD


def test_bound_claims_against_the_standard_error_of_the_mean():
    v = [0.08, 0.09, 0.10]  # mean 0.09, 2 s.e. = 2 * 0.01 / sqrt(3) = 0.0115
    assert judge(Claim("class_share_min", row="a", at_least=0.04), row("a", "class_share_min", v))\
        .verdict == HELD  # fmt: skip
    assert judge(Claim("class_share_min", row="a", at_least=0.085), row("a", "class_share_min", v))\
        .verdict == INCONCLUSIVE  # fmt: skip
    assert judge(Claim("class_share_min", row="a", at_least=0.2), row("a", "class_share_min", v))\
        .verdict == NOT_HELD  # fmt: skip
    both = Claim("class_share_min", row="a", at_least=0.0, at_most=0.095)  # the nearer end
    assert judge(both, row("a", "class_share_min", v)).verdict == INCONCLUSIVE
    assert judge(Claim("mse", row="a", at_most=0.05), row("a", "mse", v)).verdict == NOT_HELD
    line = judge(Claim("class_share_min", "every class", row="a", at_least=0.04), row(
        "a", "class_share_min", v)).line()  # fmt: skip
    assert line == (
        "every class: HELD (class_share_min: a 0.09, bound >= 0.04; gap 0.05 > 2 s.e. = 0.0115,"
        " 3 seeds)"
    )
    line = judge(Claim("mse", row="a", at_least=0.0, at_most=0.2), row("a", "mse", [0.1])).line()
    assert line == "mse: INCONCLUSIVE (mse: a 0.1, bound >= 0 and <= 0.2; gap 0.1; a single seed: "\
        "no noise estimate)"  # fmt: skip
    missing = judge(Claim("ssim", row="a", at_least=0.5), row("a", "mse", v))
    assert missing.verdict == NOT_MEASURED and missing.line() == (
        "ssim: NOT MEASURED (ssim missing for 'a')"
    )


# -- validity: a collapsed row makes claims against it INVALID -------------------------------------
def test_a_collapsed_row_makes_its_claims_invalid_but_its_own_bound_is_judged():
    valid = {"class_share_max": suites.Bound(at_most=0.5)}
    good = row("lia", "mse", [0.01, 0.011, 0.012], class_share_max=[0.12, 0.13, 0.11])
    bad = row("vae", "mse", [0.5, 0.6, 0.55], class_share_max=[0.12, 0.95, 0.14])
    c = Claim(metric="mse", better="lia", worse="vae")
    v = judge(c, good, bad, valid_if=valid)
    assert v.verdict == INVALID and "'vae' FAILED: seed 1: class_share_max 0.95" in v.detail
    assert judge(c, good, bad).verdict == HELD  # without the rule the numbers alone would "hold"
    own = Claim(metric="class_share_max", row="vae", at_most=0.2)
    assert judge(own, good, bad, valid_if=valid).verdict == INCONCLUSIVE  # judged, not INVALID
    other = Claim(metric="mse", row="vae", at_most=1.0)
    assert judge(other, good, bad, valid_if=valid).verdict == INVALID
    edge = row("vae", "mse", [0.5, 0.6, 0.55], class_share_max=[0.5, 0.5, 0.5])  # inclusive
    assert judge(c, good, edge, valid_if=valid).verdict == HELD
    low = {"class_share_min": suites.Bound(at_least=0.04)}  # and at the lower end too
    edge = row("vae", "mse", [0.5, 0.6, 0.55], class_share_min=[0.04, 0.04, 0.039])
    v = judge(c, good, edge, valid_if=low)
    assert v.verdict == INVALID and v.detail == (
        "row 'vae' FAILED: seed 2: class_share_min 0.039, valid >= 0.04"
    )


def test_missing_and_malformed_values_are_not_measured_never_averaged():
    c = Claim(metric="mse", better="a", worse="b")
    v = judge(c, row("a", "mse", [None, None, None]), row("b", "mse", [0.5, 0.6, 0.7]))
    assert v.verdict == NOT_MEASURED and "'a'" in v.detail
    mixed = row("a", "mse", [0.01, None, 0.012])  # an unavailable value is skipped
    assert mixed.values("mse") == {0: 0.01, 2: 0.012}
    for bad in ("0.01", float("nan"), True):  # never a value: the whole record is refused
        with pytest.raises(InvalidRecord, match="metric 'mse'"):
            row("a", "mse", [bad])


# -- end to end: records on disk, the table's notes ------------------------------------------------
def test_report_reads_each_cells_record_and_flags_failed_rows(tmp_path, capfd):
    path = tmp_path / "s.yaml"
    path.write_text(
        "seeds: [0, 1, 2]\n"
        "valid_if: {class_share_max: {at_most: 0.5}}\n"
        "runs:\n"
        "  - {label: a, method: creswell, sets: [steps=1]}\n"
        "  - {label: b, method: creswell, sets: [steps=2]}\n"
        "  - {label: c, method: creswell, sets: [steps=3]}\n"
        "claims:\n"
        "  - {text: 'a beats b', better: a, worse: b, metric: psnr}\n"
        "  - {text: 'a beats c', better: a, worse: c, metric: psnr}\n"
        "  - {text: 'c beats a', better: c, worse: a, metric: mse}\n"
    )
    suite = suites.load(str(path))
    out = tmp_path / "r"
    out.mkdir()
    psnr = {"a": [30.0, 31.0, 32.0], "b": [20.0, 21.0, 22.0], "c": [10.0, 11.0, 12.0]}
    for run, seed, _spec, rec_path in suites.cells(suite, out):
        share = 0.9 if run.label == "c" and seed > 0 else 0.1
        metrics = {"psnr": psnr[run.label][seed], "class_share_max": share}
        record(seed, metrics, steps=run.sets[0]).write(rec_path)
    a_cell = next(p for r, s, _, p in suites.cells(suite, out) if (r.label, s) == ("a", 0))
    a_cell.write_text('{"metrics": {"psnr": 3')  # truncated: not measured, never a crash
    b0, c0 = (p for r, s, _, p in suites.cells(suite, out) if s == 0 and r.label in "bc")
    b0.write_text("[1, 2]")  # JSON, but not a record
    c0.write_text(json.dumps({**json.loads(c0.read_text()), "metrics": "none"}))
    lines = suites.report(suite, out)
    # The table that prints these lines names each skipped file (the one record reader's
    # warning) and shows the verdicts under it.
    table = render_suite(suite, out, "md")
    err = capfd.readouterr().err
    assert f"skipping {a_cell}: not a valid invbench record (not JSON, or truncated" in err
    assert f"skipping {b0}: not a valid invbench record (a JSON list, not an object)" in err
    assert f"skipping {c0}: not a valid invbench record ('metrics' must be a mapping)" in err
    assert all(f"- {line}" in table for line in lines)
    assert lines[0] == (
        "FAILED — c: seed 1: class_share_max 0.9, valid <= 0.5; seed 2: class_share_max 0.9, "
        "valid <= 0.5 (claims involving it are INVALID)"
    )
    assert lines[1].startswith("Claim — a beats b: HELD (psnr ↑: a 31.5 vs b 21.5; ")
    assert lines[2].startswith("Claim — a beats c: INVALID (row 'c' FAILED")
    assert lines[3].startswith("Claim — c beats a: INVALID")
    assert [v.verdict for v in suites.verdicts(suite, out)] == [HELD, INVALID, INVALID]


def test_names_lists_the_shipped_suites():
    d = suites.suite_dir()
    assert d.name == "suites" and (d / "smoke.yaml").is_file()
    assert {"smoke", "zoo", "lia-table3", "methods"} <= set(suites.names())
    assert suites.names() == sorted(p.stem for p in d.glob("*.yaml"))


def test_pair_lines_and_the_unpaired_standard_error_of_a_factor():
    a, b = [10.0, 12.0, 14.0], [14.0, 16.0, 18.0]
    c = Claim(metric="fid_rand", text="a below b", better="a", worse="b")
    line = judge(c, row("a", "fid_rand", a), row("b", "fid_rand", b)).line()
    assert line == (
        "a below b: HELD (fid_rand ↓: a 12 vs b 16; gap 4 > 2 s.e. = 3.27, unpaired, 3 and 3 seeds)"
    )
    shared = ["g0", "g1", "g2"]
    line = judge(Claim("psnr", better="a", worse="b"), row("a", "psnr", b, shared),
                 row("b", "psnr", a, shared)).line()  # fmt: skip
    assert line == "psnr: HELD (psnr ↑: a 16 vs b 12; gap 4 > 2 s.e. = 0, paired over 3 seeds)"
    # higher is better with factor 2: gap = mean_a - mean_b / 2, s.e. = hypot(s_a, s_b / 2)
    a, b = [0.50, 0.52, 0.54], [0.60, 0.90, 1.20]  # gap 0.07; 2 s.e. 0.18 (x 2 would be 0.35)
    v = judge(Claim("ssim", better="a", worse="b", factor=2.0), row("a", "ssim", a),
              row("b", "ssim", b))  # fmt: skip
    expected = 2 * math.hypot(np.std(a, ddof=1), np.std(b, ddof=1) / 2) / math.sqrt(3)
    assert v.verdict == INCONCLUSIVE and f"2 s.e. = {expected:.3g}," in v.detail
    assert ", bound 2x;" in v.detail
    # lower is better with factor 2: s.e. = hypot(s_a, 2 s_b)
    v = judge(Claim("mse", better="a", worse="b", factor=2.0), row("a", "mse", [1.0, 1.1, 1.2]),
              row("b", "mse", [0.60, 0.70, 0.80]))  # fmt: skip
    expected = 2 * math.hypot(0.1, 2 * 0.1) / math.sqrt(3)
    assert v.verdict == HELD and f"2 s.e. = {expected:.3g}," in v.detail  # 1.1 <= 1.4


def test_a_single_seed_row_against_several_is_inconclusive_unpaired():
    c = Claim(metric="mse", better="a", worse="b")
    v = judge(c, row("a", "mse", [0.1]), row("b", "mse", [0.5, 0.6, 0.7]))
    assert v.verdict == INCONCLUSIVE and "single seed" in v.detail
    missing = judge(c, row("a", "ssim", [0.1]), row("b", "ssim", [0.5]))
    assert missing.line() == "mse: NOT MEASURED (mse missing for 'a' and 'b')"


def test_a_recorded_model_key_pairs_rows_and_differing_seeds_do_not():
    a, b = [10.0, 20.0, 30.0], [10.9, 21.0, 31.1]
    ra, rb = row("a", "mse", a), row("b", "mse", b)
    for r in (ra, rb):  # e.g. one LIA training inverted two ways
        for s, rec in r.records.items():
            rec.provenance["model_key"] = f"lia-{s}"
    assert judge(Claim("mse", better="a", worse="b"), ra, rb).verdict == HELD
    del rb.records[2]
    v = judge(Claim("mse", better="a", worse="b", paired=True), ra, rb)
    assert v.verdict == INCONCLUSIVE and v.detail.endswith("; paired, but the rows' seeds differ")


def test_a_claim_may_set_two_quantities_against_each_other():
    # ICLR 2020 Fig. 4: the FID of GAN samples (fid_rand of the GAN row) against the FID of AE
    # reconstructions (fid_test_rec of the AE row). The AE row's own fid_rand (samples of a
    # Gaussian fitted to its codes) must not decide it: here it would say the opposite.
    gan = row("gan", "fid_rand", [30.0, 35.0, 40.0], fid_test_rec=[20.0, 21.0, 22.0])
    ae = row("ae", "fid_rand", [70.0, 75.0, 80.0], fid_test_rec=[10.0, 11.0, 12.0])
    same = judge(Claim("fid_rand", better="gan", worse="ae"), gan, ae)
    assert same.verdict == HELD  # samples vs samples
    cross = judge(Claim("fid_rand", better="gan", worse="ae", worse_metric="fid_test_rec"), gan, ae)
    # gap 11 - 35 = -24; 2 s.e. = 2 sqrt(25/3 + 1/3) = 5.9 (unpaired: the rows' models differ)
    assert 2 * math.sqrt(25 / 3 + 1 / 3) < 24
    assert cross.verdict == NOT_HELD
    assert cross.detail.startswith("fid_rand of gan 35 vs fid_test_rec of ae 11 (↓)")
    missing = judge(Claim("fid_rand", better="gan", worse="ae", worse_metric="lpips"), gan, ae)
    assert missing.verdict == NOT_MEASURED and missing.detail == "missing for lpips of 'ae'"
    # one row, two of its metrics (a row against itself is allowed when the metrics differ)
    own = judge(Claim("fid_rand", better="gan", worse="gan", worse_metric="fid_test_rec"), gan)
    assert own.verdict == NOT_HELD


def test_cells_carry_the_results_folder_and_device(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("seeds: [0, 1]\nruns: [{label: a, method: creswell}]\n")
    cells = suites.cells(suites.load(str(path)), tmp_path / "r")
    assert [(c[1], c[2].out, c[2].device, c[3].parent) for c in cells] == [
        (s, tmp_path / "r", "cpu", tmp_path / "r") for s in (0, 1)
    ]


def test_claim_shapes_and_unknown_suites(tmp_path):
    from invbench.errors import UsageError

    head = "runs: [{label: a, method: creswell}, {label: b, method: creswell}]\nclaims:\n"
    path = tmp_path / "s.yaml"
    for claim, message in [
        ("{row: a, metric: mse, at_most: 1, paired: true}", "not both"),
        ("{row: a, metric: mse, at_most: 1, factor: 2}", "not both"),
        ("{better: c, worse: a, metric: mse}", "claims[0]: better='c' is not a run label"),
        ("{better: a, worse: c, metric: mse}", "claims[0]: worse='c' is not a run label"),
        ("{row: c, metric: mse, at_most: 1}", "claims[0]: row='c' is not a run label"),
        ("{better: a, worse: a, metric: mse}", "claims[0] compares 'a' with itself"),
        ("{row: a, metric: mse, at_most: 1, worse_metric: lpips}", "not both"),
        ("{better: a, worse: b, metric: mse, worse_metric: msse}", "worse_metric: unknown metric"),
        ("{better: a, worse: b, metric: mse, worse_metric: psnr}", "opposite directions"),
    ]:
        path.write_text(head + f"  - {claim}\n")
        with pytest.raises(UsageError, match=re.escape(message)):
            suites.load(str(path))
    path.write_text(
        head + "  - {row: a, metric: recovery@0.1, at_least: 0.5, at_most: 0.5}\n"
        "valid_if: {mse: {at_least: 0.1, at_most: 0.1}}\n"
    )
    assert suites.load(str(path)).claims[0].metric == "recovery@0.1"  # equal ends are a range
    with pytest.raises(UsageError, match=r"unknown suite 'smok'. Did you mean 'smoke'\? Known"):
        suites.load("smok")
