"""Per-image metrics between reconstructions and originals (images in [-1, 1]), on the test track.

Each is one registered function returning one value per image (``invbench.metrics.base.paired``):
the runner averages them, bootstraps confidence intervals over images and writes them per image.
MSE, MAE and PSNR are one line each (PSNR is tested against torchmetrics and scikit-image); SSIM
is written out (its docstring says why) and checked against scikit-image in the tests; LPIPS is the ``lpips`` package's network
built from verified files (``invbench.metrics.perceptual``), unavailable without them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from invbench.errors import DataError
from invbench.metrics.base import EvalContext, MetricSpec, NetworkPairedMetric, paired, register

DATA_RANGE = 2.0  # images in [-1, 1]
# An exact reconstruction has infinite PSNR; it is reported at this cap (an MSE of 1e-20) so
# that means over images and JSON records stay finite.
PSNR_CAP = 10 * math.log10(DATA_RANGE**2 / 1e-20)


@paired("mse", "per-pixel MSE, images in [-1, 1], test reconstructions vs originals")
def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x.double() - y.double()) ** 2).flatten(1).mean(1)


@paired("mae", "per-pixel MAE, images in [-1, 1] (InvGAN's MAE±1)")
def mae(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x.double() - y.double()).abs().flatten(1).mean(1)


@paired("psnr", "PSNR in dB, data range 2", higher_better=True, fmt="{:.2f}")
def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """10 log10(range^2 / MSE) per image. One line, so not torchmetrics' (which gives the same
    numbers, tested): importing torchmetrics costs about 5 s of CPU per process (measured),
    more than all of a small run's metrics."""
    return (10 * torch.log10(DATA_RANGE**2 / mse(x, y))).clamp(max=PSNR_CAP)


def _gaussian_taps(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # scipy.ndimage's rule: 11 taps for sigma 1.5
    d = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(d**2) / (2 * sigma**2))
    return g / g.sum()


@paired(
    "ssim",
    "SSIM, Gaussian window sigma 1.5, population covariance (scikit-image's convention)",
    higher_better=True,
)
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


class LPIPSMetric(NetworkPairedMetric):
    """LPIPS (Zhang et al. 2018, AlexNet, v0.1) from verified weight files; ``Unavailable``
    (reported as null with the missing file named) when the AlexNet trunk is not found."""

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        from invbench.metrics.perceptual import load_lpips

        weights_dir = getattr(ctx.cfg, "weights_dir", "") or None
        super().__init__(spec, ctx, load_lpips(ctx.device, weights_dir))


register(
    MetricSpec(
        "lpips",
        "LPIPS (AlexNet, v0.1), test reconstructions vs originals",
        group="Reconstruction",
        flavor="the network and version, e.g. lpips-alex-v0.1",
    ),
    LPIPSMetric,
)
