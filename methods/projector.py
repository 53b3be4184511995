"""``projector``: the StyleGAN2 projector (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", §5 and Appendix D).

For a target image x, find a latent w (one w for every layer) and the per-pixel noise maps n_i:

    min_{w, n}  LPIPS(G(w~, n), x) + alpha * sum_{i,j} L_{i,j}                        (App. D)

- w starts at the mean w_avg of 10,000 mapped draws; during the first three quarters of the
  run it is perturbed, w~ = w + N(0, (0.05 sigma_w t')^2) with t' = max(0, 1 - t / 0.75)^2 and
  sigma_w^2 the mean squared distance of those draws from w_avg (the "noise ramp");
- the noise maps start as N(0, I), are optimised with w, and are renormalised to zero mean and
  unit variance after every step; L_{i,j} = (mean n_{i,j}(x, y) n_{i,j}(x-1, y))^2 +
  (mean n_{i,j}(x, y) n_{i,j}(x, y-1))^2 on a pyramid of each map down to 8x8 (multi-scale
  autocorrelation), alpha = 10^5, so that the noise cannot carry the image's signal;
- Adam, 1,000 steps, learning rate 0.1 ramped up linearly over the first 5% and down with a
  cosine over the last 25% (``invbench.latent_opt.nvidia_lr``);
- the distance is LPIPS with VGG-16 features (Zhang et al. 2018) on images area-downsampled to
  256x256: ``distance: lpips-vgg``, built from verified files (the torchvision VGG-16 trunk, the
  lpips package's v0.1 linear layers); a run without them stops before any work, naming the
  file. ``lpips-alex`` or ``l2`` are explicit, recorded alternatives, never silent fallbacks.

The latent of an image is (w, n): space ``w,noise``, one flat row per image (w, then each noise
map flattened), which ``decode`` unpacks; ``optimize_noise: false`` projects w alone with the
generator's fixed noise (space ``w``). Images of a batch are projected at once, independently:
the loss is a sum of per-image terms, Adam is element-wise, and every random draw (initial
noise maps, the w perturbation) comes from a per-image seed made from the image's content.
Needs a StyleGAN2 (``--generator stylegan2``, a rosinality or NVlabs checkpoint).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from invbench.config import MAX_BATCH, MAX_LR, MAX_SAMPLES, MAX_STEPS, MAX_WEIGHT, bounded
from invbench.errors import UsageError
from invbench.inverter import FitContext, Inverter, Latents
from invbench.latent_opt import content_seeds, hashed_uniform, nvidia_lr
from invbench.progress import bar
from invbench.registry import METHODS

LPIPS_SIDE = 256  # App. D: "we downsample the images to 256x256 before computing LPIPS"


def hashed_normal(seeds: torch.Tensor, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """N(0, 1) draws per image from (image seed, step, coordinate) (Box-Muller on
    ``hashed_uniform``): an image's draws do not depend on its batch."""
    u1 = hashed_uniform(seeds, 2 * step, shape).clamp_min(1e-7)
    u2 = hashed_uniform(seeds, 2 * step + 1, shape)
    return torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)


def noise_regularisation(noise: list[torch.Tensor]) -> torch.Tensor:
    """App. D's L_{i,j}, per image: squared autocorrelations at lag 1 in x and y of every map,
    at every level of a 2x average-pooling pyramid down to 8x8."""
    reg = noise[0].new_zeros(len(noise[0]))
    for n in noise:
        while True:
            reg = reg + (n * n.roll(1, 3)).mean((1, 2, 3)).pow(2)
            reg = reg + (n * n.roll(1, 2)).mean((1, 2, 3)).pow(2)
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return reg


def normalise_(noise: list[torch.Tensor]) -> None:
    """Each map to zero mean and unit variance, per image (after every step, App. D)."""
    with torch.no_grad():
        for n in noise:
            n.sub_(n.mean((1, 2, 3), keepdim=True))
            n.mul_(n.pow(2).mean((1, 2, 3), keepdim=True).rsqrt())


