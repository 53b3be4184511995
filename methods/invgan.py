"""``invgan`` (DCGAN) and ``invgan-stylegan``: Ghosh et al., "InvGAN: Invertible GANs".

Architecture (§3.1): z ~ N(0, I) -> w = M(z) (mapping MLP) -> x = G(w); the discriminator D has
one trunk and two heads, the real/fake logit c and the inferred code w~ (w~, c = D(x)). After
training, ``invert`` is one forward pass of D's latent head and ``decode`` is G.

Objective, eq. 3 (every weight 1 in the paper, §4; configurable here):

    min_{G,M} [ max_D L_GAN + min_D E_{w ++ w_R} ( ||M(z) - w~||^2 + ||(w~ ++ w_R) - w~~||^2
                                                   + L_fm + MMD{w, w_R} ) ]

- w ++ w_R: half of the batch's codes come from the prior, half are codes inferred from real
  images, held without gradient (Fig. 1: the inferred codes of the previous batch).
- w~~: the inferred codes decoded and inferred once more (the second encoding cycle).
- L_fm (eq. 2): || f(x) - f(G(D(x))) ||^2 with f the discriminator's own trunk; the generator's
  gradients flow back through G into D's latent head on this real-image path (§3.2, "pixel
  space reconstruction loss"); f itself is used as a fixed feature extractor there.
- MMD{w, w_R}: RBF-kernel MMD between prior codes and inferred real codes, a direct signal to M.

The ablations of §4.4 are ``variant``: ``naive`` (GAN + latent reconstruction on prior codes,
eq. 5), ``augmented`` (plus inferred real codes in the batch), ``full`` (eq. 3).
Tiling (§3.3): an image n times the training resolution is inverted as n x n tiles, one code
each (space ``w-tiles``, shape [B, n, n, w_dim]) and decoded tile by tile.

||.||^2 is taken as the mean over elements (not the sum) so that weights of 1 balance terms of
different widths (a 32-d code, a 1024-d feature vector) as the paper's "all weights 1" intends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from invbench import artifacts, distributed
from invbench.config import MAX_BATCH, MAX_LR, MAX_STEPS, MAX_WEIGHT, MAX_WIDTH, bounded
from invbench.errors import DataError, UsageError
from invbench.generators.dcgan import DCGANDecoder, DCGANDiscriminator
from invbench.generators.mapping import MappingMLP
from invbench.generators.train import Checkpointer, TrainingLoop
from invbench.inverter import FitContext, Inverter, Latents
from invbench.losses import gan_d_loss, gan_g_loss, mmd_rbf, r1_penalty
from invbench.registry import METHODS

TRAIN_VERSION = 2  # bump when training changes its result, to invalidate checkpoints
Variant = Literal["naive", "augmented", "full"]


# -- networks ----------------------------------------------------------------------------------
class TwoHeadDiscriminator(nn.Module):
    """D with a shared trunk and two heads: real/fake logit c and inferred code w~ (§3.1)."""

    def __init__(self, body: nn.Module, feature_dim: int, w_dim: int) -> None:
        super().__init__()
        self.body = body  # exposes .features(x) -> [B, feature_dim] and .logit (a Linear)
        self.latent = nn.Linear(feature_dim, w_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(real/fake logit [B], inferred code w~ [B, w_dim], trunk features [B, F])."""
        h = self.body.features(x)
        return self.body.logit(h).squeeze(1), self.latent(h), h


class StyleLiteG(nn.Module):
    """G for the ``stylegan-lite`` backbone: one w broadcast to every style input (the paper
    inverts into StyleGAN's w, not w+, §2). Per-pixel noise is random while training and the
    generator's fixed buffer in eval mode, so inversion and decoding are deterministic."""

    def __init__(self, synthesis: nn.Module) -> None:
        super().__init__()
        self.synthesis = synthesis
        self.num_ws = int(synthesis.num_ws)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        ws = w[:, None, :].expand(-1, self.num_ws, -1)
        return self.synthesis(ws, noise_mode="random" if self.training else "const")


