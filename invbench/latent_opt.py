"""Batched latent optimisation, shared by the optimisation family of inverters.

All images of a batch are optimised at once, yet each latent is independent of its
batch-mates (Creswell & Bharath, §II-A, eqs. 2-4): the objective is a *sum* of per-image terms,
the optimisers used (RMSprop, Adam, SGD) keep element-wise statistics only, the generator and
the feature networks run in eval mode (no batch statistics), each image's random initialisation
is seeded by its own content, not by its position in the batch, and the random draws of
stochastic clipping come from a counter-based hash of (image seed, step, coordinate).

The inner loop never reads a value back to the CPU (no ``.item()``, no data-dependent Python
branch), so on CUDA it queues kernels without waiting. The generator and the perceptual network
run through the inverter's ``invbench.execution.Execution`` (precision, compilation, memory
format); the losses, the latents and the optimiser's state stay float32 whatever the precision.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from invbench.config import MAX_BATCH, MAX_LR, MAX_STEPS, MAX_WEIGHT, bounded
from invbench.errors import UsageError
from invbench.execution import PRECISIONS, Execution, plain
from invbench.generators.base import Generator
from invbench.inverter import FitContext
from invbench.progress import bar, log

LOG_2PI = math.log(2 * math.pi)


@dataclass
class PerceptualConfig:
    """Which feature network F a perceptual term uses: LPIPS (AlexNet) or VGG-16 when their
    weights are on disk, otherwise the dataset's own domain network (``auto`` tries in order)."""

    perceptual_net: Literal["auto", "lpips", "vgg", "domain"] = "auto"


