"""The face-inversion metrics: ``ms_ssim`` and ``id_sim`` (issue #20).

MS-SSIM is checked against scikit-image (one scale: it is SSIM) and against a direct numpy /
scipy evaluation of Wang et al. 2003 (eq. 7) written here; id_sim against pSp's own
``IDLoss`` run on a seeded IR-SE50 (``fixtures/published/arcface.pt``, made with the script in
``test_published_encoders``' docstring).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from published_weights import seeded_state
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity

from invbench.errors import DataError
from invbench.metrics.identity import IdentitySimilarity, load_identity
from invbench.metrics.msssim import BETAS, ms_ssim
from invbench.metrics.perceptual import Unavailable

FIX = Path(__file__).parent / "fixtures" / "published"


def smooth_pair(n: int, size: int, seed: int = 0, noise: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 3, size, size, generator=g) * 2 - 1, 5, 1, 2)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return x.double(), y.double()


def msssim_numpy(x: np.ndarray, y: np.ndarray, betas=BETAS) -> float:
    """Wang et al. 2003 on one C x H x W image pair, from the definition: per scale the SSIM and
    contrast-structure maps over valid positions of an 11-tap Gaussian window (sigma 1.5,
    shrunk to the image where smaller, centred at tap n // 2), mean over channels and
    positions, then 2x2 block means."""
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    val = 1.0
    for level, b in enumerate(betas):
        n = min(11, *x.shape[1:])
        t = np.exp(-((np.arange(n) - n // 2) ** 2) / (2 * 1.5**2))
        w = np.outer(t, t) / np.outer(t, t).sum()

        def f(a: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return convolve2d(a, w[::-1, ::-1], mode="valid")  # correlation with the window

        s_all, cs_all = [], []
        for xc, yc in zip(x, y, strict=True):
            mx, my = f(xc), f(yc)
            vx, vy, cxy = f(xc * xc) - mx**2, f(yc * yc) - my**2, f(xc * yc) - mx * my
            cs = (2 * cxy + c2) / (vx + vy + c2)
            s_all.append((2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs)
            cs_all.append(cs)
        last = level == len(betas) - 1
        val *= max(np.mean(s_all if last else cs_all), 0.0) ** b
        h, wd = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
        x = x[:, :h, :wd].reshape(x.shape[0], h // 2, 2, wd // 2, 2).mean((2, 4))
        y = y[:, :h, :wd].reshape(y.shape[0], h // 2, 2, wd // 2, 2).mean((2, 4))
    return val


def test_one_scale_is_scikit_images_ssim() -> None:
    x, y = smooth_pair(2, 48)
    got = ms_ssim(x, y, betas=(1.0,))
    for i in range(2):
        ref = structural_similarity(
            x[i].numpy(), y[i].numpy(), channel_axis=0, data_range=2.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )  # fmt: skip
        assert got[i].item() == pytest.approx(ref, abs=1e-10)


@pytest.mark.parametrize("size", [256, 32])  # 256: the protocol; 32: windows shrink
def test_five_scales_match_the_definition(size) -> None:
    x, y = smooth_pair(2, size, seed=size)
    got = ms_ssim(x, y)
    for i in range(2):
        assert got[i].item() == pytest.approx(msssim_numpy(x[i].numpy(), y[i].numpy()), abs=1e-9)
    assert 0.3 < got.min() < got.max() < 1


def test_identity_is_one_and_small_images_are_refused() -> None:
    x, _ = smooth_pair(2, 64)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(2, dtype=torch.float64))
    with pytest.raises(DataError, match="at least 16x16"):
        ms_ssim(x[..., :8, :8], x[..., :8, :8])


# -- id_sim ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory) -> Path:
    with gzip.open(FIX / "layouts.json.gz", "rt") as f:
        shapes = json.load(f)["arcface-ir-se50"]["layout_1024"]
    path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
    torch.save(seeded_state({k: tuple(v) for k, v in shapes.items()}, seed=3), path)
    return path


def test_id_sim_equals_psps_id_loss(arcface_file) -> None:
    ref = torch.load(FIX / "arcface.pt", weights_only=True)
    g = torch.Generator().manual_seed(4)  # the fixture script's images, drawn again
    y = torch.rand(3, 3, 256, 256, generator=g) * 2 - 1
    y_hat = (y + 0.3 * torch.randn(3, 3, 256, 256, generator=g)).clamp(-1, 1)
    y_hat[2] = torch.rand(3, 256, 256, generator=g) * 2 - 1
    idn = IdentitySimilarity(arcface_file)
    torch.testing.assert_close(idn.embed(y), ref["feats_y"], rtol=0, atol=1e-4)
    torch.testing.assert_close(idn(y_hat, y).float(), ref["sims"], rtol=0, atol=1e-4)
    assert ref["sims"][2] < ref["sims"][:2].min() - 0.1  # an unrelated image is less similar


def test_id_sim_is_unavailable_without_its_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INVBENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(Unavailable, match=r"model_ir_se50\.pth .* not found in " + str(tmp_path)):
        load_identity(image_shape=(3, 256, 256))
    with pytest.raises(Unavailable, match="aligned RGB faces"):
        load_identity(image_shape=(1, 32, 32))


def test_a_wrong_or_malicious_identity_file_is_refused(tmp_path, monkeypatch) -> None:
    import pickle

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'ran')!r}, 'w').write('x')",))

    monkeypatch.setenv("INVBENCH_WEIGHTS", str(tmp_path))
    path = tmp_path / "model_ir_se50.pth"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DataError, match="needs code to unpickle"):
        load_identity(image_shape=(3, 256, 256))
    assert not (tmp_path / "ran").exists()
    torch.save({"input_layer.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(DataError, match="not the ArcFace IR-SE50 network"):
        load_identity(image_shape=(3, 256, 256))


# -- an identity loss needs the network: checked before any training ---------------------------------
def test_a_run_with_an_id_loss_stops_before_training_without_the_network(
    tmp_path, monkeypatch, capsys
) -> None:
    from invbench import cli

    monkeypatch.setenv("INVBENCH_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    home = tmp_path / "home"
    monkeypatch.setenv("INVBENCH_HOME", str(home))
    out = tmp_path / "out"
    args = ["run", "--method", "restyle", "--out", str(out), "--set", "enc_id_weight=0.1"]
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2 and "model_ir_se50.pth" in err and "Traceback" not in err
    assert not out.exists() and not (home.exists() and any(home.rglob("*.safetensors")))


def test_the_id_loss_moves_the_encoder(arcface_file) -> None:
    from invbench.encoders import EncoderConfig, build_encoder, train_encoder
    from invbench.generators.stylegan2 import StyleGAN2

    pkl = Path(__file__).parent / "fixtures" / "nvlabs" / "sg2ada-tiny.pkl"
    gen = StyleGAN2(StyleGAN2.Config(checkpoint=str(pkl)), 3, 32).eval().requires_grad_(False)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    idn = IdentitySimilarity(arcface_file)
    trained = []
    for weight in (0.0, 1.0):
        cfg = EncoderConfig(enc_loss="recon", enc_steps=2, enc_batch=2, enc_width=4)
        cfg.enc_id_weight = weight  # set after construction: validate() would look for the file
        torch.manual_seed(0)
        enc = build_encoder(gen, "w", cfg)
        train_encoder(
            enc, gen, "w", cfg, x, None, 0, torch.device("cpu"), identity=idn if weight else None
        )
        trained.append(torch.cat([p.flatten() for p in enc.parameters()]))
    assert (trained[0] - trained[1]).abs().max() > 1e-6  # the identity term reached the encoder


# -- FID against clean-fid's published statistics ------------------------------------------------------
def test_cleanfid_statistics_are_read_offline_or_named(tmp_path, monkeypatch) -> None:
    import inspect

    import cleanfid.fid

    from invbench.metrics import cleanfid_ref

    monkeypatch.setattr(cleanfid_ref, "stats_dir", lambda: tmp_path)
    assert cleanfid_ref.reference_for("digits", 32) is None  # clean-fid publishes none
    with pytest.raises(Unavailable, match="ffhq_legacy_tensorflow_trainval70k_256.npz not found"):
        cleanfid_ref.reference_for("ffhq", 256)
    with pytest.raises(Unavailable, match="at 256 and 1024 px, the run is at 128 px"):
        cleanfid_ref.reference_for("ffhq", 128)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 64))
    mu, sigma = rng.standard_normal(2048), a @ a.T / 64
    np.savez(tmp_path / "ffhq_legacy_tensorflow_trainval70k_256.npz", mu=mu, sigma=sigma)
    ref = cleanfid_ref.reference_for("ffhq", 256)
    np.testing.assert_array_equal(ref.mu, mu)
    np.testing.assert_array_equal(ref.sigma, sigma)
    assert ref.split == "clean-fid:ffhq/legacy_tensorflow/trainval70k/256"
    # the file name follows clean-fid's own rule for what its API downloads
    assert "{name}_{mode}{model_modifier}_{split}_{res}.npz" in inspect.getsource(cleanfid.fid)
