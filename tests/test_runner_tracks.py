"""The runner's tracks: one small run reports every metric of the protocol with its flavor,
the Table 1 tracks at one N from disjoint interpolation pairs, LPIPS honestly unavailable
offline, intervals for the paired metrics, and the per-image scores and latents beside it."""

from __future__ import annotations

import math

import pytest
import torch

from invbench.device import describe
from invbench.runner import RunSpec, run


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def record(tiny_dcgan, results_dir, monkeypatch_module):
    out = results_dir
    sets = [
        "generator.steps=300",  # the tiny_dcgan fixture's generator, from the cache
        "generator.batch_size=32",
        "method.steps=20",
        "eval.n_test=40",
        "eval.n_rand=64",
        "eval.fid_small_n=10",
        "eval.bootstrap=50",
        "eval.kid_subsets=10",
        "eval.feature_epochs=3",
        "eval.batch_size=32",
        "eval.ppl_n=100",
    ]
    return run(RunSpec(method="creswell", dataset="digits", sets=sets, out=out, save_images=True))


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("no_torch_weights")))
    mp.delenv("INVBENCH_WEIGHTS", raising=False)
    yield mp
    mp.undo()


def test_every_track_metric_is_reported_with_its_flavor(record) -> None:
    m, fl = record.metrics, record.metric_flavors
    expected = [
        "fid_rand", "fid_rand@N=10", "fid_rand_rec", "fid_rand_rec@N=10", "fid_test_rec",
        "fid_test_rec@N=10", "fid_interp", "fid_interp@N=10", "kid_test_rec", "kid_test_rec_sd",
        "swd", "latent_mse", "recovery@0.1", "class_share_min", "class_share_max", "ppl",
        "class_acc_rec", "class_acc_orig",
    ]  # fmt: skip
    for name in expected:
        assert name in m and m[name] is not None and math.isfinite(m[name]), name
        assert name in fl, name
    # InvGAN Table 1: every FID track at one N, the largest the 40 test images allow (20
    # midpoints need 40 distinct images), and at the small N.
    for track in ("fid_test_rec", "fid_rand", "fid_rand_rec", "fid_interp"):
        assert fl[track] == "lenet-digits-e3/N=20/ref=train", track
        assert fl[f"{track}@N=10"] == "lenet-digits-e3/N=10/ref=train", track
    assert fl["kid_test_rec"] == "lenet-digits-e3/N=40/ref=train/subsets=10x40"
    assert fl["swd"] == "progan/patches=independent/levels=32,16/N=40/ref=test"
    assert fl["class_share_min"] == "lenet-digits-e3-classifier/N=64/classes=10"
    # The generator's own path length in the run's space (creswell inverts in z: slerp), the
    # offline distance the domain LeNet's features; Table 2's accuracies name their classifier.
    assert fl["ppl"] == "lenet-digits-e3-fc84/slerp-z/eps=0.0001/N=100/trim=1-99%"
    assert m["ppl"] > 0
    assert fl["class_acc_rec"] == fl["class_acc_orig"] == "lenet-digits-e3-classifier/top1/N=40"
    assert 0 <= m["class_share_min"] <= 0.1 <= m["class_share_max"] <= 1
    assert 0 <= m["recovery@0.01"] <= m["recovery@0.1"] <= m["recovery@0.5"] <= 1
    assert m["fid_test_rec"] > 0 and m["kid_test_rec_sd"] >= 0
    assert 0 < record["provenance"]["feature_net_test_accuracy"] <= 1


def test_interpolation_pairs_are_disjoint() -> None:
    from invbench.runner import disjoint_pairs

    a, b = disjoint_pairs(41, 20, seed=3)
    assert len(a) == len(b) == 20 and len(set(a.tolist()) | set(b.tolist())) == 40
    with pytest.raises(ValueError, match="need 42 images"):
        disjoint_pairs(41, 21, seed=3)


def test_lpips_is_null_with_a_message_when_alexnet_is_missing(record) -> None:
    assert record.metrics["lpips"] is None
    msg = record.unavailable["lpips"]
    assert "alexnet-owt-7be5be79.pth" in msg and "INVBENCH_WEIGHTS" in msg


def test_paired_metrics_have_bootstrap_intervals(record) -> None:
    for name in ("mse", "mae", "psnr", "ssim"):
        lo, hi = record.ci[name]
        assert lo <= record.metrics[name] <= hi


