"""``dcgan``: the DCGAN of Radford et al. (2016) scaled to small images, as Creswell inverts.

z (N(0, I)) -> linear projection to a 4x4 map -> [ConvT 4x4 stride 2, BN, ReLU] x (log2(r) - 3)
-> ConvT to the image channels -> tanh. The first layer is a plain ``nn.Linear`` named ``fc`` so
closed-form direction methods (SeFa, steerability) can read its weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from invbench.config import MAX_WIDTH, bounded
from invbench.generators.base import GanTraining, Generator, validate_training
from invbench.registry import GENERATORS


def _n_up(resolution: int) -> int:
    n = int(math.log2(resolution)) - 2
    if n < 1 or 4 * 2**n != resolution:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return n


class DCGANDecoder(nn.Module):
    def __init__(self, z_dim: int, channels: int, resolution: int, ngf: int) -> None:
        super().__init__()
        n_up = _n_up(resolution)
        ch = ngf * 2 ** (n_up - 1)
        self.top = ch
        self.fc = nn.Linear(z_dim, ch * 16)
        layers: list[nn.Module] = [nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
        for _ in range(n_up - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(len(z), self.top, 4, 4))


class DCGANDiscriminator(nn.Module):
    """Strided convolutions down to 4x4, then a linear logit; ``features`` exposes the trunk.

    ``norm``: BatchNorm (DCGAN), GroupNorm(1) = layer norm (WGAN-GP's per-sample critic), none, or
    spectral normalisation of every weight (Miyato et al. 2018, eq. 8: W / sigma(W)).
    """

    def __init__(self, channels: int, resolution: int, ndf: int, norm: str = "batch") -> None:
        super().__init__()
        n_down = _n_up(resolution)
        layers: list[nn.Module] = []
        ch_in, ch = channels, ndf
        sn = nn.utils.parametrizations.spectral_norm if norm == "spectral" else (lambda m: m)
        for i in range(n_down):
            bias = norm in ("none", "spectral") or i == 0
            layers.append(sn(nn.Conv2d(ch_in, ch, 4, 2, 1, bias=bias)))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(ch))
            elif i > 0 and norm == "layer":
                layers.append(nn.GroupNorm(1, ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch_in, ch = ch, ch * 2
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = ch_in * 16
        self.logit = sn(nn.Linear(self.feature_dim, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit(self.trunk(x)).squeeze(1)


@GENERATORS.register("dcgan")
class DCGAN(Generator):
    """Non-saturating GAN loss, Adam(2e-4, 0.5), BatchNorm in G, layer norm in D, EMA of G."""

    @dataclass
    class Config(GanTraining):
        z_dim: int = bounded(32, ge=1, le=MAX_WIDTH)
        ngf: int = bounded(16, ge=1, le=MAX_WIDTH)
        ndf: int = bounded(16, ge=1, le=MAX_WIDTH)
        # Layer norm, not DCGAN's BatchNorm, in D: with BatchNorm, one generator seed in three
        # collapsed to a few modes on digits (creswell test mse 0.107 vs 0.020-0.036); with
        # layer norm all three seeds gave 0.013-0.016 (notes/session-2.md has the commands).
        d_norm: Literal["batch", "layer", "none", "spectral"] = "layer"

        def validate(self) -> None:
            if self.z_dim < 1 or self.ngf < 1 or self.ndf < 1:
                raise ValueError("z_dim, ngf and ndf must be positive")
            validate_training(self)

    def __init__(self, cfg: Config, channels: int, resolution: int) -> None:
        super().__init__(cfg, channels, resolution)
        self.net = DCGANDecoder(cfg.z_dim, channels, resolution, cfg.ngf)

    def synthesize(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        self.check_space(space)
        self.check_latent(latent, space)
        return self.net(latent)

    def make_discriminator(self) -> nn.Module:
        return DCGANDiscriminator(self.channels, self.resolution, self.cfg.ndf, self.cfg.d_norm)
