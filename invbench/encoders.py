"""Learned encoders E: image -> latent of a frozen generator, and how they are trained.

One architecture and one training loop serve every encoder-based method:

- ``enc_loss: latent`` regresses the latents of generator samples (survey eq. 21):
  min_E || w - E(G(w)) ||^2 with w drawn from the prior in the chosen space.
- ``enc_loss: recon`` reconstructs real training images through the frozen generator
  (survey eq. 11; with the extra terms it is the in-domain encoder of Zhu et al. 2020, eq. 22):
  || x - G(E(x)) ||^2 + l1 || F(x) - F(G(E(x))) ||^2 - l2 E[D(G(E(x)))], the discriminator D
  trained alongside with the non-saturating loss and an R1 penalty on real images.
- ``enc_iters > 0`` makes the encoder residual (ReStyle, Alaluf et al. 2021, §3): it sees the
  target and the current reconstruction, w_{t+1} = w_t + E(x, G(w_t)), starting from the mean
  latent; training sums the losses of all iterations (gradients do not cross iterations).

Two architectures (``enc_arch``): ``dcgan``, strided convs and a linear head (the suite's CPU
encoder; GroupNorm, never BatchNorm, so an image's code does not depend on its batch), and
``psp``, the pSp-class encoder at paper scale (Richardson et al. 2021, §3; ``PSPEncoder``): an
IR-SE-50 body on 256x256 inputs with a feature pyramid and one map-to-style block per style
input for w+ (``GradualStyleEncoder``; ReStyle's ``BackboneEncoder`` on image ++ reconstruction
when ``enc_iters > 0``, §4.2), or one code from the pooled body for w and z
(``BackboneEncoderUsingLastLayerIntoW``); its body starts from ArcFace's IR-SE50 weights
(``enc_init: ir-se50``, as pSp does) and its codes are offsets from the mean latent in w / w+
(pSp's ``start_from_latent_avg``). It keeps BatchNorm as published; the encoder runs in eval
mode outside training, so codes still do not depend on the batch.
Training and inference run the encoder, the generator and the perceptual and discriminator
networks through the inverter's ``invbench.execution.Execution``; losses stay float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from invbench import distributed
from invbench.artifacts import later
from invbench.config import MAX_BATCH, MAX_LR, MAX_STEPS, MAX_WEIGHT, MAX_WIDTH, bounded
from invbench.errors import UsageError
from invbench.execution import PRECISIONS, Execution, plain
from invbench.generators.base import Generator
from invbench.inverter import FitContext
from invbench.latent_opt import (
    OptimConfig,
    Perceptual,
    PerceptualConfig,
    flavor_from_state,
    perceptual_for,
    perceptual_from_state,
    perceptual_state,
    pixel_loss,
)
from invbench.progress import bar


@dataclass
class EncoderConfig(PerceptualConfig):
    """Encoder architecture and training (prefixed ``enc_`` so they mix with OptimConfig)."""

    enc_loss: Literal["latent", "recon"] = "latent"
    # psp: the pSp-class encoder at paper scale. Fields added with the paper profile (issue
    # #19): ``later`` keeps them out of cache keys and record hashes at their defaults.
    enc_arch: Literal["dcgan", "psp"] = later("dcgan", since="paper")
    # psp: input side (pSp's transforms: 256)
    enc_input: int = bounded(256, ge=32, le=MAX_WIDTH, since="paper")
    # psp: the body from ArcFace IR-SE50 (model_ir_se50.pth, pSp's initialisation; the run
    # stops before training when the file is missing) or PyTorch's default initialisation.
    enc_init: Literal["ir-se50", "random"] = later("ir-se50", since="paper")
    # dcgan: channels of the first conv; doubled at every stride-2 block
    enc_width: int = bounded(32, ge=1, le=MAX_WIDTH)
    enc_steps: int = bounded(1500, ge=0, le=MAX_STEPS)
    enc_batch: int = bounded(64, ge=1, le=MAX_BATCH)
    enc_lr: float = bounded(1e-3, gt=0, le=MAX_LR)
    # lambda_1 of eq. 22 (recon only)
    enc_perceptual_weight: float = bounded(0.0, ge=0, le=MAX_WEIGHT)
    # lambda_2 of eq. 22 (recon only; 0 = no discriminator)
    enc_adv_weight: float = bounded(0.0, ge=0, le=MAX_WEIGHT)
    # gamma of the discriminator's R1 penalty (Zhu et al. 2020)
    enc_r1: float = bounded(10.0, ge=0, le=MAX_WEIGHT)
    enc_iters: int = bounded(0, ge=0, le=100)  # ReStyle iterations (0 = a plain, one-shot encoder)
    # lambda_ID of pSp / ReStyle's identity loss (0.1 for faces; recon only): the ArcFace
    # IR-SE50 file must be found (invbench.metrics.identity) or the run stops before training.
    enc_id_weight: float = bounded(0.0, ge=0, le=MAX_WEIGHT)

    def validate(self) -> None:
        if min(self.enc_width, self.enc_batch) < 1 or self.enc_steps < 0 or self.enc_iters < 0:
            raise ValueError("enc_width, enc_batch must be >= 1; enc_steps, enc_iters >= 0")
        if self.enc_lr <= 0:
            raise ValueError("enc_lr must be positive")
        if self.enc_loss == "latent" and (self.enc_perceptual_weight or self.enc_adv_weight):
            raise ValueError(
                "enc_perceptual_weight / enc_adv_weight need enc_loss=recon (eq. 22); "
                "enc_loss=latent regresses latents only (eq. 21)"
            )
        if self.enc_iters and self.enc_loss != "recon":
            raise ValueError("enc_iters > 0 (ReStyle) trains on reconstructions: enc_loss=recon")
        if self.enc_id_weight < 0 or (self.enc_id_weight and self.enc_loss != "recon"):
            raise ValueError("enc_id_weight must be >= 0 and needs enc_loss=recon")
        # Checked while the configuration resolves: before any training.
        if self.enc_id_weight or (self.enc_arch == "psp" and self.enc_init == "ir-se50"):
            from invbench.metrics.identity import require_identity_network

            require_identity_network()


@dataclass
class OptimEncoderConfig(OptimConfig, EncoderConfig):
    """Latent optimisation that may start from (or be regularised by) a learned encoder."""

    def validate(self) -> None:
        OptimConfig.validate(self)
        EncoderConfig.validate(self)


class Encoder(nn.Module):
    """Strided convs down to 4x4 (the DCGAN discriminator's trunk), then a linear head."""

    def __init__(
        self, in_channels: int, resolution: int, latent_shape: tuple[int, ...], width: int
    ) -> None:
        super().__init__()
        n_down = int(math.log2(resolution)) - 2
        if n_down < 1 or 4 * 2**n_down != resolution:
            raise UsageError(f"encoders need a power-of-two resolution >= 8, got {resolution}")
        layers: list[nn.Module] = []
        ch_in, ch = in_channels, width
        for i in range(n_down):
            layers.append(nn.Conv2d(ch_in, ch, 4, 2, 1))
            if i > 0:
                layers.append(nn.GroupNorm(min(8, ch), ch))
            layers.append(nn.LeakyReLU(0.2))
            ch_in, ch = ch, ch * 2
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.latent_shape = tuple(latent_shape)
        self.head = nn.Linear(ch_in * 16, math.prod(latent_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).view(len(x), *self.latent_shape)


class PSPEncoder(nn.Module):
    """A pSp-class network behind the ``Encoder`` interface: inputs resized to ``input_size``
    (bilinear with antialiasing, as PIL's resize in pSp's transforms), codes of
    ``latent_shape``, offset by ``mean`` when given (pSp's ``start_from_latent_avg``)."""

    def __init__(
        self,
        net: nn.Module,
        latent_shape: tuple[int, ...],
        input_size: int,
        mean: torch.Tensor | None,
    ) -> None:
        super().__init__()
        from invbench.published_encoders import IR_SE50

        self.net, self.latent_shape, self.input_size = net, tuple(latent_shape), input_size
        body = getattr(net, "body", None)
        self.widths = {
            "ir-se-50": [w for w, _ in IR_SE50],
            "styles": len(getattr(net, "styles", [])),
        }
        self.widths = self.widths if body is not None else {}
        self.register_buffer("mean", mean.detach().clone() if mean is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size:
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=True)
        out = self.net(x).reshape(len(x), *self.latent_shape)
        return out if self.mean is None else out + self.mean


def psp_encoder(gen: Generator, space: str, cfg: EncoderConfig, init: bool = True) -> PSPEncoder:
    """The pSp-class encoder for ``gen``'s ``space`` (see the module docstring); ``init``
    loads pSp's IR-SE50 initialisation when the configuration asks for it."""
    from invbench.published_encoders import build_fresh, load_ir_se50

    shape = gen.latent_shape(space)
    in_ch = gen.channels * (2 if cfg.enc_iters else 1)
    if len(shape) == 2:  # one code per style input
        etype = "BackboneEncoder" if cfg.enc_iters else "GradualStyleEncoder"
        net = build_fresh(etype, in_ch, n_styles=shape[0], w_dim=shape[1])
    else:  # one code
        net = build_fresh("BackboneEncoderUsingLastLayerIntoW", in_ch, w_dim=shape[0])
    if init and cfg.enc_init == "ir-se50":
        from invbench.metrics.identity import require_identity_network
        from invbench.metrics.weights import read_state_bytes

        path = require_identity_network()
        load_ir_se50(net, read_state_bytes(path.read_bytes(), str(path)))
    # ReStyle's residual steps start from the mean themselves; z has no mean offset in pSp.
    mean = gen.mean_latent(space).cpu() if space != "z" and not cfg.enc_iters else None
    return PSPEncoder(net, shape, cfg.enc_input, mean)


def build_encoder(gen: Generator, space: str, cfg: EncoderConfig, init: bool = True) -> nn.Module:
    """The encoder of ``cfg.enc_arch`` for ``gen``'s latent ``space`` (initial weights; ``init``
    False skips loading pretrained initial weights, for a state dict loaded next)."""
    if cfg.enc_arch == "psp":
        return psp_encoder(gen, space, cfg, init)
    in_ch = gen.channels * (2 if cfg.enc_iters else 1)
    return Encoder(in_ch, gen.resolution, gen.latent_shape(space), cfg.enc_width)


def encode(
    enc: nn.Module,
    gen: Generator,
    x: torch.Tensor,
    space: str,
    iters: int,
    mean: torch.Tensor,
    execution: Execution | None = None,
) -> torch.Tensor:
    """E(x); with ``iters`` > 0 the ReStyle loop from the mean latent (Alaluf et al., eq. 1)."""
    ex = execution if execution is not None else plain(x.device)
    enc_f = ex.wrap(enc)
    if not iters:
        return enc_f(x)
    synthesize = ex.wrap(gen.synthesize)
    lat = mean.expand(len(x), *mean.shape)
    rec = synthesize(lat, space)
    for _ in range(iters):
        lat = lat + enc_f(torch.cat([x, rec], 1))
        rec = synthesize(lat, space)
    return lat


def _r1(disc: nn.Module, real: torch.Tensor) -> torch.Tensor:
    # R1 (Mescheder et al. 2018): ||grad_x D(x)||^2 on real images.
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(real).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def train_encoder(
    enc: nn.Module,
    gen: Generator,
    space: str,
    cfg: EncoderConfig,
    images: torch.Tensor | None,
    perceptual: Perceptual | None,
    seed: int,
    device: torch.device,
    desc: str = "train encoder",
    identity: Any = None,
    execution: Execution | None = None,
) -> dict[str, float]:
    """Train ``enc`` in place against the frozen ``gen``; return the last losses.

    ``identity`` (an ``invbench.metrics.identity.IdentitySimilarity``) adds pSp's identity loss
    ``enc_id_weight * (1 - <R(x), R(G(E(x)))>)`` (Richardson et al. 2021, §3.3).

    Under torchrun each rank draws its share of every batch from its own seed and the gradients
    are averaged before each step (``invbench.distributed.data_parallel``)."""
    cfg = distributed.per_rank(cfg, "enc_batch")
    ex = execution if execution is not None else plain(device)
    g = torch.Generator().manual_seed(distributed.rank_seed(seed))
    ex.prepare(enc.to(device).train())
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.enc_lr)
    enc_f, synthesize = ex.wrap(enc), ex.wrap(gen.synthesize)
    disc: nn.Module | None = None
    disc_f: Any = None
    if cfg.enc_loss == "recon":
        if images is None:
            raise UsageError("enc_loss=recon needs the training images")
        images = images.to(device)
        if cfg.enc_adv_weight > 0:
            # A fresh discriminator of the generator's family, trained alongside: the zoo
            # caches generators only, so the GAN's own D is not available to fine-tune.
            disc = ex.prepare(gen.make_discriminator().to(device).train())
            opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.enc_lr, betas=(0.5, 0.999))
            disc_f = ex.wrap(disc, compile=False)  # differentiated twice by R1: eager
            distributed.data_parallel([disc], [opt_d])
    distributed.data_parallel([enc], [opt])
    mean = gen.mean_latent(space).to(device) if cfg.enc_iters else None
    use_perc = perceptual is not None and cfg.enc_perceptual_weight > 0
    if use_perc:
        assert perceptual is not None
        prepare, distance = ex.wrap(perceptual.prepare), ex.wrap(perceptual.distance)
    if identity is not None:  # ArcFace, a feature network inside the loss like the perceptual one
        id_distance = ex.wrap(identity.distance)

    def recon_loss(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        loss = pixel_loss(rec, x, "l2").mean()
        if use_perc:
            loss = loss + cfg.enc_perceptual_weight * distance(rec, prepare(x)).mean()
        if disc is not None:
            loss = loss + cfg.enc_adv_weight * F.softplus(-disc_f(rec)).mean()  # -E[D(G(E(x)))]
        if identity is not None:
            loss = loss + cfg.enc_id_weight * id_distance(rec, x).mean()
        return loss

    last: dict[str, torch.Tensor] = {}
    pbar = bar(cfg.enc_steps, desc)
    for _ in range(cfg.enc_steps):
        opt.zero_grad(set_to_none=True)
        if cfg.enc_loss == "latent":  # eq. 21
            with torch.no_grad():
                lat = gen.to_space(gen.sample_z(cfg.enc_batch, g), space)
                x = synthesize(lat, space)
            loss = (enc_f(x) - lat).pow(2).mean()
            loss.backward()
        else:
            assert images is not None
            x = images[torch.randint(len(images), (cfg.enc_batch,), generator=g).to(device)]
            if cfg.enc_iters:  # ReStyle: sum the losses of every iteration, one update
                assert mean is not None
                lat = mean.expand(len(x), *mean.shape)
                with torch.no_grad():
                    rec = synthesize(lat, space)
                for _ in range(cfg.enc_iters):
                    lat = lat.detach() + enc_f(torch.cat([x, rec.detach()], 1))
                    rec = synthesize(lat, space)
                    loss = recon_loss(rec, x)
                    loss.backward()
            else:  # eq. 11 / eq. 22
                rec = synthesize(enc_f(x), space)
                loss = recon_loss(rec, x)
                loss.backward()
            if disc is not None:
                d_loss = F.softplus(disc_f(rec.detach())).mean() + F.softplus(-disc_f(x)).mean()
                d_loss = d_loss + 0.5 * cfg.enc_r1 * _r1(disc, x)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                last["d_loss"] = d_loss.detach()
        opt.step()
        last["loss"] = loss.detach()
        pbar.update(1)
    pbar.close()
    distributed.average_buffers(enc)  # every rank ends with the same encoder
    enc.eval().requires_grad_(False)
    return {k: float(v) for k, v in last.items()}


class EncoderInverter:
    """Mixin: trains an encoder in ``fit`` (when the method needs one) and caches it.

    Methods combine it with ``Inverter`` (and ``OptimisationInverter`` for hybrids). The
    encoder and, when it is the domain network, the perceptual network travel in
    ``state_dict`` so a cached inverter works without its training data.
    """

    cfg: Any
    generator: Generator
    device: torch.device
    execution: Execution
    precisions: ClassVar[tuple[str, ...]] = PRECISIONS  # every network goes through execution
    seed: int
    encoder: nn.Module | None = None
    perceptual: Perceptual | None = None
    fit_stats: dict[str, float] | None = None

    def uses_encoder(self) -> bool:
        return True

    def uses_perceptual(self) -> bool:
        return False

    @classmethod
    def preflight(cls, cfg: Any, has_labels: bool) -> None:
        """The encoder's perceptual term (recon training), when an encoder is trained."""
        from invbench.latent_opt import check_perceptual

        trains_encoder = getattr(cfg, "init", "encoder") == "encoder"
        if trains_encoder and cfg.enc_loss == "recon" and cfg.enc_perceptual_weight > 0:
            check_perceptual(cfg.perceptual_net, has_labels)
        super().preflight(cfg, has_labels)  # type: ignore[misc]

    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder} if self.encoder is not None else {}

    @property
    def trains(self) -> bool:  # read by the runner: cache fit() through state_dict
        return self.uses_encoder()

    @property
    def perceptual_flavor(self) -> str | None:
        if self.perceptual is not None:
            return self.perceptual.flavor
        return self._loaded_flavor

    _loaded_flavor: str | None = None
    _mean: torch.Tensor | None = None

    def fit(self, ctx: FitContext) -> None:
        needs_perc = self.uses_perceptual() or (
            self.uses_encoder() and self.cfg.enc_loss == "recon" and self.cfg.enc_perceptual_weight
        )
        if needs_perc and self.perceptual is None:
            self.perceptual = perceptual_for(ctx, self.cfg.perceptual_net)
        if self.uses_encoder():
            identity = None
            if self.cfg.enc_id_weight:
                from invbench.metrics.identity import IdentitySimilarity, require_identity_network

                if ctx.splits.channels != 3:
                    raise UsageError("enc_id_weight (an ArcFace identity loss) needs RGB faces.")
                identity = IdentitySimilarity(require_identity_network(), ctx.device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(ctx.seed)
                self.encoder = build_encoder(self.generator, self.space, self.cfg)
            self.fit_stats = train_encoder(
                self.encoder,
                self.generator,
                self.space,
                self.cfg,
                ctx.splits.train_images(),  # streamed when it does not fit in memory
                self.perceptual,
                ctx.seed,
                ctx.device,
                desc=f"train {getattr(self, 'name', 'encoder')}",
                identity=identity,
                execution=self.execution,
            )

    def encode_iters(self) -> int:
        """ReStyle iterations at inversion (``restyle`` may run fewer or more than it trained)."""
        return int(self.cfg.enc_iters)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            raise UsageError("the encoder is not trained: call fit() (the runner does).")
        iters = self.encode_iters()
        if iters and self._mean is None:
            self._mean = self.generator.mean_latent(self.space)
        mean = self._mean if self._mean is not None else torch.zeros(0)
        x = images.to(self.device)
        with torch.no_grad():
            return encode(self.encoder, self.generator, x, self.space, iters, mean, self.execution)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.encoder is None:
            return {}
        state = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        return {**state, **perceptual_state(self.perceptual)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not self.uses_encoder():
            return
        self.encoder = build_encoder(self.generator, self.space, self.cfg, init=False)
        sub = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        self.encoder.load_state_dict(sub)
        self.encoder.to(self.device).eval().requires_grad_(False)
        self._loaded_flavor = flavor_from_state(state)
        if self.uses_perceptual():
            self.perceptual = perceptual_from_state(state, self.device)

    def flavor(self) -> dict[str, str]:
        """The perceptual network behind the numbers (encoder training or the loss)."""
        f = self.perceptual_flavor
        out = {"perceptual": f} if f else {}
        if self.cfg.enc_id_weight:
            from invbench.metrics.identity import FLAVOR

            out["identity_loss"] = FLAVOR
        return out
