"""``encoder`` and ``encoder-domain``: learned inversion, one forward pass per image.

- ``encoder`` regresses the latents of generator samples (survey eq. 21):
  min_E || z - E(G(z)) ||^2; it never sees a real image during training.
- ``encoder-domain`` is the in-domain encoder of Zhu et al. 2020 (survey eq. 22): trained on
  real training images through the frozen generator with pixel + perceptual + adversarial loss,
  a discriminator trained alongside. The zoo caches generators without their discriminators, so
  D is a fresh one from ``generator.make_discriminator()`` rather than the GAN's own, fine-tuned.

Both are the shared ``invbench.encoders`` code with different losses (see their YAML files).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.encoders import EncoderConfig, EncoderInverter
from invbench.inverter import Inverter, Latents
from invbench.registry import METHODS


@dataclass
class EncoderMethodConfig(EncoderConfig):
    space: str = "z"  # z, w or w+ (whichever the generator offers)


@METHODS.register("encoder")
class LatentEncoder(EncoderInverter, Inverter):
    Config = EncoderMethodConfig

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.encode(images), self.space)


@METHODS.register("encoder-domain")
class DomainEncoder(EncoderInverter, Inverter):
    @dataclass
    class Config(EncoderMethodConfig):
        def validate(self) -> None:
            super().validate()
            if self.enc_loss != "recon":
                raise ValueError("encoder-domain trains on real images: enc_loss=recon (eq. 22)")

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.encode(images), self.space)
