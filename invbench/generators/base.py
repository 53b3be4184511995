"""The generator interface every inversion method sees.

A generator offers latent spaces (``z`` always; ``w`` and ``w+`` when it has a mapping network),
samples latents in any of them, and synthesises images in [-1, 1] from them. It is always used
in eval mode with frozen weights: batch statistics never couple the images of a batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from invbench.config import MAX_BATCH, MAX_LR, MAX_SEED, MAX_STEPS, MAX_WEIGHT, bounded


@dataclass
class GanTraining:
    """Training hyper-parameters shared by every GAN of the zoo (one place for defaults).

    The loss fields are read by ``invbench.generators.train.train_gan``; a variant changes their
    defaults in its own ``Config`` and cites its paper in ``configs/generators/<name>.yaml``.
    """

    steps: int = bounded(1500, ge=1, le=MAX_STEPS)
    batch_size: int = bounded(64, ge=1, le=MAX_BATCH)
    lr_g: float = bounded(2e-4, gt=0, le=MAX_LR)
    lr_d: float = bounded(2e-4, gt=0, le=MAX_LR)
    beta1: float = bounded(0.5, ge=0, lt=1)
    beta2: float = bounded(0.999, ge=0, lt=1)
    seed: int = bounded(0, ge=0, le=MAX_SEED)
    ckpt_every: int = bounded(250, ge=1, le=MAX_STEPS)
    loss: Literal["ns", "wgan-gp"] = "ns"  # non-saturating (Goodfellow et al.) or WGAN-GP
    # initial std of noise added to D's inputs, decays to 0
    instance_noise: float = bounded(0.0, ge=0, le=10)
    n_critic: int = bounded(1, ge=1, le=100)  # discriminator steps per generator step
    # lambda of WGAN-GP (Gulrajani et al. 2017, eq. 3)
    gp_weight: float = bounded(10.0, ge=0, le=MAX_WEIGHT)
    # R1 penalty gamma/2 E||grad D(x_real)||^2 (Mescheder et al. 2018)
    r1_gamma: float = bounded(0.0, ge=0, le=MAX_WEIGHT)
    # Decay of an exponential moving average of G's weights, the generator that is kept
    # (Karras et al. 2018, ProGAN §A.1; Yazici et al. 2019); 0 keeps the last iterate. Warmed
    # up as min(ema, (1+t)/(10+t)): at step 1,500 the decay in effect is 0.994 (horizon ~170
    # steps), at 300 it is 0.971; 0.999 itself is reached after ~9,000 steps.
    ema: float = bounded(0.999, ge=0, lt=1)

    # The training recipe beyond the fields, read by ``train_gan``; a variant overrides these
    # (``dcgan-noise`` decays its noise geometrically, ``wgan`` clips the critic's weights).
    def noise_std(self, step: int) -> float:
        """Std of the instance noise on D's inputs at ``step``: linear decay to 0."""
        return self.instance_noise * max(0.0, 1.0 - step / max(1, self.steps - 1))

    def optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """The optimiser of G and of D (DCGAN, Radford et al. 2016: Adam)."""
        return torch.optim.Adam(params, lr=lr, betas=(self.beta1, self.beta2))

    def constrain_critic(self, disc: nn.Module) -> None:
        """Called after every discriminator step (WGAN's weight clipping); nothing here."""


def validate_training(cfg: GanTraining) -> None:
    """Range checks of the shared training fields (called from each ``Config.validate``)."""
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.ckpt_every < 1:
        raise ValueError("steps, batch_size and ckpt_every must be positive")
    if cfg.lr_g <= 0 or cfg.lr_d <= 0:
        raise ValueError("lr_g and lr_d must be positive")
    if cfg.n_critic < 1:
        raise ValueError("n_critic must be >= 1")
    if cfg.instance_noise < 0 or cfg.gp_weight < 0 or cfg.r1_gamma < 0:
        raise ValueError("instance_noise, gp_weight and r1_gamma must be >= 0")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError("ema must be in [0, 1)")


class Generator(nn.Module):
    """Base class of registered generators. Subclasses set ``Config`` and build their layers."""

    name: ClassVar[str]
    Config: ClassVar[type]
    latent_spaces: ClassVar[tuple[str, ...]] = ("z",)
    #: The prior p(z) that ``sample_z`` draws from: N(0, I), or U[-1, 1]^d (``dcgan-uniform``).
    prior: ClassVar[Literal["gaussian", "uniform"]] = "gaussian"
    #: True for a generator loaded from a published checkpoint (``stylegan2``): never trained.
    pretrained: ClassVar[bool] = False

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
        """Shape of one latent code in ``space`` (without the batch dimension)."""
        self.check_space(space)
        return (self.z_dim,)

    def check_latent(self, latent: torch.Tensor, space: str) -> None:
        """Fail with a readable message when ``latent`` is not a batch of ``space`` codes."""
        shape = self.latent_shape(space)
        if tuple(latent.shape[1:]) != shape:
            from invbench.errors import UsageError

            raise UsageError(
                f"generator '{self.name}': a batch of '{space}' latents must have shape "
                f"[B, {', '.join(map(str, shape))}], got {list(latent.shape)}."
            )

    @classmethod
    def check_space(cls, space: str) -> None:
        """Refuse a latent space this generator does not offer (the runner asks before training)."""
        if space not in cls.latent_spaces:
            from invbench.errors import UsageError

            raise UsageError(
                f"generator '{cls.name}' has no latent space '{space}'; it offers "
                f"{', '.join(cls.latent_spaces)}. Set space= to one of those."
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

    def training_forward(self, z: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """The generator's forward pass while it is trained (style mixing, noise draws).

        Any randomness must come from ``rng`` so that an interrupted training resumes exactly.
        """
        return self.synthesize(z, "z")

    def make_discriminator(self) -> nn.Module:
        raise NotImplementedError

    def train_model(
        self,
        data: Any,
        key: str,
        device: str | torch.device = "cpu",
        on_step: Any = None,
    ) -> float:
        """Train on ``data`` (the train split: a tensor, or ``invbench.data.Streamed`` when it
        does not fit in memory) and return the training seconds. The zoo's GANs train with
        ``train_gan``; a generator with another objective (the autoencoder) overrides this."""
        from invbench.generators.train import train_gan

        return train_gan(self, data, key, device=device, on_step=on_step)

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
