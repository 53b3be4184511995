"""Perceptual path length (Karras et al. 2019, StyleGAN §4.2, eqs. 2-3; LIA §3.2, eq. 7).

    l = E[ 1/eps^2 d( G(interp(a, b; t)), G(interp(a, b; t + eps)) ) ],  t ~ U(0, 1), eps = 1e-4

with a, b two independent prior draws expressed in the latent space being measured, ``interp``
spherical (slerp) in the Gaussian z-space and linear (lerp) in a mapped space (w, LIA's y), as
Karras et al. define l_Z and l_W, and d a perceptual distance between the two images. As in
StyleGAN's released metric, the 1% smallest and largest samples are dropped before averaging
(the 1/eps^2 factor makes a rare discontinuity dominate the mean otherwise).

d is LPIPS (AlexNet, v0.1; Karras et al. use the VGG variant of LPIPS) when its weights are found
offline; otherwise the dataset's LeNet (``DomainNet``): the squared Euclidean distance of its
fc84 features, averaged over features. The flavor says which, and the two are never comparable.
A shorter path means that a small step in the space changes the image less: LIA Table 2 reports
l_z = 40.25 and l_y = 23.26 for its decoder.

Hand-written: no maintained library computes PPL for an arbitrary generator and space
(torch-fidelity's ``ppl`` takes a generator of z only and uses its own LPIPS download).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from invbench.inverter import Inverter, Latents
from invbench.metrics import MetricInfo

#: Declaration for the metric registry (lower is better).
INFO = {
    "ppl": MetricInfo(
        False, "perceptual path length in the run's latent space (Karras et al. 2019)", "{:.2f}"
    )
}

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # per-image distance


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of ``a`` and ``b`` (Shoemake 1985) as StyleGAN's
    ``slerp``, given the linearly interpolated length of the two ends: StyleGAN's mapping
    normalises z so its slerp may return unit vectors, but LIA's flow reads z as it is, and a
    path on the prior's shell (norm ~ sqrt(dim)) is what its decoder was trained on."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na, b / nb
    d = (ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    p = t * torch.acos(d)
    c = ub - d * ua
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (ua * torch.cos(p) + c * torch.sin(p)) * lerp(na, nb, t)


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def interpolation_for(space: str) -> str:
    """Karras et al.: slerp in the normalised Gaussian z, lerp in mapped spaces (w, y, w+)."""
    return "slerp" if space == "z" else "lerp"


def path_lengths(
    inv: Inverter,
    dist: Distance,
    n: int = 1000,
    eps: float = 1e-4,
    seed: int = 0,
    batch: int = 250,
) -> torch.Tensor:
    """The ``n`` per-sample values 1/eps^2 d(...) in the inverter's latent space (``inv.space``).

    Endpoints are ``inv.sample`` draws (prior samples expressed in that space); t and the
    endpoints come from a generator seeded by ``seed``, so the estimate is reproducible.
    """
    if n < 1 or eps <= 0:
        raise ValueError(f"need n >= 1 and eps > 0, got n={n}, eps={eps}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, batch):
        k = min(batch, n - i)
        a, b = inv.sample(k, generator=g), inv.sample(k, generator=g)
        shape = (k,) + (1,) * (a.tensor.dim() - 1)
        t = torch.rand(shape, generator=g).to(a.tensor.device)
        f = slerp if interpolation_for(a.space) == "slerp" else lerp
        if f is slerp and a.tensor.dim() != 2:
            raise ValueError(f"slerp needs one code per image, got shape {tuple(a.tensor.shape)}")
        p0, p1 = f(a.tensor, b.tensor, t), f(a.tensor, b.tensor, t + eps)
        with torch.no_grad():
            x0, x1 = inv.decode(Latents(p0, a.space)), inv.decode(Latents(p1, a.space))
            out.append(dist(x0, x1).double().cpu() / eps**2)
    return torch.cat(out)


def robust_mean(values: torch.Tensor, lo: float = 1.0, hi: float = 99.0) -> float:
    """The mean of the values between the lo-th and hi-th percentiles (StyleGAN's filter)."""
    a, b = torch.quantile(values, lo / 100), torch.quantile(values, hi / 100)
    keep = values[(values >= a) & (values <= b)]
    return float(keep.mean())


def ppl(inv: Inverter, dist: Distance, n: int = 1000, eps: float = 1e-4, seed: int = 0) -> float:
    """Perceptual path length of ``inv``'s generator in ``inv.space`` (see the module doc)."""
    return robust_mean(path_lengths(inv, dist, n, eps, seed))


def domain_distance(net: torch.nn.Module) -> Distance:
    """The offline stand-in for LPIPS: mean squared difference of the LeNet's fc84 features."""

    def d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (net.features(x) - net.features(y)).pow(2).flatten(1).mean(1)

    return d


def flavor(dist_name: str, space: str, n: int, eps: float) -> str:
    return f"{dist_name}/{interpolation_for(space)}-{space}/eps={eps:g}/N={n}/trim=1-99%"
