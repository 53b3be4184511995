"""Every metric against an independent reference: scikit-image, scipy, closed forms,
torch-fidelity, torchmetrics, the ``lpips`` package; and independence of the batch size."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.linalg
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import invbench
from invbench.errors import DataError
from invbench.metrics import METRICS, Batch, EvalContext
from invbench.metrics.distribution import RunningStats, frechet_distance, kid
from invbench.metrics.reference import Reference
from invbench.metrics.swd import (
    FAKE,
    REAL,
    SWDAccumulator,
    laplacian_pyramid,
    sliced_wasserstein,
    swd,
)
from invbench.metrics.weights import ALEXNET, WeightFile
from invbench.runner import EvalConfig


def _images(n: int, c: int, seed: int, res: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, res, res, generator=g) * 2 - 1
    smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # structure, so SSIM is not ~0
    y = (smooth + 0.2 * torch.randn(n, c, res, res, generator=g)).clamp(-1, 1)
    return smooth, y


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_psnr_match_scikit_image(channels: int) -> None:
    x, y = _images(6, channels, seed=channels)
    got = {name: invbench.metric(name)(y, x) for name in ("ssim", "psnr")}
    for i in range(len(x)):
        a, b = x[i].double().numpy(), y[i].double().numpy()
        ref_ssim = structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=2.0, channel_axis=0,
        )  # fmt: skip
        ref_psnr = peak_signal_noise_ratio(a, b, data_range=2.0)
        assert abs(float(got["ssim"][i]) - ref_ssim) < 1e-4
        assert abs(float(got["psnr"][i]) - ref_psnr) < 1e-4
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

    tm = tm_psnr(y.double(), x.double(), data_range=2.0, reduction="none",
                                 dim=(1, 2, 3))  # fmt: skip
    torch.testing.assert_close(got["psnr"], tm, rtol=1e-6, atol=0)  # its data_range is float32


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The pytorch-fid / torch-fidelity formula with scipy.linalg.sqrtm (the reference)."""
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_matches_gaussian_closed_form() -> None:
    # Commuting covariances (same eigenvectors): d^2 = |dmu|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    a, b = rng.uniform(0.1, 4, 16), rng.uniform(0.1, 4, 16)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    s1, s2 = (q * a) @ q.T, (q * b) @ q.T
    closed = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(closed, rel=1e-4)
    # 1-D: (m1 - m2)^2 + (sd1 - sd2)^2.
    one = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert one == pytest.approx(9.0 + 1.0, rel=1e-10)


