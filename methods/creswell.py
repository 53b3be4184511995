"""``creswell``: latent optimisation of Creswell & Bharath, "Inverting the Generator of a GAN".

Algorithm 1: start from z ~ p(z) and descend the reconstruction loss by gradient on z.
The objective is eq. 5, L(z, x) = BCE(G(z), x) - beta * (1/d) sum_i log N(z_i; 0, 1), with the
pixel BCE of eq. 1 on targets mapped to [0, 1] (``loss: bce``) or a pixel L2 (``loss: l2``).
RMSprop with learning rate 0.01 and beta = 0.01 as in §V. Batches are inverted at once with a
sum of per-image losses (§II-A), so every latent is independent of its batch-mates.

Beyond the paper: ``space: w`` or ``w+`` inverts into a mapping network's spaces when the
generator offers them (the Gaussian prior term applies to z only and is skipped there), and the
shared options of ``invbench.latent_opt`` (mean / encoder init, restarts, perceptual term,
NVIDIA schedule) apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.encoders import EncoderInverter, OptimEncoderConfig
from invbench.errors import UsageError
from invbench.inverter import FitContext, Inverter, Latents
from invbench.latent_opt import OptimisationInverter
from invbench.registry import METHODS


@METHODS.register("creswell")
class Creswell(OptimisationInverter, EncoderInverter, Inverter):
    @dataclass
    class Config(OptimEncoderConfig):
        """The shared optimisation options; the paper's values are in configs/methods/creswell.yaml."""

    def fit(self, ctx: FitContext) -> None:
        if self.cfg.prior_weight and self.cfg.space == "z" and self.generator.prior != "gaussian":
            raise UsageError(
                f"creswell: prior_weight (beta of eq. 5) is a Gaussian log-likelihood, but "
                f"generator '{self.generator.name}' draws z from a {self.generator.prior} prior, "
                "for which Creswell & Bharath clip z instead (§II-B). Use --method clipping "
                "--set mode=standard, or --set prior_weight=0."
            )
        super().fit(ctx)

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.invert_optimise(images), self.cfg.space)
