"""Per-image metrics between reconstructions and originals (images in [-1, 1]).

MSE, MAE and PSNR are one line each; SSIM is written out (see its docstring for why) and checked
against scikit-image in the tests. Every function returns one value per image, so the runner can average
them, stream them over batches and bootstrap confidence intervals over images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

DATA_RANGE = 2.0  # images in [-1, 1]

PairedFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PAIRED: dict[str, PairedFn] = {}


def paired_metric(name: str) -> Callable[[PairedFn], PairedFn]:
    def deco(fn: PairedFn) -> PairedFn:
        PAIRED[name] = fn
        return fn

    return deco


@paired_metric("mse")
def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x.double() - y.double()) ** 2).flatten(1).mean(1)


@paired_metric("mae")
def mae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.double() - y.double()).abs().flatten(1).mean(1)


@paired_metric("psnr")
def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    err = mse(x, y).clamp_min(1e-20)
    return 10 * torch.log10(DATA_RANGE**2 / err)


def _gaussian_taps(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage's rule: 11 taps for sigma 1.5
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(d**2) / (2 * sigma**2))
    return g / g.sum()


@paired_metric("ssim")
def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004), the convention of scikit-image's ``structural_similarity(
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2)``: Gaussian
    window, population covariance, mean over the valid region (borders of half a window are
    excluded), then over channels.

    Written by hand because torchmetrics' SSIM averages over the reflect-padded border too and
    differs from scikit-image by up to 0.03 on 32x32 images; this matches it to 1e-12.
    """
    side = 2 * int(3.5 * 1.5 + 0.5) + 1
    if min(x.shape[-2:]) < side:
        from invbench.errors import DataError

        raise DataError(
            f"SSIM needs images of at least {side}x{side} pixels (its Gaussian window); got "
            f"{tuple(x.shape[-2:])}. Use a larger resolution (e.g. --set dataset.resolution=16)."
        )
    x, y = x.double(), y.double()
    c = x.shape[1]
    g = _gaussian_taps().to(x.device)
    kh = g[None, None, None, :].expand(c, 1, 1, -1)  # the 2-D Gaussian is separable:
    kv = g[None, None, :, None].expand(c, 1, -1, 1)  # two 1-D passes, 11x cheaper than 11x11

    def filt(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(a, kh, groups=c), kv, groups=c)

    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx**2
    syy = filt(y * y) - my**2
    sxy = filt(x * y) - mx * my
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def compute_paired(recon: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """All paired metrics per image (float64 on CPU)."""
    recon, target = recon.detach().cpu(), target.detach().cpu()
    return {name: fn(recon, target).cpu() for name, fn in PAIRED.items()}


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over images."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        v = float(values.mean()) if len(values) else float("nan")
        return v, v
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