def test_per_image_scores_latents_and_images_are_written_beside_the_record(
    record, results_dir
) -> None:
    """The CSV holds each test image's own scores (recomputed here from the saved PNG of its
    reconstruction and its original), and the latents are the record's inverted codes."""
    import csv

    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file

    import invbench
    from invbench.registry import DATASETS

    folder = results_dir
    rows = list(csv.DictReader((folder / record.files["per_image"]).read_text().splitlines()))
    # Every per-image metric computed here, in the registry's order (lpips and id_sim have no
    # weights offline, so no column); class_acc_*: 1 where the classifier was right.
    assert len(rows) == record.n_test == 40
    cols = ["id", "mse", "mae", "psnr", "ssim", "ms_ssim", "class_acc_rec", "class_acc_orig"]
    assert list(rows[0]) == cols
    for name in ("class_acc_rec", "class_acc_orig"):
        hits = [float(r[name]) for r in rows]
        assert set(hits) <= {0.0, 1.0}
        assert np.mean(hits) == pytest.approx(record.metrics[name], abs=1e-6)
    assert np.mean([float(r["mse"]) for r in rows]) == pytest.approx(
        record.metrics["mse"], abs=1e-6
    )
    latents = load_file(f"{folder}/{record.files['latents']}")["latents"]
    assert latents.shape[0] == 40 and record.space == "z"
    test = DATASETS.get("digits")(DATASETS.get("digits").Config()).load().test
    for k in (0, 17):
        png = f"{folder}/{record.files['images']}/{rows[k]['id']}.png"
        recon = torch.from_numpy(np.asarray(Image.open(png), dtype=np.float32))[None, None]
        recon = recon / 127.5 - 1  # 8-bit: within half a grey level of the float reconstruction
        mse = invbench.metric("mse")(recon, test[k : k + 1])
        assert float(mse) == pytest.approx(float(rows[k]["mse"]), abs=2e-4)


def test_provenance_names_the_device_and_the_batch_that_fitted(record) -> None:
    prov = record.provenance
    assert prov["device"] == describe("cpu")["device"] and prov["device"].startswith("cpu (")
    assert prov["invert_batch_size"] == 32  # eval.batch_size: no out-of-memory on the CPU
    assert record.metrics["sec_per_image"] > 0


def test_fit_gets_the_runners_dataset_fingerprint(tiny_dcgan, tmp_path, monkeypatch) -> None:
    # Methods key their domain network (perceptual losses) on it: the same key as the metric
    # tracks', so the LeNet is trained once per cache root, not once per consumer.
    import invbench.runner as runner
    from invbench.registry import DATASETS

    seen = []
    real = runner.fit_cached
    monkeypatch.setattr(runner, "fit_cached", lambda inv, ctx: seen.append(ctx) or real(inv, ctx))
    sets = ["generator.steps=300", "generator.batch_size=32", "method.steps=2", "eval.n_test=4",
            "eval.tracks=false", "eval.bootstrap=10"]  # fmt: skip
    run(RunSpec(method="creswell", dataset="digits", sets=sets, out=tmp_path))
    digits = DATASETS.get("digits")(DATASETS.get("digits").Config())
    assert seen[0].extra["dataset_fp"] == digits.train_fingerprint()


def test_class_accuracies_score_the_first_test_images_against_their_own_labels(
    record, digits
) -> None:
    """class_acc_orig is the domain classifier's top-1 accuracy on the 40 inverted test images
    against the dataset's labels in the same order (recomputed here from the cached network):
    the runner hands the metric the labels that belong to the images it inverted."""
    from invbench.metrics.features import DomainNetConfig, domain_network

    ds, splits = digits
    net = domain_network(splits, ds.train_fingerprint(), "cpu", DomainNetConfig(epochs=3))
    with torch.no_grad():
        pred = net.logits(splits.test[:40]).argmax(1)
    acc = float((pred == splits.test_labels[:40]).double().mean())
    assert record.metrics["class_acc_orig"] == pytest.approx(acc, abs=1e-6)
    assert 0 <= record.metrics["class_acc_rec"] <= 1
    lo, hi = record.ci["class_acc_rec"]
    assert lo <= record.metrics["class_acc_rec"] <= hi
