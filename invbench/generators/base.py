"""The generator interface every inversion method sees.

A generator offers latent spaces (``z`` always; ``w`` and ``w+`` when it has a mapping network),
samples latents in any of them, and synthesises images in [-1, 1] from them. It is always used
in eval mode with frozen weights: batch statistics never couple the images of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class GanTraining:
    """Training hyper-parameters shared by every generator of the zoo (one place for defaults)."""

    steps: int = 1500
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    ckpt_every: int = 250


class Generator(nn.Module):
    """Base class of registered generators. Subclasses set ``Config`` and build their layers."""

    name: ClassVar[str]
    Config: ClassVar[type]
    latent_spaces: ClassVar[tuple[str, ...]] = ("z",)

    def __init__(self, cfg: Any, channels: int, resolution: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.channels = channels
        self.resolution = resolution

    # -- latent spaces ---------------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        return int(self.cfg.z_dim)

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self.check_space(space)
        return (self.z_dim,)

    def check_space(self, space: str) -> None:
        if space not in self.latent_spaces:
            from invbench.errors import UsageError

            raise UsageError(
                f"generator '{self.name}' has no latent space '{space}'; it offers "
                f"{', '.join(self.latent_spaces)}. Set space= to one of those."
            )

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw from the prior p(z) = N(0, I)."""
        dev = self.device
        return torch.randn(n, self.z_dim, generator=generator, device="cpu").to(dev)

    def to_space(self, z: torch.Tensor, space: str) -> torch.Tensor:
        """Map prior samples z into ``space`` (identity for z)."""
        self.check_space(space)
        return z

    def sample_latent(
        self, n: int, space: str = "z", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.to_space(self.sample_z(n, generator), space)

    def mean_latent(self, space: str = "z", n: int = 4096) -> torch.Tensor:
        """The mean latent of ``space`` (zero for z; estimated from samples for w / w+)."""
        if space == "z":
            return torch.zeros(self.z_dim, device=self.device)
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return self.sample_latent(n, space, g).mean(0)

    # -- synthesis --------------------------------------------------------------------------
    def synthesize(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        raise NotImplementedError

    def make_discriminator(self) -> nn.Module:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def describe(self) -> dict[str, Any]:
        return {
            "generator": self.name,
            "latent_spaces": list(self.latent_spaces),
            "z_dim": self.z_dim,
            "resolution": self.resolution,
            "channels": self.channels,
        }
