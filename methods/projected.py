"""``projected``: projected Adam onto the plausible ball of the Gaussian prior.

"Effect of the latent structure on clustering with GANs" (latent-space-impact-iclr2020), eq. 5:
z* = argmin_z ||G(z) - x||_2^2  s.t.  ||z||^2 <= dim(z) + 3 sqrt(2 dim(z)),
the 3-sigma bound of ||z||^2 ~ chi^2_d (mean d, variance 2d), solved with projected Adam: after
every step a latent outside the ball is scaled back onto its surface (the Euclidean projection).
The start point is projected too. Defined for the Gaussian z space only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from invbench.encoders import EncoderInverter, OptimEncoderConfig
from invbench.inverter import Inverter, Latents
from invbench.latent_opt import OptimisationInverter
from invbench.registry import METHODS


def ball_radius_sq(d: int) -> float:
    """Eq. 5's bound on ||z||^2 for z ~ N(0, I_d)."""
    return d + 3.0 * math.sqrt(2.0 * d)


def project_to_ball(z: torch.Tensor, r2: float) -> None:
    """In place: z <- z * min(1, r / ||z||) per image (no data-dependent branch, no sync)."""
    n2 = z.flatten(1).pow(2).sum(1).clamp_min(r2)
    z.mul_(torch.sqrt(r2 / n2).view(-1, *[1] * (z.ndim - 1)))


@METHODS.register("projected")
class Projected(OptimisationInverter, EncoderInverter, Inverter):
    @dataclass
    class Config(OptimEncoderConfig):
        def validate(self) -> None:
            super().validate()
            if self.space != "z":
                raise ValueError(
                    "projected: the ball of eq. 5 bounds the Gaussian prior of z; set space=z"
                )

    def post_step(self, z: torch.Tensor, step: int, seeds: torch.Tensor) -> None:
        project_to_ball(z, ball_radius_sq(z[0].numel()))

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.invert_optimise(images), "z")
