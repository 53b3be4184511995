"""``wgan``: the DCGAN architecture trained as the original Wasserstein GAN (weight clipping).

Arjovsky, Chintala & Bottou (2017), Algorithm 1 with its default values: the critic maximises
E[D(x)] - E[D(G(z))] for ``n_critic`` = 5 steps per generator step, every critic weight is
clipped to [-c, c] with c = 0.01 after each of its updates (the Lipschitz constraint), both
networks use RMSProp with learning rate 5e-5, batches of 64. The critic is the DCGAN
discriminator with BatchNorm, as in their experiments (clipping is per weight, not per sample,
so BatchNorm is allowed, unlike WGAN-GP). Not reproduced: their code's 100 critic steps for
the first 25 generator steps and every 500th (a warm-up of the released code, not Algorithm 1).

This is Creswell & Bharath's "WGAN [2]" of Table I; they train it "with additive noise whose
standard deviation decays during training": ``instance_noise`` > 0 turns on the same geometric
schedule as ``dcgan-noise`` (off by default: Arjovsky et al. add none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from invbench.config import bounded
from invbench.generators.dcgan import DCGAN
from invbench.generators.dcgan_noise import DecayingNoise
from invbench.registry import GENERATORS


@GENERATORS.register("wgan")
class WGAN(DCGAN):
    @dataclass
    class Config(DecayingNoise, DCGAN.Config):
        loss: Literal["wgan"] = "wgan"  # type: ignore[assignment]
        d_norm: Literal["batch", "layer", "none"] = "batch"  # type: ignore[assignment]
        n_critic: int = 5
        clip: float = bounded(0.01, gt=0, le=10)  # c of Algorithm 1
        lr_g: float = 5e-5
        lr_d: float = 5e-5
        instance_noise: float = 0.0

        def validate(self) -> None:
            super().validate()
            self.validate_noise()
            if self.clip <= 0:
                raise ValueError("clip must be > 0 (the critic's weights lie in [-clip, clip])")

        def optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
            # Algorithm 1 uses RMSProp (§3: with a momentum-based optimiser such as Adam the
            # critic's training became unstable).
            return torch.optim.RMSprop(params, lr=lr)

        @torch.no_grad()
        def constrain_critic(self, disc: nn.Module) -> None:
            for p in disc.parameters():  # Algorithm 1, line 7: w <- clip(w, -c, c)
                p.clamp_(-self.clip, self.clip)
