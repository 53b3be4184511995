"""Hybrid inversion: a learned encoder's guess refined by latent optimisation.

- ``hybrid`` (Zhu et al. 2016, "Generative Visual Manipulation on the Natural Image Manifold",
  §3.2): the encoder's prediction E(x) initialises the optimisation of the reconstruction loss.
- ``hybrid-domain`` (Zhu et al. 2020, in-domain inversion; survey eq. 23): start from E(x) of
  the in-domain encoder and minimise
  ||x - G(z)||^2 + l1' ||F(x) - F(G(z))||^2 + l2' ||z - E(G(z))||^2,
  the last term keeping z where the encoder maps the generator's own images (in-domain).

The encoder is trained in ``fit`` by the shared ``invbench.encoders`` code and cached by the
runner; the optimisation is the shared batched loop of ``invbench.latent_opt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.config import MAX_WEIGHT, bounded
from invbench.encoders import EncoderInverter, OptimEncoderConfig
from invbench.inverter import Inverter, Latents
from invbench.latent_opt import OptimisationInverter
from invbench.registry import METHODS

#: The optimisation's settings: ``fit`` trains the encoder only, so a row with ``steps=0`` (the
#: method's own start, survey §4.1.3) reuses the encoder of the full method. The perceptual
#: weight stays in the key: it decides whether ``fit`` loads the feature network.
OPTIM_FIELDS = frozenset(
    {"steps", "lr", "optimizer", "loss", "prior_weight", "restarts", "schedule", "batch_size"}
)


@dataclass
class HybridConfig(OptimEncoderConfig):
    init: str = "encoder"  # type: ignore[assignment]

    def validate(self) -> None:
        super().validate()
        if self.init != "encoder":
            raise ValueError("hybrid methods start from the encoder: init=encoder")


@METHODS.register("hybrid")
class Hybrid(OptimisationInverter, EncoderInverter, Inverter):
    Config = HybridConfig
    inference_fields = OPTIM_FIELDS

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.invert_optimise(images), self.cfg.space)


@METHODS.register("hybrid-domain")
class HybridDomain(OptimisationInverter, EncoderInverter, Inverter):
    inference_fields = OPTIM_FIELDS | {"domain_weight"}

    @dataclass
    class Config(HybridConfig):
        domain_weight: float = bounded(2.0, ge=0, le=MAX_WEIGHT)  # lambda_2' of eq. 23

        def validate(self) -> None:
            super().validate()
            if self.domain_weight < 0:
                raise ValueError("domain_weight must be >= 0")

    def extra_loss(self, z: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        # Eq. 23's encoder regulariser ||z - E(G(z))||^2, per image, through the frozen E.
        assert self.encoder is not None
        return self.cfg.domain_weight * (z - self.encoder(recon)).pow(2).flatten(1).mean(1)

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.invert_optimise(images), self.cfg.space)
