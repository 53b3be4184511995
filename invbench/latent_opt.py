"""Batched latent optimisation, shared by the optimisation family of inverters.

All images of a batch are optimised at once, yet each latent is independent of its
batch-mates (Creswell & Bharath, §II-A, eqs. 2-4): the objective is a *sum* of per-image terms,
the optimisers used (RMSprop, Adam, SGD) keep element-wise statistics only, the generator runs
in eval mode (no batch statistics), and each image's random initialisation is seeded by its own
content, not by its position in the batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from invbench.generators.base import Generator
from invbench.progress import bar

LOG_2PI = math.log(2 * math.pi)


@dataclass
class OptimConfig:
    """Hyper-parameters shared by every optimisation-based inverter (defaults in one place)."""

    space: str = "z"
    steps: int = 300
    lr: float = 0.01
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    loss: Literal["l2", "bce"] = "l2"
    prior_weight: float = 0.0  # beta of Creswell eq. 5 (Gaussian prior, z space only)
    init: Literal["random", "mean"] = "random"
    restarts: int = 1  # best-of-k random restarts, chosen per image by final loss
    schedule: Literal["constant", "nvidia"] = "constant"
    batch_size: int = 512

    def validate(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        if self.restarts < 1:
            raise ValueError("restarts must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def content_seeds(images: torch.Tensor, seed: int) -> list[int]:
    """A seed per image from its bytes: the init of an image never depends on its batch."""
    flat = images.detach().to("cpu", torch.float32).contiguous().numpy()
    out = []
    for x in flat:
        h = hashlib.blake2b(x.tobytes(), digest_size=8, key=str(seed).encode()).digest()
        out.append(int.from_bytes(h, "little") & 0x7FFF_FFFF_FFFF)
    return out


def init_latents(
    gen: Generator, images: torch.Tensor, space: str, init: str, seed: int, restart: int = 0
) -> torch.Tensor:
    """Initial latents for ``images``: random from the prior (content-seeded) or the mean."""
    if init == "mean":
        mean = gen.mean_latent(space)
        return mean.expand(len(images), *mean.shape).clone()
    rows = []
    for s in content_seeds(images, seed + 7919 * restart):
        g = torch.Generator().manual_seed(s)
        rows.append(gen.sample_latent(1, space, g))
    return torch.cat(rows).to(gen.device)


def pixel_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction loss, averaged over pixels and channels."""
    if kind == "bce":
        # Creswell eq. 1 / Algorithm 1 line 3: binary cross-entropy with targets in [0, 1].
        p = ((recon + 1) / 2).clamp(1e-6, 1 - 1e-6)
        t = ((target + 1) / 2).clamp(0, 1)
        per = F.binary_cross_entropy(p, t, reduction="none")
    else:
        per = (recon - target) ** 2
    return per.flatten(1).mean(1)


def gaussian_nll(z: torch.Tensor) -> torch.Tensor:
    """-(1/d) sum_i log N(z_i; 0, 1) per image (Creswell eq. 5's prior term, negated)."""
    return (0.5 * z.flatten(1) ** 2 + 0.5 * LOG_2PI).mean(1)


def nvidia_lr(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The StyleGAN2 projector's learning-rate multiplier: linear warm-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup)


PerImageLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PostStep = Callable[[torch.Tensor, int], None]


def make_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.RMSprop(params, lr=lr)


def optimise(
    gen: Generator,
    target: torch.Tensor,
    z0: torch.Tensor,
    cfg: OptimConfig,
    extra_loss: PerImageLoss | None = None,
    post_step: PostStep | None = None,
    desc: str = "invert",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise sum_i L_i(z_i) from ``z0``; return (latents, final per-image loss)."""
    z = z0.detach().clone().requires_grad_(True)
    opt = make_optimizer(cfg.optimizer, [z], cfg.lr)
    pbar = bar(cfg.steps, desc)

    def per_image(z_: torch.Tensor) -> torch.Tensor:
        recon = gen.synthesize(z_, cfg.space)
        loss = pixel_loss(recon, target, cfg.loss)
        if cfg.prior_weight and cfg.space == "z":
            loss = loss + cfg.prior_weight * gaussian_nll(z_)
        if extra_loss is not None:
            loss = loss + extra_loss(z_, recon)
        return loss

    for step in range(cfg.steps):
        if cfg.schedule == "nvidia":
            for group in opt.param_groups:
                group["lr"] = cfg.lr * nvidia_lr(step / max(1, cfg.steps))
        loss = per_image(z)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if post_step is not None:
            with torch.no_grad():
                post_step(z, step)
        pbar.update(1)
    pbar.close()
    with torch.no_grad():
        final = per_image(z)
    return z.detach(), final.detach()


class OptimisationInverter:
    """Mixin for inverters that optimise latents; subclasses may set hooks.

    ``post_step(z, step)`` runs after every optimiser step (projection, clipping);
    ``extra_loss(z, recon)`` adds a per-image term to the objective.
    """

    cfg: OptimConfig
    generator: Generator
    device: torch.device
    seed: int = 0

    def post_step(self, z: torch.Tensor, step: int) -> None:
        """Hook called in place on the latents after each step (none by default)."""

    def extra_loss(self, z: torch.Tensor, recon: torch.Tensor) -> torch.Tensor | None:
        return None

    def initial_latents(self, images: torch.Tensor, restart: int) -> torch.Tensor:
        return init_latents(
            self.generator, images, self.cfg.space, self.cfg.init, self.seed, restart
        )

    def optimise_batch(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        best_z: torch.Tensor | None = None
        best_loss: torch.Tensor | None = None
        has_extra = type(self).extra_loss is not OptimisationInverter.extra_loss
        has_post = type(self).post_step is not OptimisationInverter.post_step
        for r in range(self.cfg.restarts):
            z0 = self.initial_latents(images, r)
            z, loss = optimise(
                self.generator,
                images,
                z0,
                self.cfg,
                extra_loss=self.extra_loss if has_extra else None,  # type: ignore[arg-type]
                post_step=self.post_step if has_post else None,
                desc=f"{getattr(self, 'name', 'invert')} ({len(images)} images)",
            )
            if best_z is None or best_loss is None:
                best_z, best_loss = z, loss
            else:
                better = loss < best_loss
                best_z = torch.where(better.view(-1, *[1] * (z.ndim - 1)), z, best_z)
                best_loss = torch.minimum(loss, best_loss)
        assert best_z is not None
        return best_z
