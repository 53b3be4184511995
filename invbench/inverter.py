"""The ``Inverter`` interface: every inversion method is a plugin behind it.

Life cycle, driven by the runner (``invbench.runner``):

    inv = Method(cfg, generator, device)   # generator is None for methods that own theirs
    inv.fit(ctx)                           # may train an encoder, a flow, a whole GAN; cached
    latents = inv.invert(images)           # images in [-1, 1], NCHW -> Latents(tensor, space)
    recon = inv.decode(latents)            # back to images in [-1, 1]

A method that trains something returns it from ``state_dict()`` and accepts it back in
``load_state_dict()``; the runner caches it (``invbench.artifacts.cached``) under
``fit_key(ctx)``: the content hash of (method, the config fields ``fit`` depends on, generator,
train split, seed, ``train_version``, ``fit_identity``), so ``fit`` runs once, and only again
when something it depends on changes — never for a field declared in ``inference_fields``.
A long ``fit`` keys its resumable checkpoints by the same ``fit_key(ctx)``.
``sample(n)`` returns latents drawn from the model's prior in the method's latent space: the
runner uses them for the random-sample tracks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from invbench import artifacts
from invbench.data import Splits
from invbench.execution import Execution
from invbench.generators.base import Generator

FIT_KEY_VERSION = 1  # bump when the cache layout of fitted inverters changes


@dataclass
class Latents:
    """A batch of latent codes and the name of the space they live in (z, w, w+, y)."""

    tensor: torch.Tensor
    space: str

    def __len__(self) -> int:
        return len(self.tensor)

    def __getitem__(self, idx: Any) -> Latents:
        return Latents(self.tensor[idx], self.space)

    @staticmethod
    def cat(parts: list[Latents]) -> Latents:
        return Latents(torch.cat([p.tensor for p in parts]), parts[0].space)


@dataclass
class FitContext:
    """Everything ``fit`` may use: the training split, where to run, and a seed.

    Training loops read the train split with ``splits.train_images()`` (the tensor, or a
    streamed view when it does not fit in memory: ``invbench.data``)."""

    splits: Splits
    dataset: str
    device: torch.device
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # "dataset_fp": the runner's fingerprint
    generator_key: str | None = None  # the zoo generator's cache key (None: the method owns one)

    def data_fingerprint(self) -> dict[str, Any]:
        """The runner's train-split fingerprint when it passes one, else one from the bytes."""
        fp = self.extra.get("dataset_fp")
        if fp:
            return dict(fp)
        blob = self.splits.train.detach().cpu().contiguous().numpy().tobytes()
        return {"dataset": self.dataset, "train_sha": hashlib.sha256(blob).hexdigest()[:16]}


class Inverter:
    """Base class of inversion methods. Subclasses declare ``Config`` (a dataclass)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    #: True for methods that train their own generator (InvGAN, LIA, BiGAN).
    owns_generator: ClassVar[bool] = False
    #: True when ``fit`` trains something worth caching.
    trains: ClassVar[bool] = False
    #: Bump when ``fit`` changes what it trains without a config change (a new init, a fixed
    #: bug): it is part of the runner's cache key, so models trained by older code are refit.
    train_version: ClassVar[int] = 0
    #: Config fields that only change inference (refinement steps, a learning rate of the
    #: latent search): left out of ``fit_key``, so changing them never retrains.
    inference_fields: ClassVar[frozenset[str]] = frozenset()
    #: The precisions (``eval.precision``) the method honours: those whose networks run through
    #: ``self.execution`` (``invbench.execution``). A record states its precision as identity, so
    #: a method that always runs float32 accepts fp32 only; the runner refuses the others first.
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(
        self,
        cfg: Any,
        generator: Generator | None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.cfg = cfg
        self.generator = generator
        self.device = torch.device(device)
        self.seed = seed
        #: How ``fit`` and ``invert`` run their networks (precision, compile, memory format);
        #: the runner sets the run's policy, anything else gets today's fp32 eager path.
        self.execution = Execution(device=self.device)

    # -- the interface -----------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> None:
        """Train whatever the method needs. Methods that train nothing keep this empty."""

    def invert(self, images: torch.Tensor) -> Latents:
        raise NotImplementedError

    def decode(self, latents: Latents) -> torch.Tensor:
        assert self.generator is not None
        with torch.no_grad():
            return self.generator.synthesize(latents.tensor.to(self.device), latents.space)

    @property
    def space(self) -> str:
        return str(getattr(self.cfg, "space", "z"))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Latents:
        """Latents drawn from the prior, expressed in this method's latent space."""
        assert self.generator is not None
        with torch.no_grad():
            return Latents(self.generator.sample_latent(n, self.space, generator), self.space)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass

    # -- cache identity of fit ----------------------------------------------------------------
    def fit_identity(self, ctx: FitContext) -> dict[str, Any]:
        """What ``fit`` depends on beyond the config, the data and the seed (e.g. which
        perceptual network was found on this machine); part of ``fit_key``."""
        return {}

    def fit_payload(self, ctx: FitContext) -> dict[str, Any]:
        """Everything ``fit`` depends on (its artifact's sidecar stores it)."""
        cfg = artifacts.identity(self.cfg)
        payload: dict[str, Any] = {
            "method": self.name,
            "config": {k: v for k, v in cfg.items() if k not in self.inference_fields},
            "generator": ctx.generator_key,
            "data": ctx.data_fingerprint(),
            "seed": self.seed,
            "v": FIT_KEY_VERSION,
        }
        if self.train_version:  # only when set: unversioned methods keep their earlier keys
            payload["train_version"] = self.train_version
        if self.execution.precision != "fp32":  # likewise: fp32 keys stay as they were
            payload["precision"] = self.execution.precision
        return {**payload, **self.fit_identity(ctx)}

    def fit_key(self, ctx: FitContext) -> str:
        """The cache key of what ``fit(ctx)`` trains; long trainings key checkpoints by it."""
        return artifacts.key_of(self.fit_payload(ctx))

    # -- helpers the runner uses ---------------------------------------------------------------
    @classmethod
    def preflight(cls, cfg: Any, has_labels: bool) -> None:
        """Before anything trains: stop (``UsageError`` naming the file) when a network this
        configuration needs (perceptual, feature, identity) is missing and has no honest
        fallback here (``has_labels``: the dataset could train its own network). Mixins extend
        it and call ``super()``."""

    def networks(self) -> dict[str, torch.nn.Module]:
        """What this method trained (name -> module), for the parameter counts the run logs and
        records (``provenance.parameters``)."""
        return {}

    def warmup(self, images: torch.Tensor) -> None:
        """One small call before timing, so lazy initialisation is not billed per image."""
        self.invert(images[:2])

    def flavor(self) -> dict[str, str]:
        """Anything that changes what the numbers mean (e.g. the perceptual network used):
        recorded in ``metric_flavors`` as ``method.<key>``; seeds whose flavors differ are never
        averaged, and the gate never compares them."""
        return {}

    def diagnostics(self) -> dict[str, Any]:
        """Measured facts about this run that are not results (recorded in the provenance)."""
        return {}
