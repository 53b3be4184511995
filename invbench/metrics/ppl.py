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

Registered as ``ppl`` (needs ``generator``): every run that scores its tracks records it for the
method's generator in the method's latent space (``eval.ppl_n`` pairs, drawn from the run's seed),
so LIA's ``space=z`` and ``space=y`` runs give Table 2's two numbers. Its decoding is clocked as
metric time.

Hand-written: no maintained library computes PPL for an arbitrary generator and space
(torch-fidelity's ``ppl`` takes a generator of z only and uses its own LPIPS download).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from invbench.errors import UsageError
from invbench.inverter import Latents
from invbench.metrics.base import EvalContext, Metric, MetricSpec, Result, register
from invbench.metrics.perceptual import Unavailable, load_lpips

EPS = 1e-4  # Karras et al. 2019, §4.2: "epsilon = 1e-4"

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
    inv: Any,
    dist: Distance,
    n: int = 1000,
    eps: float = EPS,
    seed: int = 0,
    batch: int = 250,
) -> torch.Tensor:
    """The ``n`` per-sample values 1/eps^2 d(...) in the latent space of ``inv`` (an inverter:
    ``sample(n, generator)`` and ``decode(latents)``).

    Endpoints are ``inv.sample`` draws (prior samples expressed in that space); they and t come
    from a generator seeded by ``seed``, all drawn before decoding, so the estimate is
    reproducible and does not depend on ``batch`` (how many pairs are decoded at a time).
    """
    if n < 1 or eps <= 0 or batch < 1:
        raise ValueError(f"need n >= 1, eps > 0 and batch >= 1, got n={n}, eps={eps}, {batch}")
    g = torch.Generator().manual_seed(seed)
    a, b = inv.sample(n, generator=g), inv.sample(n, generator=g)
    f = slerp if interpolation_for(a.space) == "slerp" else lerp
    if f is slerp and a.tensor.dim() != 2:
        raise ValueError(f"slerp needs one code per image, got shape {tuple(a.tensor.shape)}")
    # t in the latents' dtype: float64 latents get a float64 step (t + eps - t == eps to 1e-12).
    t = torch.rand((n,) + (1,) * (a.tensor.dim() - 1), generator=g).to(a.tensor)
    out = []
    for i in range(0, n, batch):
        ai, bi, ti = a.tensor[i : i + batch], b.tensor[i : i + batch], t[i : i + batch]
        p0, p1 = f(ai, bi, ti), f(ai, bi, ti + eps)
        with torch.no_grad():
            x0, x1 = inv.decode(Latents(p0, a.space)), inv.decode(Latents(p1, a.space))
            out.append(dist(x0, x1).double().cpu() / eps**2)
    return torch.cat(out)


def robust_mean(values: torch.Tensor, lo: float = 1.0, hi: float = 99.0) -> float:
    """The mean of the values between the lo-th and hi-th percentiles (StyleGAN's filter)."""
    a, b = torch.quantile(values, lo / 100), torch.quantile(values, hi / 100)
    keep = values[(values >= a) & (values <= b)]
    return float(keep.mean())


def ppl(inv: Any, dist: Distance, n: int = 1000, eps: float = EPS, seed: int = 0) -> float:
    """Perceptual path length of ``inv``'s generator in its latent space (see the module doc)."""
    return robust_mean(path_lengths(inv, dist, n, eps, seed))


def domain_distance(net: torch.nn.Module) -> Distance:
    """The offline stand-in for LPIPS: mean squared difference of the LeNet's fc84 features."""

    def d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (net.features(x) - net.features(y)).pow(2).flatten(1).mean(1)

    return d


class PerceptualPathLength(Metric):
    """``ppl`` of the run's method in its latent space (``EvalContext.model``): ``eval.ppl_n``
    pairs, distance LPIPS when its weights are found, else the domain LeNet's features."""

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        if ctx.model is None or not hasattr(ctx.model, "sample"):
            raise Unavailable("no generator to walk (only images are scored)")
        self.batch = int(getattr(ctx.cfg, "metric_batch", 500))
        try:
            lpips = load_lpips(ctx.device, getattr(ctx.cfg, "weights_dir", "") or None)
            self.dist: Distance = lpips
            self.dist_name = lpips.flavor
        except Unavailable:  # offline: the dataset's LeNet (Unavailable without labels)
            net = ctx.classifier()
            self.dist, self.dist_name = domain_distance(net), f"{net.flavor}-fc84"

    def compute(self) -> Result:
        n, model, name = int(self.ctx.cfg.ppl_n), self.ctx.model, self.spec.name
        try:
            values = path_lengths(model, self.dist, n, EPS, self.ctx.seed, self.batch)
        except (NotImplementedError, UsageError) as e:  # a space without prior samples
            return Result({name: None}, unavailable={name: f"{name} unavailable: {e}"})
        return Result({name: robust_mean(values)}, {name: flavor(self.dist_name, model.space, n)})


def flavor(dist_name: str, space: str, n: int, eps: float = EPS) -> str:
    return f"{dist_name}/{interpolation_for(space)}-{space}/eps={eps:g}/N={n}/trim=1-99%"


register(
    MetricSpec(
        "ppl",
        "perceptual path length of the method's generator in its latent space (Karras et al. "
        "2019; LIA Table 2)",
        fmt="{:.2f}",
        group="Latent",
        needs="generator",
        track=None,
        flavor="distance/interpolation-space/eps/N/trim",
    ),
    PerceptualPathLength,
)
