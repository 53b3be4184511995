"""``restyle``: iterative residual refinement (Alaluf et al. 2021, "ReStyle", §3).

An encoder sees the target and the current reconstruction, x ++ G(w_t), and predicts a latent
update: w_{t+1} = w_t + E(x, G(w_t)), from w_0 = the mean latent. A handful of steps
(``enc_iters``) at training and, unless ``invert_iters`` says otherwise, at inversion; training
sums the reconstruction losses (pixel L2 + perceptual) of every step on real training images,
with no gradient across steps. The loop is the shared ``invbench.encoders`` code with
``enc_iters > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.artifacts import later
from invbench.config import BOUNDS, Bounds
from invbench.encoders import EncoderInverter
from invbench.inverter import Inverter, Latents
from invbench.methods.encoder import EncoderMethodConfig
from invbench.registry import METHODS


@METHODS.register("restyle")
class ReStyle(EncoderInverter, Inverter):
    # The rows of one suite that read a trained encoder after t steps share that encoder.
    inference_fields = frozenset({"invert_iters"})

    @dataclass
    class Config(EncoderMethodConfig):
        # Refinement steps at inversion (0 = enc_iters, as trained). Inference only: it reads
        # one trained encoder's reconstruction after step t = 1 .. N (ReStyle's premise: each
        # step brings the reconstruction closer to the target).
        invert_iters: int = later(0, since=2, **{BOUNDS: Bounds(ge=0, le=100)})

        def validate(self) -> None:
            super().validate()
            if self.enc_iters < 1 or self.enc_loss != "recon":
                raise ValueError("restyle needs enc_iters >= 1 and enc_loss=recon")
            if self.invert_iters < 0:
                raise ValueError("invert_iters must be >= 0 (0 = enc_iters)")

    def encode_iters(self) -> int:
        return int(self.cfg.invert_iters or self.cfg.enc_iters)

    def invert(self, images: torch.Tensor) -> Latents:
        return Latents(self.encode(images), self.space)
