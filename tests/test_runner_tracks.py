"""The runner's tracks: one small run reports every metric of the protocol with its flavor,
LPIPS honestly unavailable offline, and intervals for the paired metrics."""

from __future__ import annotations

import math

import pytest

from invbench.device import describe
from invbench.runner import RunSpec, run


@pytest.fixture(scope="module")
def record(tiny_dcgan, tmp_path_factory, monkeypatch_module):
    out = tmp_path_factory.mktemp("results")
    sets = [
        "generator.steps=300",  # the tiny_dcgan fixture's generator, from the cache
        "generator.batch_size=32",
        "method.steps=20",
        "eval.n_test=40",
        "eval.n_rand=64",
        "eval.n_rand_rec=24",
        "eval.fid_small_n=20",
        "eval.bootstrap=50",
        "eval.kid_subsets=10",
        "eval.feature_epochs=3",
        "eval.batch_size=32",
    ]
    return run(RunSpec(method="creswell", dataset="digits", sets=sets, out=out))


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("no_torch_weights")))
    mp.delenv("INVBENCH_WEIGHTS", raising=False)
    yield mp
    mp.undo()


def test_every_track_metric_is_reported_with_its_flavor(record) -> None:
    m, fl = record["metrics"], record["metric_flavors"]
    expected = [
        "fid_rand", "fid_rand@N=20", "fid_rand_rec", "fid_rand_rec@N=20", "fid_test_rec",
        "fid_test_rec@N=20", "fid_interp", "fid_interp@N=20", "kid_test_rec", "kid_test_rec_sd",
        "swd", "latent_mse", "recovery@0.1", "class_share_min", "class_share_max",
    ]  # fmt: skip
    for name in expected:
        assert name in m and m[name] is not None and math.isfinite(m[name]), name
        assert name in fl, name
    assert fl["fid_test_rec"] == "lenet-digits-e3/N=40/ref=train"
    assert fl["fid_test_rec@N=20"] == "lenet-digits-e3/N=20/ref=train"
    assert fl["fid_rand"] == "lenet-digits-e3/N=64/ref=train"
    assert fl["fid_rand_rec"] == "lenet-digits-e3/N=24/ref=train"
    assert fl["swd"] == "progan/levels=32,16/N=40/ref=test"
    assert fl["class_share_min"] == "lenet-digits-e3-classifier/N=64/classes=10"
    assert 0 <= m["class_share_min"] <= 0.1 <= m["class_share_max"] <= 1
    assert 0 <= m["recovery@0.01"] <= m["recovery@0.1"] <= m["recovery@0.5"] <= 1
    assert m["fid_test_rec"] > 0 and m["kid_test_rec_sd"] >= 0
    assert 0 < record["provenance"]["feature_net_test_accuracy"] <= 1


def test_lpips_is_null_with_a_message_when_alexnet_is_missing(record) -> None:
    assert record["metrics"]["lpips"] is None
    msg = record["unavailable"]["lpips"]
    assert "alexnet-owt-7be5be79.pth" in msg and "INVBENCH_WEIGHTS" in msg


def test_paired_metrics_have_bootstrap_intervals(record) -> None:
    for name in ("mse", "mae", "psnr", "ssim"):
        lo, hi = record["ci"][name]
        assert lo <= record["metrics"][name] <= hi


def test_provenance_names_the_device_and_the_batch_that_fitted(record) -> None:
    prov = record["provenance"]
    assert prov["device"] == describe("cpu")["device"] and prov["device"].startswith("cpu (")
    assert prov["invert_batch_size"] == 32  # eval.batch_size: no out-of-memory on the CPU
    assert record["metrics"]["sec_per_image"] > 0


def test_fit_gets_the_runners_dataset_fingerprint(tiny_dcgan, tmp_path, monkeypatch) -> None:
    # Methods key their domain network (perceptual losses) on it: the same key as the metric
    # tracks', so the LeNet is trained once per cache root, not once per consumer.
    import invbench.runner as runner
    from invbench.registry import DATASETS

    seen = []
    real = runner.fit_cached
    monkeypatch.setattr(
        runner, "fit_cached", lambda inv, res, ctx, *a: seen.append(ctx) or real(inv, res, ctx, *a)
    )
    sets = ["generator.steps=300", "generator.batch_size=32", "method.steps=2", "eval.n_test=4",
            "eval.tracks=false", "eval.bootstrap=10"]  # fmt: skip
    run(RunSpec(method="creswell", dataset="digits", sets=sets, out=tmp_path))
    digits = DATASETS.get("digits")(DATASETS.get("digits").Config())
    assert seen[0].extra["dataset_fp"] == digits.train_fingerprint()