class InvGANNets(nn.Module):
    """The three trained networks; their state dict is what the runner caches."""

    def __init__(self, cfg: Any, channels: int, resolution: int) -> None:
        super().__init__()
        body: nn.Module
        if cfg.backbone == "stylegan2":
            self.M, self.G, body = _stylegan2(cfg, channels, resolution)
        else:
            if cfg.backbone == "dcgan":
                self.M = MappingMLP(cfg.z_dim, cfg.w_dim, cfg.mapping_layers)
                self.G = DCGANDecoder(cfg.w_dim, channels, resolution, cfg.ngf)
            else:
                self.M, self.G = _stylegan_lite(cfg, channels, resolution)
            body = DCGANDiscriminator(channels, resolution, cfg.ndf, cfg.d_norm)
        self.D = TwoHeadDiscriminator(body, body.feature_dim, cfg.w_dim)


def _stylegan2(cfg: Any, channels: int, resolution: int) -> tuple[nn.Module, ...]:
    """The paper scale (§4: "StyleGAN-based architecture on FFHQ"): StyleGAN2 config F's
    8-layer mapping network, its synthesis network at the data's resolution (one w for every
    layer, as the paper inverts into w) and its residual discriminator, whose penultimate
    features carry both heads (invbench.generators.stylegan2_training)."""
    from invbench.generators.stylegan2 import mapping_network
    from invbench.generators.stylegan2_training import (
        StyleGAN2Discriminator,
        Synthesis,
        config_f_channels,
    )

    if channels != 3:
        raise UsageError("backbone=stylegan2 makes RGB images; use an RGB dataset.")
    ch = config_f_channels(resolution, cfg.channel_max)
    mapping = mapping_network(cfg.z_dim, cfg.w_dim, cfg.mapping_layers)
    return mapping, Synthesis(resolution, cfg.w_dim, ch), StyleGAN2Discriminator(resolution, ch)


def _stylegan_lite(cfg: Any, channels: int, resolution: int) -> tuple[nn.Module, nn.Module]:
    # The zoo's style-based backbone: StyleGAN's 8-layer mapping (§4) and its synthesis network.
    from invbench.generators import stylegan_lite as sl

    zoo = sl.StyleGANLite.Config()
    mapping = sl.MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, zoo.mapping_lr_mul)
    synthesis = sl.StyleSynthesis(
        cfg.w_dim, channels, resolution, zoo.channel_base, zoo.channel_max, zoo.noise
    )
    return mapping, StyleLiteG(synthesis)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Use ``module`` as a fixed function: gradients reach its inputs, never its parameters."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


# -- the objective, one side at a time -----------------------------------------------------------
def mix_codes(w: torch.Tensor, w_real: torch.Tensor | None, variant: str) -> torch.Tensor:
    """w ++ w_R: half prior codes, half inferred real codes without gradient (§3.2, Fig. 1)."""
    if variant == "naive" or w_real is None:
        return w
    h = len(w) // 2
    return torch.cat([w[:h], w_real[: len(w) - h].detach()])


