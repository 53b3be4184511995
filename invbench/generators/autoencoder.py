"""``autoencoder``: the plain L2 autoencoder, the lower bound of the ICLR 2020 latent-space study.

Encoder e and decoder d are trained jointly on L = ||d(e(x)) - x||^2 (eq. 3 of
"The Impact of the Latent Space on GAN Inversion"; mean over pixels here, which only rescales
the learning rate), with no regularisation, by Adam with its default hyper-parameters, as the
study does. The decoder is the ``dcgan`` decoder (same ``DCGANDecoder``, same ``z_dim``,
``ngf``); the encoder is the ``dcgan`` discriminator's trunk with a linear head to ``z_dim``
(the study uses its discriminator architecture as the encoder).

An autoencoder has no prior, yet the zoo's ``z`` space is sampled from N(0, I). After training,
a Gaussian N(mu, L L^T) is fitted to the codes e(x) of the training split, and the generator's
``z`` is the whitened code: ``synthesize(z) = d(mu + L z)``, ``encode(x) = L^-1 (e(x) - mu)``.
This affine reparametrisation leaves every reconstruction d(e(x)) unchanged, makes random
samples follow the codes' second-order statistics, and gives the optimisers' N(0, I)
initialisation and prior term a sensible scale. ``encode`` is the amortised inverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from invbench import distributed
from invbench.config import MAX_BATCH, MAX_LR, MAX_SEED, MAX_STEPS, MAX_WIDTH, bounded
from invbench.generators.base import Generator
from invbench.generators.dcgan import DCGANDecoder, DCGANDiscriminator
from invbench.generators.train import Checkpointer, StepHook, TrainingLoop
from invbench.registry import GENERATORS


class DCGANEncoder(nn.Module):
    """The DCGAN discriminator's convolutional trunk, then a linear map to ``z_dim``."""

    def __init__(self, channels: int, resolution: int, ndf: int, z_dim: int) -> None:
        super().__init__()
        disc = DCGANDiscriminator(channels, resolution, ndf, norm="batch")
        self.trunk = disc.trunk
        self.fc = nn.Linear(disc.feature_dim, z_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x))


@GENERATORS.register("autoencoder")
class Autoencoder(Generator):
    """Decoder = the generator; ``encoder`` / ``encode`` give the latent of an image directly."""

    @dataclass
    class Config:
        z_dim: int = bounded(32, ge=1, le=MAX_WIDTH)
        ngf: int = bounded(16, ge=1, le=MAX_WIDTH)
        ndf: int = bounded(16, ge=1, le=MAX_WIDTH)
        steps: int = bounded(1500, ge=1, le=MAX_STEPS)
        batch_size: int = bounded(64, ge=1, le=MAX_BATCH)
        lr: float = bounded(1e-3, gt=0, le=MAX_LR)  # Adam's defaults, as the study trains its AE
        beta1: float = bounded(0.9, ge=0, lt=1)
        beta2: float = bounded(0.999, ge=0, lt=1)
        seed: int = bounded(0, ge=0, le=MAX_SEED)
        ckpt_every: int = bounded(250, ge=1, le=MAX_STEPS)

        def validate(self) -> None:
            if min(self.z_dim, self.ngf, self.ndf, self.steps, self.batch_size) < 1:
                raise ValueError("z_dim, ngf, ndf, steps and batch_size must be positive")
            if self.ckpt_every < 1 or self.lr <= 0:
                raise ValueError("ckpt_every and lr must be positive")

    def __init__(self, cfg: Config, channels: int, resolution: int) -> None:
        super().__init__(cfg, channels, resolution)
        self.net = DCGANDecoder(cfg.z_dim, channels, resolution, cfg.ngf)
        self.encoder = DCGANEncoder(channels, resolution, cfg.ndf, cfg.z_dim)
        # The Gaussian fitted to the codes after training (identity until then).
        self.register_buffer("code_mean", torch.zeros(cfg.z_dim))
        self.register_buffer("code_chol", torch.eye(cfg.z_dim))

    def synthesize(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        self.check_space(space)
        self.check_latent(latent, space)
        return self.net(self.code_mean + latent @ self.code_chol.t())

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The z latent of ``images`` (whitened codes): synthesize(encode(x)) = d(e(x))."""
        code = self.encoder(images) - self.code_mean
        return torch.linalg.solve_triangular(self.code_chol, code.t(), upper=False).t()

    def train_model(
        self,
        data: torch.Tensor,
        key: str,
        device: str | torch.device = "cpu",
        on_step: StepHook | None = None,
    ) -> float:
        """Minimise eq. 3 by Adam; checkpointed and divergence-guarded like ``train_gan``;
        return the training seconds."""
        cfg = distributed.per_rank(self.cfg, "batch_size")  # each rank's share (torchrun)
        self.to(device).train()
        opt = torch.optim.Adam(self.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        rng = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        ckpt = Checkpointer(key, {"ae": self}, {"opt": opt}, rng)
        start = ckpt.restore()
        data = data.to(device)
        loop = TrainingLoop(
            ckpt, start, cfg.steps, cfg.ckpt_every, f"train {self.name}", on_step=on_step
        )
        for step in loop:
            x = data[torch.randint(len(data), (cfg.batch_size,), generator=rng).to(device)]
            loss = F.mse_loss(self.net(self.encoder(x)), x)  # eq. 3
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loop.report(step, {"mse": (loss, ".4f")}, loss=loss)
        self.eval()
        self._fit_code_gaussian(data)
        return ckpt.elapsed()

    @torch.no_grad()
    def _fit_code_gaussian(self, data: torch.Tensor) -> None:
        codes = torch.cat([self.encoder(data[i : i + 512]) for i in range(0, len(data), 512)])
        codes = codes.double()
        mean = codes.mean(0)
        cov = torch.cov(codes.t(), correction=1).reshape(len(mean), len(mean))
        cov += (1e-5 * cov.diagonal().mean() + 1e-10) * torch.eye(len(mean), dtype=cov.dtype)
        self.code_mean.copy_(mean.float())
        self.code_chol.copy_(torch.linalg.cholesky(cov).float())