@dataclass
class OptimConfig(PerceptualConfig):
    """Hyper-parameters shared by every optimisation-based inverter (defaults in one place)."""

    space: str = "z"  # z, w or w+ (whichever the generator offers)
    steps: int = bounded(300, ge=0, le=MAX_STEPS)
    lr: float = bounded(0.01, gt=0, le=MAX_LR)
    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    loss: Literal["l2", "bce"] = "l2"  # the pixel term
    # weight of ||F(x) - F(G(z))||^2 added to the pixel term
    perceptual_weight: float = bounded(0.0, ge=0, le=MAX_WEIGHT)
    # beta of Creswell eq. 5 (Gaussian prior; used in z only)
    prior_weight: float = bounded(0.0, ge=0, le=MAX_WEIGHT)
    init: Literal["random", "mean", "encoder"] = "random"
    restarts: int = bounded(1, ge=1, le=1000)  # best-of-k restarts, chosen per image by final loss
    schedule: Literal["constant", "nvidia"] = "constant"
    # images optimised at once (memory bound only; results don't depend)
    batch_size: int = bounded(512, ge=1, le=MAX_BATCH)

    def validate(self) -> None:
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        if self.restarts < 1:
            raise ValueError("restarts must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.perceptual_weight < 0 or self.prior_weight < 0:
            raise ValueError("perceptual_weight and prior_weight must be >= 0")


# -- per-image randomness -----------------------------------------------------------------------
def content_seeds(images: torch.Tensor, seed: int) -> list[int]:
    """A seed per image from its bytes: the init of an image never depends on its batch."""
    flat = images.detach().to("cpu", torch.float32).contiguous().numpy()
    out = []
    for x in flat:
        h = hashlib.blake2b(x.tobytes(), digest_size=8, key=str(seed).encode()).digest()
        out.append(int.from_bytes(h, "little") & 0x7FFF_FFFF_FFFF)
    return out


_M32 = 0xFFFF_FFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # A 32-bit integer hash (degski / T. Mueller); products stay below 2^59 in int64.
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def hashed_uniform(seeds: torch.Tensor, step: int, shape: tuple[int, ...]) -> torch.Tensor:
    """U[0, 1) draws of ``shape`` per image that depend only on (image seed, step, coordinate).

    A counter-based generator on the latents' device: no per-image Python loop, no CPU sync,
    and an image's draws are the same whatever batch it is in.
    """
    s = seeds.to(torch.int64)
    key = _mix32(_mix32((s & _M32) ^ _mix32(s >> 32)) ^ (step & _M32))
    n = math.prod(shape)
    ctr = _mix32(torch.arange(n, device=s.device, dtype=torch.int64) + 0x9E37_79B9 & _M32)
    h = _mix32(key[:, None] ^ ctr[None, :])
    return ((h >> 8).to(torch.float32) / float(1 << 24)).view(len(s), *shape)


def init_latents(
    gen: Generator, images: torch.Tensor, space: str, init: str, seed: int, restart: int = 0
) -> torch.Tensor:
    """Initial latents for ``images``: random from the prior (content-seeded) or the mean."""
    if init == "mean":
        mean = gen.mean_latent(space)
        return mean.expand(len(images), *mean.shape).clone()
    rows = []
    for s in content_seeds(images, seed + 7919 * restart):
        g = torch.Generator().manual_seed(s)
        rows.append(gen.sample_latent(1, space, g))
    return torch.cat(rows).to(gen.device)


# -- losses -------------------------------------------------------------------------------------
def pixel_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction loss, averaged over pixels and channels."""
    if kind == "bce":
        # Creswell eq. 1 / Algorithm 1 line 3: binary cross-entropy with targets in [0, 1].
        p = ((recon + 1) / 2).clamp(1e-6, 1 - 1e-6)
        t = ((target + 1) / 2).clamp(0, 1)
        per = F.binary_cross_entropy(p, t, reduction="none")
    else:
        per = (recon - target) ** 2
    return per.flatten(1).mean(1)


def pixel_objective(
    synthesize: Callable[[torch.Tensor, str], torch.Tensor],
    z: torch.Tensor,
    target: torch.Tensor,
    space: str,
    kind: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(G(z), per-image pixel loss): the part of every objective that ``Execution.compile``
    compiles as one graph (the loss's element-wise work fused with the generator's)."""
    recon = synthesize(z, space)
    return recon, pixel_loss(recon, target, kind)


def gaussian_nll(z: torch.Tensor) -> torch.Tensor:
    """-(1/d) sum_i log N(z_i; 0, 1) per image (Creswell eq. 5's prior term, negated)."""
    return (0.5 * z.flatten(1) ** 2 + 0.5 * LOG_2PI).mean(1)


class Perceptual(nn.Module):
    """A frozen feature distance d(x, y) per image. ``prepare`` caches the targets' side once."""

    flavor: str = ""

    def prepare(self, target: torch.Tensor) -> Any:
        return self.embed(target).detach()

    def embed(self, x: torch.Tensor) -> Any:
        raise NotImplementedError

    def distance(self, x: torch.Tensor, prepared: Any) -> torch.Tensor:
        """Mean squared feature difference per image (differentiable in ``x``)."""
        return (self.embed(x) - prepared).pow(2).flatten(1).mean(1)


class DomainPerceptual(Perceptual):
    """The dataset's own LeNet (``invbench.metrics.features.DomainNet``), fc84 features."""

    def __init__(self, net: nn.Module, flavor: str) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.flavor = flavor

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        # ``DomainNet.features`` runs under no_grad; its body is the same map, differentiable.
        return self.net.body(x)


def _rgb(x: torch.Tensor, size: int) -> torch.Tensor:
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    if x.shape[-1] < size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


class VGGPerceptual(Perceptual):
    """VGG-16 relu1_2, relu2_2, relu3_3 (Johnson et al. 2016), torchvision ImageNet weights."""

    LAYERS = (3, 8, 15)

    def __init__(self, path: str) -> None:
        super().__init__()
        from invbench.metrics.perceptual import vgg16_features

        self.body = vgg16_features(Path(path), self.LAYERS[-1] + 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.flavor = "vgg16-imagenet"

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (_rgb(x, 64) * 0.5 + 0.5 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i in self.LAYERS:
                out.append(h)
        return out

    def prepare(self, target: torch.Tensor) -> list[torch.Tensor]:
        return [f.detach() for f in self.embed(target)]

    def distance(self, x: torch.Tensor, prepared: list[torch.Tensor]) -> torch.Tensor:
        pairs = zip(self.embed(x), prepared, strict=True)
        return torch.stack([((a - b) ** 2).flatten(1).mean(1) for a, b in pairs]).sum(0)


class LPIPSPerceptual(Perceptual):
    """LPIPS v0.1 (AlexNet), built by the metric's loader from verified files."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from invbench.metrics.perceptual import LPIPS_FLAVOR, build_lpips_model

        self.net = build_lpips_model(Path(path))
        self.flavor = LPIPS_FLAVOR

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        return _rgb(target, 64)

    def distance(self, x: torch.Tensor, prepared: torch.Tensor) -> torch.Tensor:
        return self.net(_rgb(x, 64), prepared).flatten()


def make_perceptual(
    kind: str, splits: Any, dataset_fp: dict[str, Any], device: torch.device
) -> Perceptual:
    """LPIPS or VGG when their weights are on disk; otherwise the dataset's domain network."""
    from invbench.metrics.weights import ALEXNET, VGG16, find_weights, missing_message

    vgg = VGG16
    if kind in ("auto", "lpips"):
        path = find_weights(ALEXNET)
        if path is not None:
            return LPIPSPerceptual(str(path)).to(device)
        if kind == "lpips":
            raise UsageError(f"perceptual_net=lpips: {missing_message(ALEXNET)}")
    if kind in ("auto", "vgg"):
        path = find_weights(vgg)
        if path is not None:
            return VGGPerceptual(str(path)).to(device)
        if kind == "vgg":
            raise UsageError(f"perceptual_net=vgg: {missing_message(vgg)}")
    from invbench.metrics.features import domain_network

    net = domain_network(splits, dataset_fp, device)
    if kind == "auto":
        log(f"perceptual loss: LPIPS/VGG weights not found, using the domain network {net.flavor}")
    return DomainPerceptual(net, net.flavor).to(device)


def check_perceptual(kind: str, has_labels: bool, key: str = "perceptual_net") -> None:
    """Before any training: the network ``make_perceptual(kind)`` will build can be built here
    (LPIPS / VGG found on disk, or labels to train the dataset's own), else ``UsageError``
    naming the files."""
    from invbench.metrics.weights import ALEXNET, VGG16, find_weights, missing_message

    if kind == "lpips" and find_weights(ALEXNET) is None:
        raise UsageError(f"{key}=lpips: {missing_message(ALEXNET)}")
    if kind == "vgg" and find_weights(VGG16) is None:
        raise UsageError(f"{key}=vgg: {missing_message(VGG16)}")
    if kind in ("auto", "domain") and not has_labels:
        if kind == "auto" and (find_weights(ALEXNET) or find_weights(VGG16)):
            return
        raise UsageError(
            f"{key}={kind}: the dataset has no class labels to train its own feature network "
            f"on, and no pretrained one is found: {missing_message(ALEXNET)} (or "
            f"{VGG16.names[0]} for {key}=vgg). Or set the perceptual weight to 0."
        )


def dataset_fingerprint(ctx: FitContext) -> dict[str, Any]:
    """The runner's dataset fingerprint when it passes one, else one from the split's bytes."""
    fp = ctx.extra.get("dataset_fp")
    if fp:
        return dict(fp)
    blob = ctx.splits.train.detach().cpu().contiguous().numpy().tobytes()
    return {"dataset": ctx.dataset, "train_sha": hashlib.sha256(blob).hexdigest()[:16]}


def perceptual_for(ctx: FitContext, kind: str) -> Perceptual:
    return make_perceptual(kind, ctx.splits, dataset_fingerprint(ctx), ctx.device)


def perceptual_state(p: Perceptual | None) -> dict[str, torch.Tensor]:
    """What a cached inverter keeps to name (and, for the domain net, rebuild) its network."""
    if p is None:
        return {}
    state = {"perceptual_flavor": torch.tensor(list(p.flavor.encode()), dtype=torch.uint8)}
    if isinstance(p, DomainPerceptual):
        state.update({f"perceptual.{k}": v for k, v in p.net.state_dict().items()})
    return state


def flavor_from_state(state: dict[str, torch.Tensor]) -> str | None:
    t = state.get("perceptual_flavor")
    return None if t is None else bytes(t.tolist()).decode()


def perceptual_from_state(state: dict[str, torch.Tensor], device: torch.device) -> Perceptual:
    sub = {k[len("perceptual.") :]: v for k, v in state.items() if k.startswith("perceptual.")}
    if not sub:  # LPIPS / VGG: found on disk again (they were when fit ran)
        flavor = flavor_from_state(state) or ""
        return make_perceptual("lpips" if flavor.startswith("lpips") else "vgg", None, {}, device)
    from invbench.metrics.features import DomainNet

    net = DomainNet(int(sub["body.0.weight"].shape[1]), int(sub["head.weight"].shape[0]))
    net.load_state_dict(sub)
    return DomainPerceptual(net, flavor_from_state(state) or "domain").to(device)


# -- the loop -----------------------------------------------------------------------------------
def nvidia_lr(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The StyleGAN2 projector's learning-rate multiplier: linear warm-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup)


PerImageLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``post_step(z, step, seeds)`` changes ``z`` in place after a step (projection, clipping).
PostStep = Callable[[torch.Tensor, int, torch.Tensor], None]


def make_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.RMSprop(params, lr=lr)


def optimise(
    gen: Generator,
    target: torch.Tensor,
    z0: torch.Tensor,
    cfg: OptimConfig,
    extra_loss: PerImageLoss | None = None,
    post_step: PostStep | None = None,
    perceptual: Perceptual | None = None,
    seeds: torch.Tensor | None = None,
    desc: str = "invert",
    execution: Execution | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise sum_i L_i(z_i) from ``z0``; return (latents, final per-image loss).

    ``execution`` runs the networks (default: fp32, eager); everything else is float32.
    """
    ex = execution if execution is not None else plain(z0.device)
    z = z0.detach().clone().requires_grad_(True)
    opt = make_optimizer(cfg.optimizer, [z], cfg.lr)
    use_prior = bool(cfg.prior_weight) and cfg.space == "z"
    use_perc = perceptual is not None and cfg.perceptual_weight > 0
    # The generator under the precision policy, inside the pixel objective compiled as a whole.
    synthesize = ex.wrap(gen.synthesize, compile=False)
    objective = ex.compile(pixel_objective)
    if use_perc:
        assert perceptual is not None
        prepared = ex.wrap(perceptual.prepare)(target)
        distance = ex.wrap(perceptual.distance)
    if seeds is None:
        seeds = torch.zeros(len(target), dtype=torch.int64, device=z.device)
    pbar = bar(cfg.steps, desc)

    def per_image(z_: torch.Tensor) -> torch.Tensor:
        recon, loss = objective(synthesize, z_, target, cfg.space, cfg.loss)
        if use_perc:
            loss = loss + cfg.perceptual_weight * distance(recon, prepared)
        if use_prior:
            loss = loss + cfg.prior_weight * gaussian_nll(z_)
        if extra_loss is not None:
            loss = loss + extra_loss(z_, recon)
        return loss

    for step in range(cfg.steps):
        if cfg.schedule == "nvidia":
            for group in opt.param_groups:
                group["lr"] = cfg.lr * nvidia_lr(step / max(1, cfg.steps))
        loss = per_image(z)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if post_step is not None:
            with torch.no_grad():
                post_step(z, step, seeds)
        pbar.update(1)
    pbar.close()
    # A compiled network computes the final loss in the grad mode of the steps, so that it is
    # not compiled a second time for no_grad.
    with torch.set_grad_enabled(ex.compiled):
        final = per_image(z)
    return z.detach(), final.detach()


class OptimisationInverter:
    """Mixin for inverters that optimise latents; subclasses may set hooks.

    ``post_step(z, step, seeds)`` runs after every optimiser step and once on the start point
    (step -1): projection, clipping. ``extra_loss(z, recon)`` adds a per-image term.
    ``init: encoder`` needs ``encode(images)`` from ``invbench.encoders.EncoderInverter``.
    """

    cfg: OptimConfig
    generator: Generator
    device: torch.device
    execution: Execution
    precisions: ClassVar[tuple[str, ...]] = PRECISIONS  # every network goes through execution
    seed: int = 0
    perceptual: Perceptual | None = None

    def post_step(self, z: torch.Tensor, step: int, seeds: torch.Tensor) -> None:
        """Hook called in place on the latents after each step (none by default)."""

    def extra_loss(self, z: torch.Tensor, recon: torch.Tensor) -> torch.Tensor | None:
        return None

    def uses_perceptual(self) -> bool:
        return self.cfg.perceptual_weight > 0

    def uses_encoder(self) -> bool:
        return self.cfg.init == "encoder"

    @classmethod
    def preflight(cls, cfg: Any, has_labels: bool) -> None:
        if cfg.perceptual_weight > 0:
            check_perceptual(cfg.perceptual_net, has_labels)
        super().preflight(cfg, has_labels)  # type: ignore[misc]

    def fit(self, ctx: FitContext) -> None:
        if self.uses_perceptual() and self.perceptual is None:
            self.perceptual = perceptual_for(ctx, self.cfg.perceptual_net)
        super().fit(ctx)  # type: ignore[misc]

    def initial_latents(self, images: torch.Tensor, restart: int) -> torch.Tensor:
        if self.cfg.init == "encoder":
            encode = getattr(self, "encode", None)
            if encode is None:
                raise UsageError(f"{type(self).__name__} has no encoder; use init=random or mean.")
            if restart == 0:  # restart 0 starts from E(x); the others from prior draws
                return encode(images)
            return init_latents(
                self.generator, images, self.cfg.space, "random", self.seed, restart
            )
        return init_latents(
            self.generator, images, self.cfg.space, self.cfg.init, self.seed, restart
        )

    def warmup(self, images: torch.Tensor) -> None:
        """Compile before timing: one step on two images (every step is the same work, so
        nothing else is lazy; on the plain path there is nothing to do)."""
        if self.execution.compiled:
            self.optimise_batch(images[:2], dataclasses.replace(self.cfg, steps=1, restarts=1))

    def invert_optimise(self, images: torch.Tensor) -> torch.Tensor:
        """Optimise latents for ``images`` in chunks of ``batch_size`` (all at once per chunk)."""
        if self.uses_perceptual() and self.perceptual is None:
            raise UsageError("perceptual_weight > 0 but fit() has not set up the perceptual net.")
        bs = self.cfg.batch_size
        parts = [self.optimise_batch(images[i : i + bs]) for i in range(0, len(images), bs)]
        return torch.cat(parts)

    def optimise_batch(self, images: torch.Tensor, cfg: OptimConfig | None = None) -> torch.Tensor:
        """Best latents for ``images`` over ``cfg.restarts`` optimisations (``self.cfg``)."""
        cfg = self.cfg if cfg is None else cfg
        images = images.to(self.device)
        best_z: torch.Tensor | None = None
        best_loss: torch.Tensor | None = None
        has_extra = type(self).extra_loss is not OptimisationInverter.extra_loss
        has_post = type(self).post_step is not OptimisationInverter.post_step
        for r in range(cfg.restarts):
            seeds = torch.tensor(content_seeds(images, self.seed + 104729 * (r + 1)))
            seeds = seeds.to(self.device)
            z0 = self.initial_latents(images, r)
            if has_post:
                with torch.no_grad():
                    self.post_step(z0, -1, seeds)
            z, loss = optimise(
                self.generator,
                images,
                z0,
                cfg,
                extra_loss=self.extra_loss if has_extra else None,  # type: ignore[arg-type]
                post_step=self.post_step if has_post else None,
                perceptual=self.perceptual if self.uses_perceptual() else None,
                seeds=seeds,
                desc=f"{getattr(self, 'name', 'invert')} ({len(images)} images)",
                execution=self.execution,
            )
            if best_z is None or best_loss is None:
                best_z, best_loss = z, loss
            else:
                better = loss < best_loss
                best_z = torch.where(better.view(-1, *[1] * (z.ndim - 1)), z, best_z)
                best_loss = torch.minimum(loss, best_loss)
        assert best_z is not None
        return best_z