def test_frechet_matches_scipy_reference_on_real_statistics() -> None:
    rng = np.random.default_rng(1)
    f1 = rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32))
    f2 = rng.standard_normal((400, 32)) @ rng.standard_normal((32, 32)) + 0.5
    s1, s2 = RunningStats(), RunningStats()
    s1.update(torch.from_numpy(f1))
    s2.update(torch.from_numpy(f2))
    # The running float64 sums give numpy's mean and sample covariance.
    np.testing.assert_allclose(s1.mean(), f1.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s1.cov(), np.cov(f1, rowvar=False), rtol=1e-9, atol=1e-10)
    ref = _scipy_frechet(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert frechet_distance(s1.mean(), s1.cov(), s2.mean(), s2.cov()) == pytest.approx(
        ref, rel=1e-4
    )


def test_fid_of_a_set_with_itself_is_zero() -> None:
    rng = np.random.default_rng(2)
    f = torch.from_numpy(rng.standard_normal((300, 84)) * 3 + 1)
    s = RunningStats()
    s.update(f)
    assert abs(frechet_distance(s.mean(), s.cov(), s.mean(), s.cov())) < 1e-6


def test_kid_equals_torch_fidelity() -> None:
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    g = torch.Generator().manual_seed(3)
    f1 = torch.randn(300, 64, generator=g, dtype=torch.float64)
    f2 = torch.randn(250, 64, generator=g, dtype=torch.float64) * 1.1 + 0.1
    ref = kid_features_to_metric(
        f1, f2, kid_subsets=20, kid_subset_size=100, rng_seed=7, verbose=False
    )
    mean, std = kid(f1, f2, subsets=20, subset_size=100, seed=7)
    assert mean == pytest.approx(ref[KEY_METRIC_KID_MEAN], rel=1e-9)
    assert std == pytest.approx(ref[KEY_METRIC_KID_STD], rel=1e-9)


def test_sliced_wasserstein_is_w1_for_one_dimensional_descriptors() -> None:
    # In 1-D every unit direction is +-1, so SWD is the exact W1 between the two samples.
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(4)
    a = rng.standard_normal((500, 1)).astype(np.float32)
    b = (rng.standard_normal((500, 1)) * 1.5 + 0.3).astype(np.float32)
    got = sliced_wasserstein(a, b, repeats=4, dirs=16, seed=0)
    assert got == pytest.approx(wasserstein_distance(a[:, 0], b[:, 0]), rel=1e-5)


def test_laplacian_pyramid_is_invertible_and_sets_draw_their_own_patches() -> None:
    from invbench.metrics.swd import _pyr_up

    x, y = _images(40, 1, seed=5)
    u8 = ((x.numpy() + 1) * 127.5).astype(np.float32)
    pyr = laplacian_pyramid(u8, 2)
    assert [p.shape[-1] for p in pyr] == [32, 16]
    np.testing.assert_allclose(_pyr_up(pyr[1]) + pyr[0], u8, atol=1e-3)
    # ProGAN: each set draws its own patch positions, so a set against itself is not 0 (patches
    # are compared as distributions, not one for one), but far below a different set.
    a, b = SWDAccumulator(32, seed=1, role=REAL), SWDAccumulator(32, seed=1, role=FAKE)
    a.update(x)
    b.update(x)
    same = swd(a, b)[0]
    c = SWDAccumulator(32, seed=1, role=FAKE)
    c.update(y)
    assert 0.0 < same < 0.5 * swd(a, c)[0]
    twin = SWDAccumulator(32, seed=1, role=REAL)
    twin.update(x)
    with pytest.raises(ValueError, match="own patch positions"):
        swd(a, twin)


@pytest.fixture(scope="module")
def alexnet_home(tmp_path_factory) -> tuple:
    """A randomly initialised torchvision AlexNet saved under torchvision's cache name, and
    the weight spec with that file's checksum."""
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    path = ckpt / ALEXNET.names[0]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(torchvision.models.alexnet().state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return home, WeightFile(ALEXNET.names, digest, ALEXNET.what, ALEXNET.url)


@pytest.fixture
def alexnet_file(alexnet_home, monkeypatch):
    home, spec = alexnet_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("INVBENCH_WEIGHTS", raising=False)
    return spec


def test_lpips_equals_the_lpips_package_with_the_same_backbone_file(alexnet_file) -> None:
    import lpips

    from invbench.metrics.perceptual import load_lpips

    spec = alexnet_file
    # The package loads the trunk through torchvision from $TORCH_HOME, the file written above.
    ref_model = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    ours = load_lpips("cpu", spec=spec)
    x, y = _images(6, 3, seed=6)
    with torch.no_grad():
        ref = ref_model(x, y).flatten().double()
    got = ours(x, y)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    # Grey images are compared as RGB with equal channels, as the package would see them.
    g1, g2 = x[:, :1], y[:, :1]
    with torch.no_grad():
        ref_g = ref_model(g1.expand(-1, 3, -1, -1), g2.expand(-1, 3, -1, -1)).flatten().double()
    torch.testing.assert_close(ours(g1, g2), ref_g, rtol=1e-5, atol=1e-7)
    # Batch size does not change a per-image value.
    parts = torch.cat([ours(x[i : i + 2], y[i : i + 2]) for i in range(0, 6, 2)])
    torch.testing.assert_close(parts, got, rtol=1e-5, atol=1e-7)


def test_lpips_refuses_a_backbone_with_the_wrong_checksum(alexnet_file) -> None:
    from invbench.metrics.perceptual import load_lpips

    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_lpips("cpu")  # the published digest; the file holds random weights


def test_lpips_is_unavailable_without_the_backbone(tmp_path, monkeypatch) -> None:
    from invbench.metrics.perceptual import Unavailable, load_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("INVBENCH_WEIGHTS", raising=False)
    with pytest.raises(Unavailable, match="alexnet-owt-7be5be79.pth.*INVBENCH_WEIGHTS"):
        load_lpips("cpu")


class _Projection:
    """A fixed random projection standing in for the feature network (what is tested here is
    the streaming of statistics, not a network)."""

    flavor, key = "proj", "proj"
    w = torch.randn(32 * 32, 16, generator=torch.Generator().manual_seed(0))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def _scores(images, targets, batch: int, names: list[str], fid_n: int = 0) -> dict[str, float]:
    """The registered metrics ``names`` over one test track fed ``batch`` images at a time."""
    fr = _Projection().features(targets).double()
    ref = Reference(fr.mean(0).numpy(), np.cov(fr.numpy(), rowvar=False), fr.numpy(), 80, "x")
    cfg = EvalConfig(fid_small_n=30, kid_subsets=10, kid_subset_size=30, bootstrap=0)
    ctx = EvalContext(cfg, torch.device("cpu"), 2, resolution=32, fid_n={"test": fid_n},
                      feature_net=_Projection, reference=lambda net: ref)  # fmt: skip
    made = [METRICS.factory(n)(METRICS.get(n), ctx) for n in names]
    for i in range(0, len(images), batch):
        for m in made:
            m.update(Batch(images[i : i + batch], targets[i : i + batch], start=i))
    out: dict[str, float] = {}
    for m in made:
        out.update(m.compute().values)
    return out


def test_distribution_metrics_do_not_depend_on_batch_size() -> None:
    x, y = _images(80, 1, seed=8)
    names = ["fid_test_rec", "kid_test_rec", "swd", "mse", "mae", "psnr", "ssim"]
    results = [_scores(y, x, batch, names) for batch in (7, 80)]
    assert set(results[0]) == {
        "fid_test_rec", "fid_test_rec@N=30", "kid_test_rec", "kid_test_rec_sd", "swd", "mse",
        "mae", "psnr", "ssim",
    }  # fmt: skip
    for k in results[0]:
        assert results[0][k] == pytest.approx(results[1][k], rel=1e-5), k


def test_fid_equals_torchmetrics_with_the_same_feature_network() -> None:
    """torchmetrics' FrechetInceptionDistance accepts any feature module; with the projection
    above (and its float64 sums) it must give our streamed FID, at the track's N too."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Module(torch.nn.Module):
        num_features = 16

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).double() @ _Projection.w.double()

    x, y = _images(80, 1, seed=9)
    y = (0.7 * y + 0.1).clamp(-1, 1)  # a visibly different set
    for n in (0, 50):  # every image, and the first 50 (the track's one N)
        tm = FrechetInceptionDistance(feature=Module(), normalize=True).double()
        tm.update(x, real=True)
        tm.update(y[:n] if n else y, real=False)
        ours = _scores(y, x, 16, ["fid_test_rec"], fid_n=n)["fid_test_rec"]
        assert ours == pytest.approx(float(tm.compute()), rel=1e-6), n


def test_bootstrap_interval_is_the_normal_interval_of_the_mean_for_a_large_sample() -> None:
    """The percentile bootstrap of the mean of n = 500 standard normal values: both ends sit
    within 5% of the closed form mean ∓ 1.96 sigma / sqrt(n) (the CLT; sigma from the sample).
    With 20,000 resamples the quantiles' own noise is ~1% (seen: 2.4% at most over six samples),
    so a wrong tail (the 98.3% quantile, 2.13 sigma, is 8.7% off) fails."""
    from invbench.metrics.base import bootstrap_ci

    v = np.random.default_rng(3).standard_normal(500)
    lo, hi = bootstrap_ci(v, n_boot=20000, level=0.95, seed=1)
    half = 1.959964 * v.std(ddof=1) / np.sqrt(len(v))
    assert lo < v.mean() < hi
    assert lo == pytest.approx(v.mean() - half, abs=0.05 * half)
    assert hi == pytest.approx(v.mean() + half, abs=0.05 * half)


def test_latent_recovery_metrics_against_numpy() -> None:
    """latent_mse is the mean squared error of recovered codes; recovery@eps the share of samples
    whose every coordinate is within eps, over batches (numpy on the same codes)."""
    g = torch.Generator().manual_seed(4)
    true = torch.randn(40, 8, generator=g)
    est = true + 0.08 * torch.randn(40, 8, generator=g)
    cfg = EvalConfig(recovery_eps=(0.1, 0.2))
    ctx = EvalContext(cfg, torch.device("cpu"), 2, resolution=32)
    made = [METRICS.factory(n)(METRICS.get(n), ctx) for n in ("latent_mse", "recovery")]
    for i in range(0, 40, 16):
        for m in made:
            m.update(Batch(torch.zeros(1), None, est[i : i + 16], true[i : i + 16], "z", start=i))
    out: dict[str, float] = {}
    for m in made:
        out.update(m.compute().values)
    e, t = est.double().numpy(), true.double().numpy()
    assert out["latent_mse"] == pytest.approx(((e - t) ** 2).mean(), rel=1e-12)
    worst = np.abs(e - t).max(1)
    for eps in (0.1, 0.2):
        assert out[f"recovery@{eps:g}"] == pytest.approx((worst < eps).mean(), abs=1e-12)
    assert 0 < out["recovery@0.1"] < out["recovery@0.2"]  # the two bars tell samples apart
