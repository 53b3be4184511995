"""``clipping``: stochastic clipping of Lipton & Tripathi, "Precise Recovery of Latent Vectors
from Generative Adversarial Networks" (2017).

Their GAN samples z ~ U[-1, 1]^d; plain clipping parks coordinates on the box's faces, so after
every gradient step each coordinate that left [-1, 1] is instead redrawn uniformly in [-1, 1],
element by element. The start point gets the same treatment. ``mode: standard`` is the plain
clipping stochastic clipping modifies, z <- clamp(z, -1, 1) (also Creswell & Bharath's rule for a
uniform prior, §II-B).

The box is the support of a uniform prior: on ``dcgan-uniform`` it is the paper's setting. On
the zoo's Gaussian generators (N(0, I)) we keep the paper's rule and its box: every iterate stays
in [-1, 1]^d, which holds 68% of each coordinate's prior mass, so there it is the paper's
constraint transplanted, not a Gaussian analogue (the Gaussian analogue is ``projected``). The
redraws come from a counter-based hash of (image content, restart, step, coordinate): an image's
path is the same whatever batch it is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from invbench.artifacts import later
from invbench.config import bounded
from invbench.encoders import EncoderInverter, OptimEncoderConfig
from invbench.inverter import Inverter, Latents
from invbench.latent_opt import OptimisationInverter, hashed_uniform
from invbench.registry import METHODS


def stochastic_clip(z: torch.Tensor, bound: float, seeds: torch.Tensor, step: int) -> None:
    """In place: coordinates with |z_i| > bound are redrawn from U[-bound, bound]."""
    u = hashed_uniform(seeds, step + 1, tuple(z.shape[1:])).to(z.dtype)
    z.copy_(torch.where(z.abs() > bound, (2 * u - 1) * bound, z))


@METHODS.register("clipping")
class Clipping(OptimisationInverter, EncoderInverter, Inverter):
    @dataclass
    class Config(OptimEncoderConfig):
        # the box [-bound, bound]^d of the paper's uniform prior
        bound: float = bounded(1.0, gt=0, le=1000)
        # Redraw, or clamp to the box; added with the default it had (keys unchanged).
        mode: Literal["stochastic", "standard"] = later("stochastic", since=2)

        def validate(self) -> None:
            super().validate()
            if self.space != "z":
                raise ValueError("clipping: the box applies to the generator's z; set space=z")
            if self.bound <= 0:
                raise ValueError("bound must be positive")

    def post_step(self, z: torch.Tensor, step: int, seeds: torch.Tensor) -> None:
        if self.cfg.mode == "standard":
            z.clamp_(-self.cfg.bound, self.cfg.bound)
        else:
            stochastic_clip(z, self.cfg.bound, seeds, step)

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.invert_optimise(images), "z")
