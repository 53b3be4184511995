"""``bigan``: adversarial inference, BiGAN (Donahue et al., ICLR 2017) / ALI (Dumoulin et al.,
ICLR 2017) — LIA's Table 3 "ALI" column.

An encoder E: x -> z and a generator G: z -> x are trained jointly against one discriminator
D(x, z) that tells encoder pairs (x, E(x)), x ~ data, from generator pairs (G(z), z),
z ~ N(0, I) (BiGAN eq. 3 / ALI eq. 1). At the optimum E inverts G, but only in distribution:
no term asks G(E(x)) to reproduce x, which is why LIA reports high reconstruction errors for it.
Non-saturating losses with the labels swapped for G and E (BiGAN §3.4). Inversion is one
forward pass, z = E(x); decoding is G(z).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from invbench import distributed
from invbench.config import MAX_BATCH, MAX_LR, MAX_STEPS, MAX_WIDTH, bounded
from invbench.encoders import Encoder
from invbench.generators.base import Generator
from invbench.generators.dcgan import DCGAN, DCGANDiscriminator
from invbench.generators.train import Checkpointer, TrainingLoop
from invbench.inverter import FitContext, Inverter, Latents
from invbench.losses import gan_d_loss
from invbench.registry import METHODS

TRAIN_VERSION = 1
CKPT_KIND = "bigan"


class JointDiscriminator(nn.Module):
    """D(x, z): a DCGAN trunk for x, an MLP for z, and an MLP on their concatenation."""

    def __init__(
        self, channels: int, resolution: int, z_dim: int, ndf: int, hidden: int, norm: str
    ) -> None:
        super().__init__()
        self.x_path = DCGANDiscriminator(channels, resolution, ndf, norm)
        self.z_path = nn.Sequential(nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2))
        self.joint = nn.Sequential(
            nn.Linear(self.x_path.feature_dim + hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.x_path.features(x), self.z_path(z)], dim=1)
        return self.joint(h).squeeze(1)


@METHODS.register("bigan")
class BiGAN(Inverter):
    owns_generator = True
    trains = True
    train_version = TRAIN_VERSION

    @dataclass
    class Config:
        """Defaults; values with citations are in configs/methods/bigan.yaml."""

        z_dim: int = bounded(32, ge=1, le=MAX_WIDTH)
        ngf: int = bounded(16, ge=1, le=MAX_WIDTH)
        ndf: int = bounded(16, ge=1, le=MAX_WIDTH)
        nef: int = bounded(16, ge=1, le=MAX_WIDTH)
        d_hidden: int = bounded(256, ge=1, le=MAX_WIDTH)
        d_norm: Literal["batch", "layer", "none"] = "batch"
        steps: int = bounded(1500, ge=0, le=MAX_STEPS)
        batch_size: int = bounded(64, ge=1, le=MAX_BATCH)
        lr: float = bounded(2e-4, gt=0, le=MAX_LR)  # one rate for G, E and D
        adam_beta1: float = bounded(0.5, ge=0, lt=1)
        adam_beta2: float = bounded(0.999, ge=0, lt=1)
        ckpt_every: int = bounded(250, ge=1, le=MAX_STEPS)
        space: Literal["z"] = "z"

        def validate(self) -> None:
            if self.z_dim < 1 or min(self.ngf, self.ndf, self.nef, self.d_hidden) < 1:
                raise ValueError("z_dim, ngf, ndf, nef and d_hidden must be positive")
            if self.steps < 0 or self.batch_size < 1 or self.ckpt_every < 1:
                raise ValueError("steps must be >= 0, batch_size and ckpt_every positive")
            if self.lr <= 0:
                raise ValueError("lr must be positive")

    def __init__(
        self,
        cfg: Config,
        generator: Generator | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(cfg, None, device, seed)
        self._shape: tuple[int, int] | None = None

    def build(self, channels: int, resolution: int) -> None:
        cfg = self.cfg
        gcfg = DCGAN.Config(z_dim=cfg.z_dim, ngf=cfg.ngf, ndf=cfg.ndf)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = DCGAN(gcfg, channels, resolution)
            self.encoder = Encoder(channels, resolution, (cfg.z_dim,), cfg.nef)
            self.disc = JointDiscriminator(
                channels, resolution, cfg.z_dim, cfg.ndf, cfg.d_hidden, cfg.d_norm
            )
        self.generator = gen.to(self.device)
        self.encoder.to(self.device)
        self.disc.to(self.device)
        self._shape = (channels, resolution)

    def fit(self, ctx: FitContext) -> None:
        cfg = distributed.per_rank(self.cfg, "batch_size")  # each rank's share (torchrun)
        self.device = ctx.device
        self.build(ctx.splits.channels, ctx.splits.resolution)
        gen, enc, disc = self.generator, self.encoder, self.disc
        assert gen is not None
        key = self.fit_key(ctx)  # the runner's cache key: checkpoints resume under it
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt_ge = torch.optim.Adam(
            list(gen.parameters()) + list(enc.parameters()), lr=cfg.lr, betas=betas
        )
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=betas)
        rng = torch.Generator().manual_seed(self.seed)
        nets = {"gen": gen, "enc": enc, "disc": disc}
        opts = {"opt_ge": opt_ge, "opt_d": opt_d}
        ckpt = Checkpointer(key, nets, opts, rng, kind=CKPT_KIND, torch_rng=False)
        start = ckpt.restore()
        for m in (gen, enc, disc):
            m.train().requires_grad_(True)
        data = ctx.splits.train_images()
        loop = TrainingLoop(
            ckpt,
            start,
            cfg.steps,
            cfg.ckpt_every,
            "bigan (encoder + generator)",
            what="bigan",
            lower="the learning rate (--set lr=...)",
        )
        for step in loop:
            x = data[torch.randint(len(data), (cfg.batch_size,), generator=rng)].to(self.device)
            z = gen.sample_z(cfg.batch_size, rng)
            # D: encoder pairs are "real", generator pairs "fake" (BiGAN eq. 3).
            with torch.no_grad():
                ez, gx = enc(x), gen.synthesize(z)
            loss_d = gan_d_loss(disc(x, ez), disc(gx, z))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # G and E: the same game with the labels swapped (non-saturating, BiGAN §3.4).
            disc.requires_grad_(False)
            loss_ge = gan_d_loss(disc(gen.synthesize(z), z), disc(x, enc(x)))
            opt_ge.zero_grad(set_to_none=True)
            loss_ge.backward()
            opt_ge.step()
            disc.requires_grad_(True)
            loop.report(step, loss_d=loss_d, loss_ge=loss_ge)
        ckpt.drop()
        gen.eval().requires_grad_(False)
        enc.eval().requires_grad_(False)
        disc.eval().requires_grad_(False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        assert self.generator is not None and self._shape is not None
        out = {f"gen.{k}": v for k, v in self.generator.state_dict().items()}
        out.update({f"enc.{k}": v for k, v in self.encoder.state_dict().items()})
        out["meta.shape"] = torch.tensor(self._shape)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.generator is None:
            c, r = (int(v) for v in state["meta.shape"])
            self.build(c, r)
        assert self.generator is not None
        self.generator.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("gen.")})
        self.encoder.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("enc.")})
        self.generator.to(self.device).eval().requires_grad_(False)
        self.encoder.to(self.device).eval().requires_grad_(False)

    def invert(self, images: torch.Tensor) -> Latents:
        assert self.generator is not None, "call fit() or load_state_dict() first"
        with torch.no_grad():
            return Latents(self.encoder(images.to(self.device)), "z")