def discriminator_losses(
    nets: InvGANNets, real: torch.Tensor, z: torch.Tensor, w_real: torch.Tensor | None, cfg: Any
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """D's side of eq. 3: max L_GAN and min ||M(z) - w~||^2 (G and M fixed).

    Returns the loss terms and the codes inferred from ``real`` (detached), which become the
    next batch's w_R.
    """
    with torch.no_grad():
        w_in = mix_codes(nets.M(z), w_real, cfg.variant)
        fake = nets.G(w_in)
    if cfg.r1_gamma > 0:
        real = real.detach().requires_grad_(True)
    logit_r, w_r, _ = nets.D(real)
    logit_f, w_tilde, _ = nets.D(fake)
    parts = {
        "gan_d": gan_d_loss(logit_r, logit_f),  # eq. 1
        "latent_d": F.mse_loss(w_tilde, w_in),  # eq. 3 term 1 (eq. 5 in the naive model)
    }
    if cfg.r1_gamma > 0:  # the stylegan-lite backbone's own regulariser, not part of eq. 3
        parts["r1"] = r1_penalty(logit_r, real)
    return parts, w_r.detach()


def generator_losses(
    nets: InvGANNets, real: torch.Tensor, z: torch.Tensor, w_real: torch.Tensor | None, cfg: Any
) -> dict[str, torch.Tensor]:
    """G and M's side of eq. 3, plus (``full``) the real-image path whose gradients reach D.

    D is a fixed function here except on the real-image path of ``full``: w_R = D(x) with
    gradient, so minimising L_fm, the second cycle and the MMD also trains D's inference.
    """
    w = nets.M(z)
    w_in = mix_codes(w, w_real, cfg.variant)
    fake = nets.G(w_in)
    with frozen(nets.D):
        logit_f, w_tilde, _ = nets.D(fake)
    if cfg.latent_to_mapping:  # eq. 5 read as min over G and M of the latent term
        latent = F.mse_loss(w_tilde, w_in)
    else:  # §3.2: min over G and D only; M's codes enter as constants (a second pass of G)
        w_const = w_in.detach()
        with frozen(nets.D):
            latent = F.mse_loss(nets.D(nets.G(w_const))[1], w_const)
    parts = {
        "gan_g": gan_g_loss(logit_f),  # eq. 1, non-saturating
        "latent_g": latent,  # eq. 3 term 1
    }
    if cfg.variant != "full":
        return parts
    # Real-image path (§3.2): the discriminator infers codes that help G reproduce the image.
    _, w_r, h_real = nets.D(real)
    rec = nets.G(w_r)
    h = len(w_in) // 2
    again = nets.G(w_tilde[:h])
    with frozen(nets.D):
        _, w_rr, h_rec = nets.D(rec)
        _, w_tt, _ = nets.D(again)
    parts["fm"] = F.mse_loss(h_rec, h_real.detach())  # eq. 2, f = D's trunk
    # Second encoding cycle (eq. 3 term 2): ||(w~ ++ w_R) - w~~||^2, targets held fixed.
    cycle_in = torch.cat([w_tilde[:h], w_r])
    parts["cycle"] = F.mse_loss(torch.cat([w_tt, w_rr]), cycle_in.detach())
    parts["mmd"] = mmd_rbf(w, w_r, cfg.mmd_bandwidths or None)  # eq. 3 last term
    return parts


def weighted(parts: dict[str, torch.Tensor], cfg: Any) -> torch.Tensor:
    weights = {
        "gan_d": cfg.w_gan,
        "gan_g": cfg.w_gan,
        "latent_d": cfg.w_latent,
        "latent_g": cfg.w_latent,
        "cycle": cfg.w_cycle,
        "fm": cfg.w_fm,
        "mmd": cfg.w_mmd,
        "r1": cfg.r1_gamma / 2,  # R1 with weight gamma / 2 (Mescheder et al. 2018, eq. 9)
    }
    return sum(weights[k] * v for k, v in parts.items())  # type: ignore[return-value]


# -- the method ----------------------------------------------------------------------------------
@METHODS.register("invgan")
class InvGAN(Inverter):
    owns_generator = True
    trains = True
    train_version = TRAIN_VERSION

    @dataclass
    class Config:
        """Defaults; the paper's values are in configs/methods/invgan.yaml."""

        variant: Variant = "full"
        backbone: Literal["dcgan", "stylegan-lite", "stylegan2"] = "dcgan"
        z_dim: int = bounded(32, ge=1, le=MAX_WIDTH)
        w_dim: int = bounded(32, ge=1, le=MAX_WIDTH)
        mapping_layers: int = bounded(2, ge=1, le=64)
        # Learning-rate multiplier of the mapping network M (StyleGAN's lr_mul; LIA's NICE uses
        # 0.01 too). 1.0 = the paper's unstated default; see notes/session-2.md on M collapsing.
        mapping_lr_mul: float = bounded(1.0, gt=0, le=MAX_LR)
        # Whether the latent reconstruction ||M(z) - w~||^2 also trains M. §3.2 writes the naive
        # objective as min_{G,D} ||w - w~||; eq. 5 puts the term under min_{G,M}. Pulling M(z)
        # towards D's estimate w~ (a regression, shrunk towards the mean) contracts M's codes:
        # with True, M collapsed on 2 of 3 seeds (notes/session-2.md). M then learns from the
        # GAN loss and, in ``full``, from the MMD -- the term the paper names as M's signal.
        latent_to_mapping: bool = True
        ngf: int = bounded(16, ge=1, le=MAX_WIDTH)
        ndf: int = bounded(16, ge=1, le=MAX_WIDTH)
        # stylegan2: the widest feature map (config F: 512)
        channel_max: int = bounded(512, ge=1, le=MAX_WIDTH, since="paper")
        # Normalisation in D: "layer" keeps a code independent of its batch-mates and identical
        # in training and inversion (BatchNorm's running stats would mix real and fake batches).
        d_norm: Literal["batch", "layer", "none"] = "layer"
        steps: int = bounded(1500, ge=1, le=MAX_STEPS)
        batch_size: int = bounded(32, ge=2, le=MAX_BATCH)
        lr_g: float = bounded(2e-4, gt=0, le=MAX_LR)
        lr_d: float = bounded(2e-4, gt=0, le=MAX_LR)
        beta1: float = bounded(0.5, ge=0, lt=1)
        beta2: float = bounded(0.999, ge=0, lt=1)
        w_gan: float = bounded(1.0, ge=0, le=MAX_WEIGHT)
        w_latent: float = bounded(1.0, ge=0, le=MAX_WEIGHT)
        w_cycle: float = bounded(1.0, ge=0, le=MAX_WEIGHT)
        w_fm: float = bounded(1.0, ge=0, le=MAX_WEIGHT)
        w_mmd: float = bounded(1.0, ge=0, le=MAX_WEIGHT)
        # empty: median heuristic (invbench.losses)
        mmd_bandwidths: tuple[float, ...] = bounded((), gt=0, le=MAX_WEIGHT)
        # R1 on real images; the stylegan-lite backbone trains with it
        r1_gamma: float = bounded(0.0, ge=0, le=MAX_WEIGHT)
        ckpt_every: int = bounded(250, ge=1, le=MAX_STEPS)
        # write a sample grid every this many steps (0: never)
        sample_every: int = bounded(500, ge=0, le=MAX_STEPS)
        space: str = "w"

        def validate(self) -> None:
            if min(self.z_dim, self.w_dim, self.mapping_layers, self.ngf, self.ndf) < 1:
                raise ValueError("z_dim, w_dim, mapping_layers, ngf and ndf must be positive")
            if self.steps < 1 or self.batch_size < 2:
                raise ValueError("steps must be >= 1 and batch_size >= 2 (half prior, half real)")
            if min(self.lr_g, self.lr_d, self.mapping_lr_mul) <= 0:
                raise ValueError("lr_g, lr_d and mapping_lr_mul must be positive")
            weights = (
                self.w_gan,
                self.w_latent,
                self.w_cycle,
                self.w_fm,
                self.w_mmd,
                self.r1_gamma,
            )
            if min(weights) < 0:
                raise ValueError("loss weights and r1_gamma must be >= 0")
            if any(b <= 0 for b in self.mmd_bandwidths):
                raise ValueError("mmd_bandwidths must be positive")
            if self.ckpt_every < 1 or self.sample_every < 0:
                raise ValueError("ckpt_every must be >= 1 and sample_every >= 0")
            if self.space != "w":
                raise ValueError("invgan inverts into its own w space; leave space=w")

    def __init__(
        self,
        cfg: Config,
        generator: None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(cfg, None, device, seed)
        self.nets: InvGANNets | None = None
        self.channels = self.resolution = 0

    # -- building ------------------------------------------------------------------------------
    def _build(self, channels: int, resolution: int) -> InvGANNets:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            nets = InvGANNets(self.cfg, channels, resolution)
        self.channels, self.resolution = channels, resolution
        self.nets = nets.to(self.device)
        return self.nets

    def _ready(self) -> InvGANNets:
        if self.nets is None:
            raise UsageError("invgan has no trained model yet: call fit() or load_state_dict().")
        return self.nets

    def networks(self) -> dict[str, nn.Module]:
        if self.nets is None:
            return {}
        return {"mapping": self.nets.M, "generator": self.nets.G, "discriminator": self.nets.D}

    # -- training ------------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> None:
        cfg = distributed.per_rank(self.cfg, "batch_size")  # each rank's share (torchrun)
        data = ctx.splits.train_images()  # streamed when it does not fit in memory
        nets = self._build(ctx.splits.channels, ctx.splits.resolution)
        key = self.fit_key(ctx)  # the runner's cache key: checkpoints resume under it
        opt_d = torch.optim.Adam(nets.D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
        groups = [
            {"params": list(nets.M.parameters()), "lr": cfg.lr_g * cfg.mapping_lr_mul},
            {"params": list(nets.G.parameters())},
        ]
        opt_g = torch.optim.Adam(groups, lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        rng = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)  # per-pixel noise of the stylegan-lite backbone
        fixed_z = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(1234))
        data = data.to(self.device)
        n = len(data)
        w_real: torch.Tensor | None = None

        def carried() -> dict[str, Any]:  # the codes of the last batch, the next step's w_R
            assert w_real is not None
            return {"w_real": w_real.cpu()}

        def samples(done: int) -> None:
            if distributed.is_main() and (done % cfg.sample_every == 0 or done == cfg.steps):
                self._save_samples(key, done, fixed_z, data[:32])
                nets.train()

        opts = {"opt_d": opt_d, "opt_g": opt_g}
        ckpt = Checkpointer(key, {"nets": nets}, opts, rng, kind="invgan", extra=carried)
        start = ckpt.restore()
        if ckpt.loaded is not None:
            w_real = ckpt.loaded["w_real"].to(self.device)
        nets.train()
        loop = TrainingLoop(
            ckpt,
            start,
            cfg.steps,
            cfg.ckpt_every,
            f"train invgan ({cfg.variant})",
            what="invgan training",
            lower="the learning rates (--set lr_g=..., lr_d=...)",
            on_step=samples if cfg.sample_every else None,
        )
        for step in loop:
            real = data[torch.randint(n, (cfg.batch_size,), generator=rng).to(self.device)]
            if w_real is None:  # first step: no previous batch yet (Fig. 1)
                with torch.no_grad():
                    w_real = nets.D(real)[1]
            z_d = torch.randn(cfg.batch_size, cfg.z_dim, generator=rng).to(self.device)
            z_g = torch.randn(cfg.batch_size, cfg.z_dim, generator=rng).to(self.device)

            d_parts, w_next = discriminator_losses(nets, real, z_d, w_real, cfg)
            opt_d.zero_grad(set_to_none=True)
            weighted(d_parts, cfg).backward()
            opt_d.step()

            g_parts = generator_losses(nets, real, z_g, w_real, cfg)
            opt_g.zero_grad(set_to_none=True)
            opt_d.zero_grad(set_to_none=True)
            weighted(g_parts, cfg).backward()
            opt_g.step()
            if cfg.variant == "full":  # D's share of the real-image path (§3.2)
                opt_d.step()
            w_real = w_next
            loop.report(step, **d_parts, **g_parts)
        ckpt.drop()
        nets.eval()

    def _save_samples(self, key: str, step: int, fixed_z: torch.Tensor, real: torch.Tensor) -> None:
        """Random samples (top rows) and real images above their reconstructions (bottom)."""
        from torchvision.utils import make_grid, save_image

        nets = self._ready().eval()
        with torch.no_grad():
            samples = nets.G(nets.M(fixed_z[:32].to(self.device)))
            rec = nets.G(nets.D(real)[1])
        grid = torch.cat([samples, real, rec]).clamp(-1, 1).cpu() * 0.5 + 0.5
        path = artifacts.home() / "samples" / "invgan" / key / f"step_{step:06d}.png"
        with artifacts.atomic_path(path) as tmp:
            save_image(make_grid(grid, nrow=16, padding=1, pad_value=1.0), tmp, format="png")

    # -- the inverter interface ----------------------------------------------------------------
    def invert(self, images: torch.Tensor) -> Latents:
        """One forward pass of D's latent head; n x n tiles for images n times larger (§3.3)."""
        nets = self._ready().eval()
        r, size = self.resolution, images.shape[-1]
        if images.ndim != 4 or images.shape[-2] != size or size % r:
            raise DataError(
                f"invgan inverts square N x C x H x H images whose side is a multiple of the "
                f"training resolution {r}; got {tuple(images.shape)}. Resize the images."
            )
        x = images.to(self.device)
        n = size // r
        with torch.no_grad():
            if n == 1:
                return Latents(nets.D(x)[1], "w")
            tiles = x.unfold(2, r, r).unfold(3, r, r)  # B, C, n, n, r, r
            tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1], r, r)
            w = nets.D(tiles)[1]
        return Latents(w.view(len(x), n, n, -1), "w-tiles")

    def decode(self, latents: Latents) -> torch.Tensor:
        nets = self._ready().eval()
        w = latents.tensor.to(self.device)
        with torch.no_grad():
            if latents.space == "w":
                return nets.G(w)
            if latents.space != "w-tiles":
                raise UsageError(f"invgan decodes spaces 'w' and 'w-tiles', not {latents.space!r}.")
            b, n = w.shape[0], w.shape[1]
            x = nets.G(w.reshape(b * n * n, -1))
            c, r = x.shape[1], x.shape[-1]
            x = x.view(b, n, n, c, r, r).permute(0, 3, 1, 4, 2, 5)
            return x.reshape(b, c, n * r, n * r)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Latents:
        """w = M(z), z ~ N(0, I): the prior pushed through the mapping network (§3.1)."""
        nets = self._ready().eval()
        z = torch.randn(n, self.cfg.z_dim, generator=generator).to(self.device)
        with torch.no_grad():
            return Latents(nets.M(z), "w")

    @property
    def space(self) -> str:
        return "w"

    def state_dict(self) -> dict[str, torch.Tensor]:
        nets = self._ready()
        meta = {
            "meta.channels": torch.tensor(self.channels),
            "meta.resolution": torch.tensor(self.resolution),
        }
        return {**{k: v.detach().cpu() for k, v in nets.state_dict().items()}, **meta}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "meta.resolution" not in state:
            raise DataError("not an invgan state dict (no meta.resolution); retrain with fit().")
        nets = self._build(int(state["meta.channels"]), int(state["meta.resolution"]))
        nets.load_state_dict({k: v for k, v in state.items() if not k.startswith("meta.")})
        nets.eval()

    def flavor(self) -> dict[str, str]:
        return {"invgan": f"{self.cfg.backbone}/{self.cfg.variant}"}


@METHODS.register("invgan-stylegan")
class InvGANStyle(InvGAN):
    """InvGAN on the ``stylegan-lite`` backbone; defaults in configs/methods/invgan-stylegan.yaml."""

    @dataclass
    class Config(InvGAN.Config):
        backbone: Literal["dcgan", "stylegan-lite", "stylegan2"] = "stylegan-lite"
        z_dim: int = 64
        w_dim: int = 64
        mapping_layers: int = 8  # StyleGAN's 8-layer mapping network (§4)
        d_norm: Literal["batch", "layer", "none"] = "none"
        batch_size: int = 32
        lr_g: float = 2e-3
        lr_d: float = 2e-3
        beta1: float = 0.0
        beta2: float = 0.99
        r1_gamma: float = 0.1
