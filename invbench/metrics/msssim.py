"""``ms_ssim``: multi-scale SSIM (Wang, Simoncelli & Bovik 2003) per image, images in [-1, 1].

The convention is the one face-inversion papers report: HyperStyle (Alaluf et al. 2022,
``scripts/calc_losses_on_images.py`` with ``criteria/ms_ssim.py``, from jorge-pessoa's
pytorch-msssim) on 256x256 images, the e4e / ReStyle / HyperStyle comparisons. Per scale l:
Gaussian-weighted means and (population) covariances over an 11x11 window, sigma 1.5, valid
positions only; contrast-structure cs_l and SSIM s_l averaged over channels and positions; then
2x2 average pooling. MS-SSIM = prod_{l<5} cs_l^b_l * s_5^b_5 with Wang et al.'s exponents
b = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) and C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 2.

Where the image is smaller than the window at a scale (below 176 px at the fifth scale) the
window shrinks to the image, as in that implementation; at 256 px no window shrinks and the
value is Wang et al.'s. Two of its choices are fixed here instead of guessed: L = 2 always (it
infers L from the image's range: 2 for [-1, 1] images with any pixel below -0.5), and a
negative cs or s counts as 0 (there the power is NaN and HyperStyle drops the image).

Written by hand because torchmetrics' MS-SSIM reflect-pads each scale and includes the padded
border in the last scale's SSIM term (it crops only the contrast term), which is neither this
convention nor Wang et al.'s (about 1e-3 apart on 256 px images); checked against scikit-image (one scale) and a direct numpy
evaluation in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from invbench.errors import DataError
from invbench.metrics.base import EvalContext, MetricSpec, PairedMetric, Unavailable, register

BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, §3.2
DATA_RANGE = 2.0  # images in [-1, 1]
WINDOW, SIGMA = 11, 1.5
FLAVOR = "wang2003/gauss11-sigma1.5/5-scales/L=2"
MIN_SIDE = 2 ** (len(BETAS) - 1)  # the fifth scale must hold a pixel


def _taps(n: int, sigma: float = SIGMA) -> torch.Tensor:
    """The 1-D Gaussian of an n-tap window centred at tap n // 2 (off-centre for even n)."""
    d = torch.arange(n, dtype=torch.float64) - n // 2
    g = torch.exp(-(d**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_cs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image SSIM and contrast-structure terms at one scale (valid window positions)."""
    c = x.shape[1]
    g = _taps(min(WINDOW, *x.shape[-2:])).to(x.device)
    kh = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    kv = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)

    def filt(a: torch.Tensor) -> torch.Tensor:  # the 2-D window is separable: two 1-D passes
        return F.conv2d(F.conv2d(a, kh, groups=c), kv, groups=c)

    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    s = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs
    return s.flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, betas: tuple[float, ...] = BETAS) -> torch.Tensor:
    """MS-SSIM of each image of ``x`` against ``y`` (N x C x H x W in [-1, 1]), float64."""
    side = 2 ** (len(betas) - 1)
    if min(x.shape[-2:]) < side:
        raise DataError(
            f"MS-SSIM's {len(betas)} scales halve the image {len(betas) - 1} times and need at "
            f"least {side}x{side} pixels; got {tuple(x.shape[-2:])}. Use a larger resolution."
        )
    x, y = x.double(), y.double()
    out = torch.ones(len(x), dtype=torch.float64, device=x.device)
    for level, b in enumerate(betas):
        s, cs = _ssim_cs(x, y)
        last = level == len(betas) - 1
        out = out * (s if last else cs).clamp_min(0) ** b  # Wang et al. eq. 7
        if not last:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


class MSSSIM(PairedMetric):
    """The registered ``ms_ssim``: unavailable (not an error) below ``MIN_SIDE`` pixels."""

    fn = staticmethod(ms_ssim)
    flavor = FLAVOR

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        if 0 < ctx.resolution < MIN_SIDE:
            raise Unavailable(
                f"ms_ssim unavailable: its five scales need images of at least {MIN_SIDE}x"
                f"{MIN_SIDE} pixels; these are {ctx.resolution}x{ctx.resolution}."
            )


register(
    MetricSpec(
        "ms_ssim",
        "MS-SSIM (Wang et al. 2003; HyperStyle's convention), test reconstructions vs originals",
        higher_better=True,
        group="Reconstruction",
        flavor=FLAVOR,
    ),
    MSSSIM,
)