@METHODS.register("projector")
class Projector(Inverter):
    @dataclass
    class Config:
        """App. D's values (NVlabs' ``projector.py`` defaults)."""

        steps: int = bounded(1000, ge=0, le=MAX_STEPS)
        lr: float = bounded(0.1, gt=0, le=MAX_LR)  # peak learning rate
        # fraction of the run over which lr rises linearly from 0
        lr_rampup: float = bounded(0.05, gt=0, le=1)
        lr_rampdown: float = bounded(0.25, gt=0, le=1)  # fraction over which it falls to 0 (cosine)
        # initial perturbation of w, in units of sigma_w
        w_noise: float = bounded(0.05, ge=0, le=MAX_WEIGHT)
        # fraction of the run with a perturbation (quadratic decay)
        noise_ramp: float = bounded(0.75, gt=0, le=1)
        noise_reg: float = bounded(1e5, ge=0, le=MAX_WEIGHT)  # alpha
        w_avg_samples: int = bounded(10_000, ge=2, le=MAX_SAMPLES)
        distance: Literal["lpips-vgg", "lpips-alex", "l2"] = "lpips-vgg"
        optimize_noise: bool = True
        # images projected at once (memory only; results do not depend)
        batch_size: int = bounded(8, ge=1, le=MAX_BATCH)

    @classmethod
    def preflight(cls, cfg: Config, has_labels: bool = False) -> None:
        """Before any work: the LPIPS trunk the distance needs is on disk, or stop naming it."""
        if cfg.distance != "l2":
            _lpips_files(cfg.distance)

    # -- set-up -------------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> None:
        self.preflight(self.cfg)
        gen = self.generator
        if gen is None or not callable(getattr(gen, "make_noise", None)):
            name = getattr(gen, "name", "none")
            raise UsageError(
                f"method 'projector' projects into a StyleGAN2's w and noise inputs; generator "
                f"'{name}' has none. Use --generator stylegan2."
            )
        self.device = ctx.device
        self._setup()

    def _setup(self) -> None:
        gen = self.generator
        assert gen is not None
        # w_avg and sigma_w from seeded draws: sigma_w^2 = E ||w - w_avg||^2 (App. D).
        g = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            z = torch.randn(self.cfg.w_avg_samples, gen.z_dim, generator=g).to(gen.device)
            w = torch.cat([gen.to_space(c, "w") for c in z.split(1000)])
        self.w_avg = w.mean(0)
        self.w_std = float((w - self.w_avg).pow(2).sum(1).mean().sqrt())
        self.noise_shapes = [tuple(s[1:]) for s in gen.net.noise_shapes()]  # type: ignore[union-attr]
        self.dist = _distance(self.cfg.distance, self.device)

    @property
    def space(self) -> str:
        return "w,noise" if self.cfg.optimize_noise else "w"

    def flavor(self) -> dict[str, str]:
        return {"perceptual": {"l2": "pixel-l2"}.get(self.cfg.distance, self.cfg.distance)}

    # -- the packed latent ----------------------------------------------------------------------
    def pack(self, w: torch.Tensor, noise: list[torch.Tensor]) -> torch.Tensor:
        if not self.cfg.optimize_noise:
            return w
        return torch.cat([w] + [n.flatten(1) for n in noise], 1)

    def unpack(self, lat: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        gen = self.generator
        assert gen is not None
        w = lat[:, : gen.w_dim]  # type: ignore[union-attr]
        if not self.cfg.optimize_noise:
            return w, None
        sizes = [math.prod(s) for s in self.noise_shapes]
        parts = lat[:, gen.w_dim :].split(sizes, 1)  # type: ignore[union-attr]
        return w, [p.reshape(len(lat), *s) for p, s in zip(parts, self.noise_shapes, strict=True)]

    def decode(self, latents: Latents) -> torch.Tensor:
        gen = self.generator
        assert gen is not None
        w, noise = self.unpack(latents.tensor.to(self.device))
        with torch.no_grad():
            return gen.synthesize(w, "w", noise=noise)  # type: ignore[call-arg]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Latents:
        """Prior draws: w = mapping(z) and fresh N(0, I) noise, as G samples."""
        gen = self.generator
        assert gen is not None
        with torch.no_grad():
            w = gen.sample_latent(n, "w", generator)
            noise = gen.make_noise(n, generator) if self.cfg.optimize_noise else []  # type: ignore[operator]
        return Latents(self.pack(w, noise), self.space)

    # -- projection ------------------------------------------------------------------------------
    def invert(self, images: torch.Tensor) -> Latents:
        if not hasattr(self, "w_avg"):
            raise UsageError("the projector is not set up: call fit() (the runner does).")
        bs = self.cfg.batch_size
        parts = [self.project(images[i : i + bs]) for i in range(0, len(images), bs)]
        return Latents(torch.cat(parts), self.space)

    def warmup(self, images: torch.Tensor) -> None:
        pass  # every step is the same work; nothing lazy to pay for before timing

    def project(self, target: torch.Tensor) -> torch.Tensor:
        cfg, gen = self.cfg, self.generator
        assert gen is not None
        target = target.to(self.device)
        b = len(target)
        seeds = torch.tensor(content_seeds(target, self.seed), device=self.device)
        w = self.w_avg.expand(b, -1).clone().requires_grad_(True)
        noise: list[torch.Tensor] = []
        if cfg.optimize_noise:
            for i, s in enumerate(self.noise_shapes):
                n = hashed_normal(seeds, -1 - i, s).to(self.device)
                noise.append(n.requires_grad_(True))
        opt = torch.optim.Adam([w, *noise], lr=cfg.lr, betas=(0.9, 0.999))
        prepared = self.dist.prepare(target)
        pbar = bar(cfg.steps, f"projector ({b} images)")
        for step in range(cfg.steps):
            t = step / max(1, cfg.steps)
            ramp = max(0.0, 1.0 - t / cfg.noise_ramp) ** 2
            lr = cfg.lr * nvidia_lr(t, cfg.lr_rampdown, cfg.lr_rampup)
            for group in opt.param_groups:
                group["lr"] = lr
            w_in = w + hashed_normal(seeds, step, (gen.w_dim,)) * (  # type: ignore[union-attr]
                self.w_std * cfg.w_noise * ramp
            )
            image = gen.synthesize(w_in, "w", noise=noise or None)  # type: ignore[call-arg]
            loss = self.dist.distance(image, prepared)
            if noise:
                loss = loss + cfg.noise_reg * noise_regularisation(noise)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            if noise:
                normalise_(noise)
            pbar.update(1)
        pbar.close()
        return self.pack(w.detach(), [n.detach() for n in noise])


# -- the distance -----------------------------------------------------------------------------------
def _lpips_files(distance: str):
    """The verified trunk file of ``distance``, or a UsageError naming what is missing."""
    from invbench.metrics.weights import ALEXNET, VGG16, find_weights, missing_message

    spec = VGG16 if distance == "lpips-vgg" else ALEXNET
    path = find_weights(spec)
    if path is None:
        raise UsageError(
            f"distance={distance} (the projector's LPIPS): {missing_message(spec)} "
            "Or choose distance=l2 explicitly (recorded as the run's perceptual flavor)."
        )
    return path


class _Distance:
    """Per-image distance to prepared targets: LPIPS on <= 256 px images, or pixel L2."""

    def __init__(self, model: torch.nn.Module | None) -> None:
        self.model = model

    @staticmethod
    def _side(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > LPIPS_SIDE:  # App. D: area downsampling to 256x256
            x = F.adaptive_avg_pool2d(x, LPIPS_SIDE)
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        return target if self.model is None else self._side(target)

    def distance(self, x: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            return (x - prepared).pow(2).flatten(1).mean(1)
        return self.model(self._side(x), prepared).flatten()


def _distance(distance: str, device: torch.device) -> _Distance:
    if distance == "l2":
        return _Distance(None)
    from invbench.metrics.perceptual import build_lpips_model

    path = _lpips_files(distance)
    net = "vgg" if distance == "lpips-vgg" else "alex"
    return _Distance(build_lpips_model(path, net=net).to(device))
