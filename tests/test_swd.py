"""SWD against an independent implementation of the ProGAN protocol (Karras et al. 2018,
``metrics/sliced_wasserstein.py`` of their release), written here in plain numpy: its own
Laplacian pyramid (explicit 5-tap binomial with ``np.pad(mode="reflect")``, which is
scipy's "mirror"), one global RandomState drawing the real set's patch positions, then the fake
set's, then the directions, exactly in ProGAN's order. The registered metric must agree within
5% on two different pairs of image sets, and treat two halves of one dataset as close but not
identical (each set draws its own patches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invbench.metrics import METRICS, Batch, EvalContext
from invbench.runner import EvalConfig

_TAPS = np.array([1, 4, 6, 4, 1], np.float64) / 16.0


def _blur(x: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Separable 5-tap binomial filter, mirrored borders (d c b | a b c d | c b a)."""
    p = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    h, w = x.shape[2:]
    rows = sum(_TAPS[k] * p[:, :, k : k + h, :] for k in range(5))
    return gain * sum(_TAPS[k] * rows[:, :, :, k : k + w] for k in range(5))


def _pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    out, cur = [], x.astype(np.float64)
    for _ in range(levels - 1):
        down = _blur(cur)[:, :, ::2, ::2]
        up = np.zeros_like(cur)
        up[:, :, ::2, ::2] = down
        out.append(cur - _blur(up, gain=4.0))
        cur = down
    return [*out, cur]


def _descriptors(level: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    n, c, h, w = level.shape
    k, half = 128, 3
    rows = rng.randint(half, h - half, size=n * k)  # ProGAN draws x (width) then y; here y
    cols = rng.randint(half, w - half, size=n * k)  # then x: the same law, independent draws
    out = np.empty((n * k, c, 7, 7))
    for j in range(n * k):
        i = j // k
        out[j] = level[
            i, :, rows[j] - half : rows[j] + half + 1, cols[j] - half : cols[j] + half + 1
        ]
    out -= out.mean(axis=(0, 2, 3), keepdims=True)
    out /= out.std(axis=(0, 2, 3), keepdims=True)
    return out.reshape(n * k, -1)


def progan_swd(real: np.ndarray, fake: np.ndarray, seed: int) -> float:
    """ProGAN's SWD x1e3, mean over levels 32 and 16, of two uint8-valued N x C x 32 x 32 sets."""
    rng = np.random.RandomState(seed)
    levels = 2
    d_real = [_descriptors(lv, rng) for lv in _pyramid(real, levels)]
    d_fake = [_descriptors(lv, rng) for lv in _pyramid(fake, levels)]
    dists = []
    for a, b in zip(d_real, d_fake, strict=True):
        res = []
        for _ in range(4):
            dirs = rng.randn(a.shape[1], 128)
            dirs = (dirs / np.sqrt((dirs**2).sum(0, keepdims=True))).astype(np.float32)
            pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
            res.append(np.abs(pa - pb).mean())
        dists.append(np.mean(res) * 1e3)
    return float(np.mean(dists))


def ours(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> tuple[float, str]:
    """The registered ``swd`` metric over one test track (targets: real, images: fake)."""
    ctx = EvalContext(EvalConfig(), torch.device("cpu"), seed, resolution=real.shape[-1])
    m = METRICS.factory("swd")(METRICS.get("swd"), ctx)
    for i in range(0, len(real), 64):
        m.update(Batch(fake[i : i + 64], real[i : i + 64], start=i))
    res = m.compute()
    return res.values["swd"], res.flavors["swd"]


def _u8(x: torch.Tensor) -> np.ndarray:
    return np.rint((x.double().numpy() + 1) * 127.5).clip(0, 255)


@pytest.fixture(scope="module")
def sets(digits):
    _, splits = digits
    real = splits.train[:300]
    g = torch.Generator().manual_seed(0)
    noisy = (splits.train[300:600] + 0.3 * torch.randn(300, 1, 32, 32, generator=g)).clamp(-1, 1)
    blurred = torch.nn.functional.avg_pool2d(splits.train[300:600], 3, 1, 1)
    return real, noisy, blurred


@pytest.mark.parametrize("which", ["noisy", "blurred"])
def test_swd_agrees_with_an_independent_progan_implementation(sets, which) -> None:
    real, noisy, blurred = sets
    fake = noisy if which == "noisy" else blurred
    got, flavor = ours(real, fake)
    ref = progan_swd(_u8(real), _u8(fake), seed=0)
    assert got == pytest.approx(ref, rel=0.05), (got, ref)
    assert flavor == "progan/patches=independent/levels=32,16/N=300/ref=test"


def test_swd_of_two_halves_of_a_dataset_is_small_but_not_zero(digits, sets) -> None:
    _, splits = digits
    a, b = splits.train[:300], splits.train[300:600]  # two disjoint halves of 600 digits
    between, _ = ours(a, b)
    noisy, _ = ours(sets[0], sets[1])
    assert 0 < between < 0.25 * noisy, (between, noisy)
    ref = progan_swd(_u8(a), _u8(b), seed=1)  # the independent implementation agrees
    assert between == pytest.approx(ref, rel=0.15) and ref > 0
