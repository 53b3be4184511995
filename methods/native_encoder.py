"""``native-encoder``: inversion by the encoder a generator ships with.

The zoo's ``autoencoder`` is trained with its encoder (eq. 3 of the ICLR 2020 latent-space
study), so its reconstruction error d(e(x)) is the lower bound the study compares GAN inversion
with. This method exposes that encoder behind the ``Inverter`` interface: one forward pass, no
training of its own. Generators without an ``encode`` method are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.errors import UsageError
from invbench.inverter import FitContext, Inverter, Latents
from invbench.registry import METHODS


@METHODS.register("native-encoder")
class NativeEncoder(Inverter):
    @dataclass
    class Config:
        space: str = "z"

    def fit(self, ctx: FitContext) -> None:
        if not callable(getattr(self.generator, "encode", None)):
            name = getattr(self.generator, "name", "?")
            raise UsageError(
                f"method 'native-encoder' needs a generator with its own encoder (e.g. "
                f"--generator autoencoder); '{name}' has none."
            )

    def invert(self, images: torch.Tensor) -> Latents:
        with torch.no_grad():
            return Latents(self.generator.encode(images.to(self.device)), self.cfg.space)  # type: ignore[union-attr]

    def warmup(self, images: torch.Tensor) -> None:
        self.invert(images[:2])
