"""``invbench eval-images``: the benchmark's metrics between two image folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from invbench.cli import main


def _save(folder, arrays, mode="L", names=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        img = Image.fromarray(a if mode == "L" else np.repeat(a[:, :, None], 3, axis=2), mode)
        img.save(folder / (names[i] if names else f"{i:03d}.png"))


@pytest.fixture(scope="module")
def folders(digits, tmp_path_factory):
    _, splits = digits
    rng = np.random.default_rng(0)
    real = ((splits.test[:40, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    noisy = (real + rng.normal(0, 20, real.shape)).clip(0, 255).round().astype(np.uint8)
    root = tmp_path_factory.mktemp("images")
    _save(root / "real", real)
    _save(root / "fake", noisy)
    _save(root / "fake_rgb", noisy, mode="RGB")
    return root, real, noisy


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_paired_metrics_between_folders_match_scikit_image(folders, capsys) -> None:
    root, real, noisy = folders
    code, out, _ = _run(
        capsys, "eval-images", "--real", str(root / "real"), "--fake", str(root / "fake"),
        "--paired", "--json", "--dataset", "digits", "--set", "feature_epochs=3",
        "--set", "kid_subsets=10", "--set", "fid_small_n=20",
    )  # fmt: skip
    assert code == 0
    rec = json.loads(out)
    ref = np.mean(
        [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(real, noisy, strict=True)]
    )
    assert rec["metrics"]["psnr"] == pytest.approx(ref, abs=1e-4)
    for name in ("mse", "ssim", "swd", "fid", "fid@N=20", "kid", "kid_sd"):
        assert rec["metrics"][name] is not None, name
    assert rec["metric_flavors"]["fid"] == "lenet-digits-e3/N=40/ref=real"
    assert rec["metrics"]["lpips"] is None and "alexnet" in rec["unavailable"]["lpips"]


def test_grey_and_rgb_folders_are_compared_as_rgb(folders, capsys) -> None:
    root, _, _ = folders
    code, out, _ = _run(
        capsys, "eval-images", "--real", str(root / "fake"), "--fake", str(root / "fake_rgb"),
        "--paired", "--json",
    )  # fmt: skip
    assert code == 0
    rec = json.loads(out)
    # The same pixels: zero error; SWD compares patch distributions drawn independently per
    # set (ProGAN), so even a folder against itself is small, not 0.
    assert rec["metrics"]["mse"] == 0.0 and rec["metrics"]["swd"] > 0
    # No Inception weights and no --dataset: FID is unavailable, and says why.
    assert rec["metrics"]["fid"] is None and "--dataset" in rec["unavailable"]["fid"]


def test_bad_folders_exit_2_with_a_message(folders, tmp_path, capsys) -> None:
    root, real, _ = folders
    _save(tmp_path / "mixed", [real[0], np.zeros((16, 16), np.uint8)], names=["a.png", "b.png"])
    code, _, err = _run(
        capsys, "eval-images", "--real", str(root / "real"), "--fake", str(tmp_path / "mixed")
    )
    assert code == 2 and "different sizes" in err and "b.png is 16x16" in err
    _save(tmp_path / "renamed", real[:3], names=["x.png", "y.png", "z.png"])
    code, _, err = _run(
        capsys, "eval-images", "--real", str(root / "real"), "--fake", str(tmp_path / "renamed"),
        "--paired",
    )  # fmt: skip
    assert code == 2 and "same file names" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(
        capsys, "eval-images", "--real", str(tmp_path / "empty"), "--fake", str(root / "fake")
    )
    assert code == 2 and "holds no image files" in err
    _save(tmp_path / "one", real[:1], names=["a.png"])
    code, _, err = _run(
        capsys, "eval-images", "--real", str(tmp_path / "one"), "--fake", str(root / "fake")
    )
    assert code == 2 and "at least 2 in each folder" in err
