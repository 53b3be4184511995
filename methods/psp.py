"""``psp``, ``e4e``, ``restyle-pretrained``: the published encoders, run through the protocol.

A checkpoint of pSp (Richardson et al. 2021), e4e (Tov et al. 2021) or ReStyle (Alaluf et al.
2021) in its authors' layout (``invbench.published_encoders``) inverts the test images. The
generator is the StyleGAN2 the checkpoint carries (``decoder.*``, rosinality's layout) loaded
into invbench's StyleGAN2, or, with ``decoder=PATH``, another StyleGAN2 checkpoint
(stylegan2-pytorch ``.pt`` or NVlabs ``.pkl``). Nothing is trained: ``fit`` loads.

Inference follows the authors' scripts (pSp ``scripts/inference.py``, ReStyle
``scripts/inference_iterative.py``): images at 256x256 (their test transforms; other sizes are
resized bilinearly with antialiasing), codes = E(x) plus ``latent_avg`` when the checkpoint was
trained with ``start_from_latent_avg`` (the published FFHQ models are), decoded with the decoder's
fixed noise maps (``randomize_noise=False``) and area-pooled to the dataset's size (their
``face_pool``). ReStyle's residual refinement: w_0 = latent_avg and y_0 = G(w_0); step t
feeds x ++ y_t (both pooled to 256) to the encoder and w_{t+1} = w_t + E(x ++ y_t);
``n_iters`` steps (5, the authors' ``n_iters_per_batch`` at inference).

The record names the checkpoint, its SHA-256 and the decoder used (``provenance``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from invbench.artifacts import sha256_file
from invbench.config import bounded
from invbench.errors import DataError, UsageError
from invbench.generators.stylegan2 import StyleGAN2
from invbench.inverter import FitContext, Inverter, Latents
from invbench.published_encoders import (
    PublishedCheckpoint,
    build_encoder,
    code_shape,
    read_checkpoint,
)
from invbench.registry import METHODS
from invbench.weights import find_file

PAGES = {
    "psp": "https://github.com/eladrich/pixel2style2pixel#pretrained-models",
    "e4e": "https://github.com/omertov/encoder4editing#pretrained-models",
    "restyle": "https://github.com/yuval-alaluf/restyle-encoder#pretrained-models",
}
METHOD_OF = {"psp": "psp", "e4e": "e4e", "restyle": "restyle-pretrained"}


@dataclass
class PublishedConfig:
    # A path, or a file name looked up in the weight directories (`invbench weights list`).
    checkpoint: str = ""
    # A StyleGAN2 checkpoint (stylegan2-pytorch .pt or NVlabs .pkl) to decode with instead of
    # the checkpoint's own decoder.* weights ("" = the checkpoint's decoder).
    decoder: str = ""
    # the encoder's input: the authors' transforms resize to 256x256
    input_size: int = bounded(256, ge=8, le=4096)

    def validate(self) -> None:
        if self.input_size < 16:
            raise ValueError("input_size must be >= 16 (pSp, e4e and ReStyle take 256)")


class PublishedEncoder(Inverter):
    """Shared by the three methods: load, encode (+ latent_avg), decode with the StyleGAN2."""

    owns_generator = True  # the checkpoint's decoder (or ``decoder=``), never a zoo generator
    family: ClassVar[str]
    Config = PublishedConfig

    def __init__(self, cfg: Any, generator: Any, device: str | torch.device = "cpu", seed: int = 0):
        super().__init__(cfg, generator, device, seed)
        self.encoder: torch.nn.Module | None = None
        self.latent_avg: torch.Tensor | None = None
        self._space = "w+"
        self.encoder_type = ""
        self._flavor: dict[str, str] = {}

    @property
    def space(self) -> str:
        return self._space

    def fit(self, ctx: FitContext) -> None:
        """Load the checkpoint (nothing trains); the record's provenance names it."""
        what = f"{self.name} checkpoint"
        path = find_file(self.cfg.checkpoint, what, "checkpoint", PAGES[self.family])
        self.load(read_checkpoint(path), ctx.splits.channels, ctx.splits.resolution)
        self._flavor = {
            "checkpoint": str(path),
            "checkpoint_sha256": sha256_file(path),
            "encoder_type": self.encoder_type,
            "decoder": "decoder.* of the checkpoint",
        }
        if self.cfg.decoder:
            self._flavor["decoder"] = str(self.generator.checkpoint_path)  # type: ignore[union-attr]
            self._flavor["decoder_sha256"] = self.generator.weights_sha256()  # type: ignore[union-attr]

    def load(self, ckpt: PublishedCheckpoint, channels: int, resolution: int) -> None:
        """Encoder, decoder and latent_avg from ``ckpt``, for images of the given shape."""
        if ckpt.family != self.family:
            raise UsageError(
                f"{ckpt.path} is a {ckpt.family} checkpoint (encoder_type {ckpt.encoder_type}); "
                f"run it with --method {METHOD_OF[ckpt.family]}."
            )
        self.encoder_type = ckpt.encoder_type
        gen = self._decoder(ckpt, channels, resolution)
        self.generator = gen.to(self.device).eval().requires_grad_(False)
        enc = build_encoder(ckpt).to(self.device)
        shape = code_shape(enc)
        w_dim, n_latent = self.generator.w_dim, self.generator.n_latent
        self._space = "w" if len(shape) == 1 else "w+"
        if shape[-1] != w_dim or (len(shape) == 2 and shape[0] != n_latent):
            raise DataError(
                f"{ckpt.path}: the encoder makes codes of shape {shape}, the decoder takes w+ of "
                f"shape ({n_latent}, {w_dim}); they do not belong together."
            )
        self.encoder = enc
        avg = ckpt.latent_avg
        if self.family == "restyle" or ckpt.start_from_latent_avg:
            if avg is None or avg.numel() % w_dim:
                raise DataError(
                    f"{ckpt.path}: trained from the average latent but holds no 'latent_avg' of "
                    f"width {w_dim}."
                )
            self.latent_avg = avg.reshape(-1, w_dim).float().to(self.device)

    def _decoder(self, ckpt: PublishedCheckpoint, ch: int, res: int) -> StyleGAN2:
        if self.cfg.decoder:
            return StyleGAN2(StyleGAN2.Config(checkpoint=self.cfg.decoder), ch, res)
        weights = {"g_ema": ckpt.decoder, "latent_avg": ckpt.latent_avg, "format": "decoder.*"}
        cfg = StyleGAN2.Config(checkpoint=str(ckpt.path))
        return StyleGAN2(cfg, ch, res, weights=weights, source=ckpt.path)

    # -- inference --------------------------------------------------------------------------------
    def _pool(self, img: torch.Tensor) -> torch.Tensor:
        """The authors' ``face_pool``: adaptive average pooling to the encoder's input size."""
        s = self.cfg.input_size
        return img if img.shape[-1] == s else F.adaptive_avg_pool2d(img, (s, s))

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        s = self.cfg.input_size
        if x.shape[-1] != s or x.shape[-2] != s:  # their PIL Resize((256, 256)), bilinear
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x

    def _encode(self, x: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        assert self.encoder is not None
        codes = self.encoder(x)
        if base is None:
            return codes
        return codes + (base[0] if codes.ndim == 2 and base.ndim == 2 else base)

    def invert(self, images: torch.Tensor) -> Latents:
        with torch.no_grad():
            return Latents(self._encode(self._input(images), self.latent_avg), self.space)

    def flavor(self) -> dict[str, str]:
        """The weights' content and the encoder: what the numbers are of (paths excluded)."""
        return {k: v for k, v in self._flavor.items() if k not in ("checkpoint", "decoder")}

    def diagnostics(self) -> dict[str, str]:
        """Where the files were (machine-specific, so provenance, not a flavor)."""
        return {k: v for k, v in self._flavor.items() if k in ("checkpoint", "decoder")}


@METHODS.register("psp")
class PSP(PublishedEncoder):
    """pSp (Richardson et al. 2021): FPN encoder to w+ (or the W / W+ backbone encoders)."""

    family = "psp"


@METHODS.register("e4e")
class E4E(PublishedEncoder):
    """e4e (Tov et al. 2021): one w and per-input offsets, designed for editability."""

    family = "e4e"


@METHODS.register("restyle-pretrained")
class ReStylePretrained(PublishedEncoder):
    """ReStyle (Alaluf et al. 2021) from a published checkpoint, iterating ``n_iters`` times."""

    family = "restyle"

    @dataclass
    class Config(PublishedConfig):
        # options/test_options.py: n_iters_per_batch = 5 at inference
        n_iters: int = bounded(5, ge=1, le=100)

        def validate(self) -> None:
            super().validate()
            if self.n_iters < 1:
                raise ValueError("n_iters must be >= 1")

    def invert(self, images: torch.Tensor) -> Latents:
        assert self.generator is not None and self.latent_avg is not None
        net = self.generator.net
        with torch.no_grad():
            x = self._input(images)
            w = self.latent_avg.expand(len(x), *self.latent_avg.shape[-2:])
            if w.shape[1] == 1:
                w = w.expand(-1, self.generator.n_latent, -1)
            y = self._pool(net.synthesis(w[:1])).expand(len(x), -1, -1, -1)  # y_0 = G(avg)
            for _ in range(self.cfg.n_iters):  # w_{t+1} = w_t + E(x ++ y_t)   (eq. 1)
                w = self._encode(torch.cat([x, y], 1), w)
                y = self._pool(net.synthesis(w))
        return Latents(w, "w+")
