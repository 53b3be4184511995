"""``lia`` and ``lia-mlp``: the Latently Invertible Autoencoder (Zhu et al., "Disentangled
Inference for GANs with Latently Invertible Autoencoder", IJCV 2022) and Table 3's VAE/GAN.

    x --f--> y --phi--> z          (encoder, then the NICE network of §4.1, eqs. 11-12)
    z --phi^-1--> y --g--> x~      (the decoder: the flow in place of a mapping network)

Two-stage training (§5):
  stage 1 (§5.1, eqs. 15-16): phi and g trained as a GAN from z ~ N(0, I) against a
    discriminator c (non-saturating loss, the DCGAN recipe of the zoo's ``dcgan``); phi is
    genforce/lia's flow: He-scale couplings under an equalised learning rate (invbench.nice).
  stage 2 (§5.2, eqs. 13, 17-18): phi and g frozen; the encoder f: x -> y learns
    ||x - g(f(x))||^2 + beta1 ||eps(x) - eps(x~)||^2 + beta2 * softplus(-c(x~)) while c, the
    stage-1 discriminator, is fine-tuned with the penalty gamma * E ||grad_x c(x)||^2 (eq. 14).
    The weights sit as in genforce/lia's ``E_perceptual_loss``: beta2 on the adversarial term
    (eq. 18 prints it on the reconstruction term; the released code and §7 values put it here).
    eps is VGG-16 conv4_3 on 0..255 mean-subtracted input (``VGGConv43``) when its weight file
    is found offline, else the dataset's LeNet with an explicit weight (``build_perceptual``);
    the record's flavor names which.

``invert`` returns y = f(x), or z = phi(y) with ``space: z``, or y+ (one y per synthesis
layer, ``backbone: stylegan-lite`` only); ``refine_steps > 0`` then optimises the code in that
space (§7.2-7.3, eq. 5: pixel L2 plus the perceptual term of stage 2) from the encoder's code,
the mean code or a random code; every start is made in y and mapped by phi for z (§7.3: "the
same initial values in the z-space and y-space") or repeated per layer for y+ (§7.2).

Paper scale (``backbone: stylegan2``, the ``paper`` profile of configs/methods/lia.yaml): the
decoder is StyleGAN2 config F's synthesis network (§7: "we instantiate the decoder of LIA with the
generator of StyleGAN ... we replace the mapping network (MLP) with the invertible network")
behind the 512-d, 8-layer NICE flow; stage 1 is StyleGAN2's training (``GANStep``: style mixing,
lazy R1 and path length, the moving average of the decoder kept as the decoder), optionally
started from a pretrained StyleGAN2's synthesis weights (``init_synthesis``, recorded in the
flavor); the encoder is the released LIA's residual encoder (``LIAEncoder``); c is StyleGAN2's
residual discriminator.

``lia-mlp`` is Table 3's VAE/GAN column (§7.1; §2.2, eq. 4): the same two stages with
StyleGAN's MLP mapping z -> y, which is not invertible, so its encoder infers the entangled z;
the encoder is variational, q(z|x) = N(mu(x), diag sigma^2(x)) sampled by reparameterisation,
with the KL term of eq. 3 (``kl_weight``); ``invert`` returns the mean mu(x).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from invbench import artifacts, distributed
from invbench.artifacts import later
from invbench.config import MAX_BATCH, MAX_LR, MAX_STEPS, MAX_WEIGHT, MAX_WIDTH, bounded
from invbench.encoders import Encoder
from invbench.errors import UsageError
from invbench.generators.base import Generator
from invbench.generators.dcgan import DCGANDecoder, DCGANDiscriminator
from invbench.generators.stylegan_lite import MappingNetwork, mix_at_random
from invbench.generators.train import Checkpointer, TrainingLoop, ema_update, keep_average
from invbench.inverter import FitContext, Inverter, Latents
from invbench.latent_opt import (
    OptimConfig,
    Perceptual,
    init_latents,
    optimise,
    perceptual_for,
    perceptual_from_state,
    perceptual_state,
)
from invbench.losses import gan_d_loss, gan_g_loss, r1_penalty
from invbench.metrics.perceptual import vgg16_features
from invbench.metrics.weights import VGG16, find_weights, missing_message
from invbench.nice import NICE
from invbench.registry import METHODS

TRAIN_VERSION = 3  # bump when the training code changes its result, to invalidate caches
ARTIFACT_KIND = "lia"

#: Settings that change only how ``invert`` works, not what ``fit`` trains.
INFERENCE_FIELDS = (
    "space",
    "refine_steps",
    "refine_init",
    "refine_lr",
    "refine_optimizer",
    "refine_loss",
)


# -- networks -----------------------------------------------------------------------------------
class LIADecoder(Generator):
    """phi^-1 (or the MLP) followed by the synthesis network g; offers spaces z, y and, on the
    style-based backbone, y+ (one y per synthesis layer, §7.2's "different ys to different
    layers")."""

    name = "lia-decoder"
    latent_spaces = ("z", "y", "y+")

    def __init__(self, cfg: Any, channels: int, resolution: int) -> None:
        super().__init__(cfg, channels, resolution)
        d = cfg.z_dim
        self.mapping: nn.Module
        if cfg.mapping == "nice":
            self.mapping = NICE(d, cfg.flow_depth, cfg.flow_hidden, lr_mul=cfg.mapping_lr_mul)
        else:  # §7.1: "StyleGAN with its original multi-layer perceptron"
            self.mapping = MappingNetwork(d, d, cfg.flow_depth, cfg.mapping_lr_mul)
        self.backbone = cfg.backbone
        self.num_ws = 1
        if cfg.backbone == "dcgan":
            self.net: nn.Module = DCGANDecoder(d, channels, resolution, cfg.ngf)
        elif cfg.backbone == "stylegan2":
            from invbench.generators.stylegan2_training import Synthesis, config_f_channels

            if channels != 3:
                raise UsageError("backbone=stylegan2 makes RGB images; use an RGB dataset.")
            self.net = Synthesis(resolution, d, config_f_channels(resolution, cfg.channel_max))
            self.num_ws = self.net.n_latent
        else:
            self.net = _stylegan_lite(d, channels, resolution)
            self.num_ws = int(self.net.num_ws)

    @property
    def invertible(self) -> bool:
        return isinstance(self.mapping, NICE)

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self.check_space(space)
        return (self._per_layer(), self.z_dim) if space == "y+" else (self.z_dim,)

    def _per_layer(self) -> int:
        if self.backbone == "dcgan":
            raise UsageError(
                "space y+ (one y per synthesis layer) needs backbone=stylegan-lite: the DCGAN "
                "decoder reads its code in one layer."
            )
        return self.num_ws

    def y_from_z(self, z: torch.Tensor) -> torch.Tensor:
        """phi^-1 (eq. 12) for LIA; the MLP for lia-mlp."""
        return self.mapping.inverse(z) if isinstance(self.mapping, NICE) else self.mapping(z)

    def z_from_y(self, y: torch.Tensor) -> torch.Tensor:
        """phi (eq. 11); only LIA's flow has it."""
        if not isinstance(self.mapping, NICE):
            raise UsageError("lia-mlp's MLP mapping is not invertible: it has no y -> z map.")
        return self.mapping(y)

    def per_layer(self, y: torch.Tensor) -> torch.Tensor:
        """y -> y+: the same y at every synthesis layer (where §7.2's refinement starts)."""
        return y[:, None, :].expand(-1, self._per_layer(), -1).contiguous()

    def to_space(self, z: torch.Tensor, space: str) -> torch.Tensor:
        self.check_space(space)
        if space == "z":
            return z
        y = self.y_from_z(z)
        return self.per_layer(y) if space == "y+" else y

    def synthesize(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        self.check_space(space)
        if space == "y+":
            self._per_layer()
            return self.net(latent)
        y = latent if space == "y" else self.y_from_z(latent)  # eq. 15: z -> phi^-1 -> y -> g
        if self.backbone == "dcgan":
            return self.net(y)
        return self.net(y[:, None, :].expand(-1, self.num_ws, -1))  # the same y at every layer

    def training_forward(self, z: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Stage 1's forward pass: z -> y -> g, with style mixing of y codes on the style-based
        backbone when ``mixing_stage1`` > 0 (no draw from ``rng`` otherwise)."""
        if self.backbone != "stylegan-lite" or self.cfg.mixing_stage1 <= 0:
            return self.synthesize(z)

        def second() -> torch.Tensor:
            return self.to_space(self.sample_z(len(z), rng), "y+")

        ys = mix_at_random(self.to_space(z, "y+"), second, self.cfg.mixing_stage1, rng)
        return self.synthesize(ys, "y+")

    def make_discriminator(self) -> nn.Module:
        if self.backbone == "stylegan2":
            from invbench.generators.stylegan2_training import (
                StyleGAN2Discriminator,
                config_f_channels,
            )

            ch = config_f_channels(self.resolution, self.cfg.channel_max)
            return StyleGAN2Discriminator(self.resolution, ch)
        return DCGANDiscriminator(self.channels, self.resolution, self.cfg.ndf, self.cfg.d_norm)


# -- the encoder f at paper scale ------------------------------------------------------------------
class _CenterBN(nn.Module):
    """Batch normalisation with a learned shift and no scale (TF ``batch_norm(scale=False)``,
    decay 0.9, eps 1e-5), as the released encoder normalises; in eval mode it uses the running
    statistics, so an image's code never depends on its batch."""

    def __init__(self, channels: int, dims: int = 2) -> None:
        super().__init__()
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.norm = bn(channels, eps=1e-5, momentum=0.1, affine=False)
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) + self.shift.view(1, -1, *([1] * (x.ndim - 2)))


def _conv(fin: int, fout: int, k: int, bias: bool = True) -> nn.Module:
    from invbench.generators.stylegan2_training import EqualConv2d

    return EqualConv2d(fin, fout, k, padding=k // 2, bias=bias)


class _ResBlockBN(nn.Module):
    """genforce/lia's ``residual_block_bn``: conv3x3 (to min(in, out)) -> BN -> lrelu, conv3x3
    -> BN -> lrelu, plus a shortcut (conv1x1 -> BN -> lrelu where the width changes)."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        hidden = min(fin, fout)
        self.body = nn.Sequential(
            _conv(fin, hidden, 3), _CenterBN(hidden), nn.LeakyReLU(0.2),
            _conv(hidden, fout, 3), _CenterBN(fout), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.shortcut: nn.Module = nn.Identity()
        if fin != fout:
            self.shortcut = nn.Sequential(
                _conv(fin, fout, 1, bias=False), _CenterBN(fout), nn.LeakyReLU(0.2)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class LIAEncoder(nn.Module):
    """f: x -> y of the released LIA (genforce/lia ``networks_encoder.Encoder``; the paper puts
    "no special constraint to the architecture of the encoder", §6): a 3x3 stem of ``width``
    maps, then per halving of the resolution (2x2 average pooling) a residual block doubling the
    width up to ``width_max``, down to 4x4, and a dense layer to the code, batch-normalised
    without scale. Equalised learning rate in every conv, He-scale dense layer (gain 1)."""

    def __init__(
        self, channels: int, resolution: int, dim: int, width: int = 64, width_max: int = 512
    ) -> None:
        super().__init__()
        n = int(math.log2(resolution // 4))
        if n < 1 or 4 * 2**n != resolution:
            raise UsageError(
                f"LIA's encoder needs a power-of-two resolution >= 8, got {resolution}"
            )
        self.stem = nn.Sequential(
            _conv(channels, width, 3, bias=False), _CenterBN(width), nn.LeakyReLU(0.2)
        )
        blocks: list[nn.Module] = []
        for i in range(n):
            fin, fout = min(width * 2**i, width_max), min(width * 2 ** (i + 1), width_max)
            blocks += [nn.AvgPool2d(2), _ResBlockBN(fin, fout)]
        self.blocks = nn.Sequential(*blocks)
        c = min(width * 2**n, width_max) * 16
        self.fc = nn.Linear(c, dim, bias=False)
        nn.init.normal_(self.fc.weight, 0.0, 1.0 / math.sqrt(c))
        self.bn = _CenterBN(dim, dims=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.blocks(self.stem(x)).flatten(1)))


def _stylegan_lite(dim: int, channels: int, resolution: int) -> nn.Module:
    """The zoo's style-based synthesis network at its CPU widths, without per-pixel noise
    (a code decodes to one image); y is the w of every layer."""
    from invbench.generators.stylegan_lite import StyleGANLite, StyleSynthesis

    zoo = StyleGANLite.Config()
    return StyleSynthesis(dim, channels, resolution, zoo.channel_base, zoo.channel_max, False)


# -- the perceptual feature extractor eps of eq. 13 ---------------------------------------------
class VGGConv43(Perceptual):
    """eps = VGG-16 conv4_3 after its ReLU (§7: "eps = conv4_3 from the VGG weight"), fed as
    genforce/lia's ``loss_encoder.py`` feeds it: images mapped from [-1, 1] to 0..255 and the
    ImageNet channel means subtracted, without dividing by their std (Keras' caffe-style
    ``preprocess_input``). At that scale the activations are ~58x those of ImageNet-normalised
    input and the squared distance ~3,400x, which is the scale beta1 = 5e-5 was set for.

    The channels stay in RGB order: the weights are torchvision's, trained on RGB input (the
    caffe weights genforce loads were trained on BGR; swapping here would feed each filter the
    wrong colour). Grey images are repeated over the three channels.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.body = vgg16_features(Path(path), 23)  # conv1_1 .. relu4_3
        self.flavor = "vgg16-conv4_3/caffe-0..255"

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(caffe_input(x))


MEAN_RGB = (123.68, 116.779, 103.939)  # ImageNet channel means in 0..255 units (Keras, caffe)


def caffe_input(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> 0..255 with the ImageNet channel means subtracted (RGB order)."""
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return (x + 1) * 127.5 - torch.tensor(MEAN_RGB, device=x.device).view(1, 3, 1, 1)


def resolve_perceptual(kind: str) -> str:
    """``auto`` -> ``vgg`` when the VGG-16 file is found offline, else ``domain``."""
    found = find_weights(VGG16) is not None if kind in ("auto", "vgg") else False
    if kind == "vgg" and not found:
        raise UsageError(f"perceptual=vgg: {missing_message(VGG16)} Or set perceptual=none.")
    return ("vgg" if found else "domain") if kind == "auto" else kind


def feature_balance(eps: Perceptual, images: torch.Tensor, n: int = 1000) -> float:
    """Var(x) / Var(eps(x)) over ``n`` training images (variances averaged over coordinates).

    Multiplying a squared feature distance by it puts the feature error in pixel units: a
    feature error of one feature standard deviation costs what a pixel error of one pixel
    standard deviation costs.
    """
    x = images[:n].to(next(eps.parameters()).device)
    with torch.no_grad():
        feats = eps.embed(x)
    return float(x.var(0).mean() / feats.flatten(1).var(0).mean().clamp_min(1e-12))


def build_perceptual(kind: str, ctx: FitContext, cfg: Any) -> tuple[Perceptual | None, float, str]:
    """eps of eq. 13 with gradients to its input, its weight, and the flavor that names both.

    VGG conv4_3 (the paper's) takes beta1 as it is. Offline, the stand-in is the dataset's LeNet
    (fc84 features). beta1 = 5e-5 was set for conv4_3 on 0..255 images; on the LeNet's features
    (of images in [-1, 1]) it would make the term ~1e-5 of the pixel term, i.e. absent. So its
    weight is set explicitly instead: ``beta1_domain`` x Var(x) / Var(eps(x)), the relative
    feature error weighed ``beta1_domain`` times the relative pixel error (1 by default: eq. 13's
    two terms in balance). The flavor records which network ran and with what weight.
    """
    if kind == "none" or cfg.beta1_perceptual == 0:
        return None, 0.0, "none"
    if kind == "vgg":
        path = find_weights(VGG16)
        assert path is not None
        eps: Perceptual = VGGConv43(str(path)).to(ctx.device)
        return eps, cfg.beta1_perceptual, f"{eps.flavor}/beta1={cfg.beta1_perceptual:g}"
    eps = perceptual_for(ctx, "domain")
    weight = cfg.beta1_domain * feature_balance(eps, ctx.splits.train_images())
    flavor = (
        f"{eps.flavor}-fc84 (offline stand-in for vgg16-conv4_3)/weight={weight:.4g}"
        f"={cfg.beta1_domain:g}xVar(x)/Var(eps(x))"
    )
    return eps, weight, flavor


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per code, summed over coordinates (eq. 3's
    first term; Kingma & Welling 2014, appendix B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)


# -- the method -----------------------------------------------------------------------------------
@METHODS.register("lia")
class LIA(Inverter):
    owns_generator = True
    trains = True
    train_version = TRAIN_VERSION
    inference_fields = frozenset(INFERENCE_FIELDS)  # the runner's cache key leaves them out

    @dataclass
    class Config:
        """Defaults; the paper's values with citations are in configs/methods/lia.yaml."""

        mapping: Literal["nice", "mlp"] = "nice"
        backbone: Literal["dcgan", "stylegan-lite", "stylegan2"] = "dcgan"
        z_dim: int = bounded(32, ge=2, le=MAX_WIDTH)  # d_z = d_y (phi is dimension-preserving)
        # §7: "the layer number of the invertible network is 8"
        flow_depth: int = bounded(8, ge=1, le=256)
        # width of tau's hidden layer (the MLP's width is z_dim)
        flow_hidden: int = bounded(64, ge=1, le=MAX_WIDTH)
        # equalised-lr multiplier of the flow / MLP (genforce/lia)
        mapping_lr_mul: float = bounded(0.01, gt=0, le=MAX_LR)
        ngf: int = bounded(16, ge=1, le=MAX_WIDTH)
        ndf: int = bounded(16, ge=1, le=MAX_WIDTH)
        nef: int = bounded(16, ge=1, le=MAX_WIDTH)
        d_norm: Literal["batch", "layer", "none"] = "batch"
        # stage 1: the decoder as a GAN (§5.1), genforce/lia's train_decoder.py recipe
        steps: int = bounded(1500, ge=0, le=MAX_STEPS)
        batch_size: int = bounded(64, ge=1, le=MAX_BATCH)
        lr_g: float = bounded(1.5e-3, gt=0, le=MAX_LR)
        lr_d: float = bounded(1.5e-3, gt=0, le=MAX_LR)
        adam_beta1: float = bounded(0.0, ge=0, lt=1)
        adam_beta2: float = bounded(0.99, ge=0, lt=1)
        # R1 on real images in stage 1 (r1_gamma 10 x 0.5)
        gamma_r1_stage1: float = bounded(5.0, ge=0, le=MAX_WEIGHT)
        # > 0: the decoder kept after stage 1 is the moving average of the trained one with this
        # decay (the zoo's ``ema``, warm-up included; StyleGAN's G_ema, which backbone=stylegan2
        # keeps by ``ema_kimg``); 0 keeps the last iterate, as every table before it was made
        ema_stage1: float = bounded(0.0, ge=0, lt=1, since=3)
        # backbone=stylegan-lite: style-mixing regularisation in stage 1 (StyleGAN §3.1) with this
        # probability, of y codes across synthesis layers, as the zoo's stylegan-lite trains
        # (``mixing_prob``) and backbone=stylegan2 does; 0 (before it existed) mixes nothing
        mixing_stage1: float = bounded(0.0, ge=0, le=1, since=3)
        # backbone=stylegan2: StyleGAN2's stage-1 recipe (App. B; StyleGAN2Recipe's values)
        r1_every_stage1: int = bounded(16, ge=1, le=MAX_STEPS, since="paper")  # lazy R1 interval
        # path-length regularisation (§3.2), every pl_every steps
        pl_weight: float = bounded(2.0, ge=0, le=MAX_WEIGHT, since="paper")
        pl_every: int = bounded(4, ge=1, le=MAX_STEPS, since="paper")
        mixing_prob: float = bounded(0.9, ge=0, le=1, since="paper")  # style mixing (StyleGAN §3.1)
        # the decoder kept is the moving average (half-life in thousands of images)
        ema_kimg: float = bounded(10.0, gt=0, le=1e6, since="paper")
        # stylegan2: the widest feature map of every network (config F: 512)
        channel_max: int = bounded(512, ge=1, le=MAX_WIDTH, since="paper")
        # A StyleGAN2 checkpoint whose synthesis weights start stage 1 ("" = from scratch);
        # same resolution and widths; its name and SHA-256 go into the record's flavor.
        init_synthesis: str = later("", since="paper")
        # stage 2: the encoder against the frozen decoder (§5.2)
        enc_steps: int = bounded(1500, ge=0, le=MAX_STEPS)
        enc_batch_size: int = bounded(64, ge=1, le=MAX_BATCH)
        lr_e: float = bounded(1e-4, gt=0, le=MAX_LR)
        lr_d2: float = bounded(1e-4, gt=0, le=MAX_LR)
        enc_adam_beta1: float = bounded(0.9, ge=0, lt=1)
        enc_adam_beta2: float = bounded(0.99, ge=0, lt=1)
        # beta1 of eq. 13 (for VGG conv4_3 on 0..255 input)
        beta1_perceptual: float = bounded(5e-5, ge=0, le=MAX_WEIGHT)
        # the offline LeNet stand-in's weight (build_perceptual)
        beta1_domain: float = bounded(1.0, ge=0, le=MAX_WEIGHT)
        beta2_adversarial: float = bounded(0.1, ge=0, le=MAX_WEIGHT)  # beta2 of eq. 18
        gamma_r1: float = bounded(5.0, ge=0, le=MAX_WEIGHT)  # gamma of eq. 14
        # apply the penalty every k discriminator steps (weight k * gamma)
        r1_every: int = bounded(4, ge=1, le=MAX_STEPS)
        perceptual: Literal["auto", "vgg", "domain", "none"] = "auto"
        # > 0: a variational encoder with eq. 3's KL term (lia-mlp)
        kl_weight: float = bounded(0.0, ge=0, le=MAX_WEIGHT)
        ckpt_every: int = bounded(250, ge=1, le=MAX_STEPS)
        # inversion (§7.2-7.3)
        space: Literal["y", "z", "y+"] = "y"
        refine_steps: int = bounded(0, ge=0, le=MAX_STEPS)
        refine_init: Literal["encoder", "mean", "random"] = "encoder"
        refine_lr: float = bounded(0.05, gt=0, le=MAX_LR)
        refine_optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
        refine_loss: Literal["pixel+perceptual", "pixel"] = "pixel+perceptual"  # eq. 5

        def validate(self) -> None:
            if self.z_dim < 2 or self.flow_depth < 1 or self.flow_hidden < 1:
                raise ValueError("z_dim must be >= 2, flow_depth and flow_hidden >= 1")
            if min(self.ngf, self.ndf, self.nef) < 1:
                raise ValueError("ngf, ndf and nef must be positive")
            if min(self.batch_size, self.enc_batch_size, self.ckpt_every, self.r1_every) < 1:
                raise ValueError("batch sizes, ckpt_every and r1_every must be positive")
            if min(self.steps, self.enc_steps, self.refine_steps) < 0:
                raise ValueError("steps, enc_steps and refine_steps must be >= 0")
            if min(self.lr_g, self.lr_d, self.lr_e, self.lr_d2, self.refine_lr) <= 0:
                raise ValueError("learning rates must be positive")
            if self.mapping_lr_mul <= 0:
                raise ValueError("mapping_lr_mul must be positive")
            weights = (self.beta1_perceptual, self.beta1_domain, self.beta2_adversarial)
            if min(*weights, self.gamma_r1, self.gamma_r1_stage1, self.kl_weight) < 0:
                raise ValueError(
                    "beta1_perceptual, beta1_domain, beta2_adversarial, gamma_r1, "
                    "gamma_r1_stage1 and kl_weight must be >= 0"
                )
            if self.mapping == "mlp" and self.space != "z":
                raise ValueError(
                    "with mapping=mlp the encoder infers z (the MLP has no inverse); set space=z"
                )
            if self.space == "y+" and self.backbone == "dcgan":
                raise ValueError(
                    "space=y+ (one y per synthesis layer) needs a style-based backbone "
                    "(stylegan-lite or stylegan2); the DCGAN decoder reads its code in one layer"
                )
            if self.init_synthesis and self.backbone != "stylegan2":
                raise ValueError(
                    "init_synthesis loads StyleGAN2 weights: it needs backbone=stylegan2"
                )

    def __init__(
        self,
        cfg: Config,
        generator: Generator | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        super().__init__(cfg, None, device, seed)
        self._channels: int | None = None
        self._resolution: int | None = None
        self.perceptual_flavor = "untrained"
        self.perceptual_weight = 0.0
        self._eps: Perceptual | None = None
        self._eps_state: dict[str, torch.Tensor] = {}
        self._mean_y: torch.Tensor | None = None
        self.decoder_init = ""  # init_synthesis as "<file> sha256=<digest>" (the flavor's)

    # -- modules ----------------------------------------------------------------------------------
    @property
    def code_space(self) -> str:
        """The space the encoder writes to: y behind the flow, z behind the MLP."""
        return "y" if self.cfg.mapping == "nice" else "z"

    @property
    def variational(self) -> bool:
        """A stochastic encoder q(z|x) (lia-mlp, eq. 4) rather than LIA's deterministic f."""
        return self.cfg.kl_weight > 0

    def build(self, channels: int, resolution: int) -> None:
        """Fresh networks, initialised from the run's seed (independent of the global RNG)."""
        out = self.cfg.z_dim * (2 if self.variational else 1)  # mu and log sigma^2
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            gen = LIADecoder(self.cfg, channels, resolution)
            self.disc = gen.make_discriminator().to(self.device)
            if self.cfg.backbone == "stylegan2":
                cap = self.cfg.channel_max
                self.encoder: nn.Module = LIAEncoder(channels, resolution, out, min(64, cap), cap)
            else:
                self.encoder = Encoder(channels, resolution, (out,), self.cfg.nef)
        self.generator = gen.to(self.device)
        self.encoder.to(self.device)
        self._channels, self._resolution = channels, resolution

    @classmethod
    def preflight(cls, cfg: Any, has_labels: bool) -> None:
        """Before stage 1 trains: eq. 13's network for stage 2 (VGG-16 conv4_3, or the offline
        LeNet stand-in, which trains on the dataset's labels) and ``init_synthesis``'s file."""
        if cfg.enc_steps and cfg.beta1_perceptual > 0 and cfg.perceptual != "none":
            kind = resolve_perceptual(cfg.perceptual)  # perceptual=vgg without the file stops
            if kind == "domain" and not has_labels:
                raise UsageError(
                    f"perceptual={cfg.perceptual}: the dataset has no class labels to train the "
                    f"offline stand-in for eq. 13's VGG-16 on, and {missing_message(VGG16)} "
                    "Or set perceptual=none (stage 2 without the perceptual term)."
                )
        if cfg.init_synthesis:
            from invbench.weights import find_stylegan2

            find_stylegan2(cfg.init_synthesis)
        super().preflight(cfg, has_labels)

    def networks(self) -> dict[str, nn.Module]:
        if self.generator is None:
            return {}
        gen = self.generator  # an LIADecoder: phi^-1 (the flow or the MLP) and g
        return {
            "mapping": gen.mapping,
            "decoder": gen.net,
            "encoder": self.encoder,
            "discriminator": self.disc,
        }

    def fit_identity(self, ctx: FitContext) -> dict[str, Any]:
        """Which perceptual network stage 2 trains with depends on the weights found here, and
        a stage 1 started from ``init_synthesis`` on that file's content (name and SHA-256)."""
        out: dict[str, Any] = {
            "perceptual": resolve_perceptual(self.cfg.perceptual) if self.cfg.enc_steps else "none"
        }
        if self.cfg.init_synthesis:
            out["decoder_init"] = self._decoder_init_name()
        return out

    def _decoder_init_name(self) -> str:
        """``init_synthesis`` as the record's flavor names it: ``<file> sha256=<digest>``."""
        if not self.decoder_init:
            from invbench.artifacts import sha256_file
            from invbench.weights import find_stylegan2

            path = find_stylegan2(self.cfg.init_synthesis)
            self.decoder_init = f"{path.name} sha256={sha256_file(path)}"
        return self.decoder_init

    def _init_synthesis_weights(self) -> dict[str, torch.Tensor]:
        """The pretrained StyleGAN2's ``g_ema`` whose synthesis weights start stage 1."""
        from invbench.generators.stylegan2 import read_checkpoint
        from invbench.weights import find_stylegan2

        path = find_stylegan2(self.cfg.init_synthesis)
        g_ema = read_checkpoint(path).get("g_ema")
        if g_ema is None:
            raise UsageError(f"init_synthesis={path}: not a StyleGAN2 (a StyleGAN3 pickle?).")
        return g_ema

    # -- fit: the two stages ------------------------------------------------------------------------
    def fit(self, ctx: FitContext) -> None:
        """Both stages, resumable; the runner caches the result once (``fit_key``)."""
        self.device = ctx.device
        perc_kind = self.fit_identity(ctx)["perceptual"]
        key = self.fit_key(ctx)
        self.build(ctx.splits.channels, ctx.splits.resolution)
        state = artifacts.load_checkpoint(ARTIFACT_KIND, key)
        if state is None or int(state["stage"]) == 1:
            self.train_decoder(ctx, key, state)
            state = artifacts.load_checkpoint(ARTIFACT_KIND, key)
        self.train_encoder(ctx, key, state, perc_kind)
        artifacts.drop_checkpoint(ARTIFACT_KIND, key)

    def _checkpointer(
        self,
        key: str,
        stage: int,
        rng: torch.Generator,
        ema: nn.Module | None = None,
        **opts: torch.optim.Optimizer,
    ) -> Checkpointer:
        """The resumable state of ``stage``: the three networks (and the decoder's moving
        average while stage 1 keeps one), its optimisers and ``rng``."""
        assert self.generator is not None
        nets = {"gen": self.generator, "disc": self.disc, "enc": self.encoder}
        if ema is not None:
            nets["ema"] = ema
        return Checkpointer(
            key,
            nets,
            opts,
            rng,
            kind=ARTIFACT_KIND,
            torch_rng=False,
            extra=lambda: {"stage": stage},
        )

    def _loop(self, ckpt: Checkpointer, stage: int, start: int, steps: int) -> TrainingLoop:
        part = "decoder" if stage == 1 else "encoder"
        return TrainingLoop(
            ckpt,
            start,
            steps,
            self.cfg.ckpt_every,
            f"{self.name} stage {stage} ({part})",
            what=f"{self.name} stage {stage}",
            lower="the learning rates (--set lr_g=..., lr_d=..., lr_e=..., lr_d2=...)",
        )

    def _batch(self, data: torch.Tensor, n: int, rng: torch.Generator) -> torch.Tensor:
        return data[torch.randint(len(data), (n,), generator=rng)].to(self.device)

    def train_decoder(self, ctx: FitContext, key: str, state: dict[str, Any] | None = None) -> None:
        """Stage 1 (eqs. 15-16): min over phi, g and max over c of the GAN game, z ~ N(0, I)."""
        if self.cfg.backbone == "stylegan2":
            return self._train_decoder_stylegan2(ctx, key, state)
        cfg, gen, disc = distributed.per_rank(self.cfg, "batch_size"), self.generator, self.disc
        assert gen is not None
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        # One learning rate: the mapping's multiplier (0.01) is part of its parametrisation
        # (equalised learning rate), as in genforce/lia and StyleGAN.
        opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=betas)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=betas)
        rng = torch.Generator().manual_seed(self.seed)
        ema = copy.deepcopy(gen).requires_grad_(False) if cfg.ema_stage1 > 0 else None
        ckpt = self._checkpointer(key, 1, rng, ema, opt_g=opt_g, opt_d=opt_d)
        start = ckpt.resume_from(state)
        gen.train().requires_grad_(True)
        disc.train().requires_grad_(True)
        data = ctx.splits.train_images()
        loop = self._loop(ckpt, 1, start, cfg.steps)
        for step in loop:
            real = self._batch(data, cfg.batch_size, rng)
            with torch.no_grad():
                fake = gen.training_forward(gen.sample_z(cfg.batch_size, rng), rng)
            lazy = cfg.gamma_r1_stage1 > 0 and step % cfg.r1_every == 0
            real.requires_grad_(lazy)
            logit_real = disc(real)
            loss_d = gan_d_loss(logit_real, disc(fake))
            if lazy:
                loss_d = loss_d + cfg.gamma_r1_stage1 * cfg.r1_every * r1_penalty(logit_real, real)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            disc.requires_grad_(False)  # the generator's step needs no gradients in c
            loss_g = gan_g_loss(disc(gen.training_forward(gen.sample_z(cfg.batch_size, rng), rng)))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            disc.requires_grad_(True)
            if ema is not None:
                ema_update(ema, gen, cfg.ema_stage1, step)
            loop.report(step, loss_d=loss_d, loss_g=loss_g)
        if ema is not None:
            keep_average(gen, ema, cfg.batch_size, rng)
        # Stage 1 done: an interruption from here resumes stage 2 with fresh optimisers.
        self._checkpointer(key, 2, rng).save(0)

    def _train_decoder_stylegan2(
        self, ctx: FitContext, key: str, state: dict[str, Any] | None
    ) -> None:
        """Stage 1 at paper scale: phi^-1 and g trained as StyleGAN2 is (App. B; ``GANStep``:
        style mixing of y codes, lazy R1 and path length with lazy-scaled Adam), and the decoder
        kept for stage 2 is the moving average of the trained one (StyleGAN2's G_ema). Per-pixel
        noise comes from torch's generator, which the checkpoint carries (exact resumption)."""
        from invbench.generators.stylegan2_training import (
            GANStep,
            PathLengthPenalty,
            StyleGAN2Recipe,
            ema_beta,
            lazy_adam,
            update_ema,
        )

        # Each rank's share of the batch (torchrun; the Checkpointer averages gradients across
        # ranks); the recipe and the moving average keep the global batch (App. B).
        cfg, gen, disc = distributed.per_rank(self.cfg, "batch_size"), self.generator, self.disc
        assert gen is not None
        if state is None and cfg.init_synthesis:
            gen.net.load_synthesis(self._init_synthesis_weights())  # type: ignore[union-attr]
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        opt_g = lazy_adam(gen.parameters(), cfg.lr_g, betas, cfg.pl_every if cfg.pl_weight else 0)
        r1_every = cfg.r1_every_stage1 if cfg.gamma_r1_stage1 else 0
        opt_d = lazy_adam(disc.parameters(), cfg.lr_d, betas, r1_every)
        recipe = StyleGAN2Recipe(
            r1_gamma=2 * cfg.gamma_r1_stage1,  # gamma_r1_stage1 is gamma / 2 (see Config)
            r1_every=cfg.r1_every_stage1,
            pl_weight=cfg.pl_weight,
            pl_every=cfg.pl_every,
            mixing_prob=cfg.mixing_prob,
            ema_kimg=cfg.ema_kimg,
            batch_size=self.cfg.batch_size,
        )
        pl = PathLengthPenalty().to(self.device)
        ema = copy.deepcopy(gen).eval().requires_grad_(False)
        rng = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)  # the per-pixel noise of training
        nets = {"gen": gen, "disc": disc, "enc": self.encoder, "ema": ema, "pl": pl}
        opts = {"opt_g": opt_g, "opt_d": opt_d}
        ckpt = Checkpointer(key, nets, opts, rng, kind=ARTIFACT_KIND, extra=lambda: {"stage": 1})
        start = ckpt.resume_from(state)
        gen.train().requires_grad_(True)
        disc.train().requires_grad_(True)
        step_fn = GANStep(gen.y_from_z, gen.net, disc, opt_g, opt_d, recipe, cfg.z_dim, pl)
        beta = ema_beta(self.cfg.batch_size, cfg.ema_kimg)
        data = ctx.splits.train_images()  # streamed when it does not fit in memory
        loop = self._loop(ckpt, 1, start, cfg.steps)
        for step in loop:
            losses = step_fn(self._batch(data, cfg.batch_size, rng), step, rng)
            update_ema(ema, gen, beta)
            loop.report(step, **losses)
        gen.load_state_dict(ema.state_dict())
        self._checkpointer(key, 2, rng).save(0)

    def _encode_train(
        self, x: torch.Tensor, rng: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The code the encoder gives ``x`` while training, and the KL term when variational:
        a reparameterised draw z = mu + sigma * e, e ~ N(0, I) (Kingma & Welling 2014, §2.4)."""
        out = self.encoder(x)
        if not self.variational:
            return out, None
        mu, logvar = out.chunk(2, dim=1)
        noise = torch.randn(mu.shape, generator=rng).to(mu.device)
        return mu + noise * (0.5 * logvar).exp(), gaussian_kl(mu, logvar).mean()

    def train_encoder(
        self,
        ctx: FitContext,
        key: str,
        state: dict[str, Any] | None = None,
        perceptual: str = "none",
    ) -> None:
        """Stage 2 (eqs. 13, 17-18; eq. 4 for lia-mlp): phi, g frozen; f and the stage-1 c
        fine-tuned."""
        cfg = distributed.per_rank(self.cfg, "enc_batch_size")  # each rank's share (torchrun)
        gen, disc, enc = self.generator, self.disc, self.encoder
        assert gen is not None
        betas = (cfg.enc_adam_beta1, cfg.enc_adam_beta2)
        opt_e = torch.optim.Adam(enc.parameters(), lr=cfg.lr_e, betas=betas)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d2, betas=betas)
        rng = torch.Generator().manual_seed(self.seed + 1)
        ckpt = self._checkpointer(key, 2, rng, opt_e=opt_e, opt_d2=opt_d)
        start = ckpt.resume_from(state)  # the hand-over of stage 1 loads the networks only
        # Frozen, and in eval mode so that no BatchNorm statistic of g moves either (§5.2).
        gen.eval().requires_grad_(False)
        disc.train().requires_grad_(True)
        enc.train().requires_grad_(True)
        eps, weight, flavor = build_perceptual(perceptual, ctx, cfg)
        self._set_perceptual(eps, weight, flavor)
        data = ctx.splits.train_images()
        loop = self._loop(ckpt, 2, start, cfg.enc_steps)
        for step in loop:
            real = self._batch(data, cfg.enc_batch_size, rng)
            # Discriminator: fine-tuned with the gradient penalty of eq. 14 on real images.
            with torch.no_grad():
                fake = gen.synthesize(self._encode_train(real, rng)[0], self.code_space)
            lazy = cfg.gamma_r1 > 0 and step % cfg.r1_every == 0
            real_g = real.detach().requires_grad_(lazy)
            logit_real = disc(real_g)
            loss_d = gan_d_loss(logit_real, disc(fake))
            if lazy:  # lazy regularisation (StyleGAN2, §B): every k steps, weighted by k
                loss_d = loss_d + cfg.gamma_r1 * cfg.r1_every * r1_penalty(logit_real, real_g)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            # Encoder: eq. 13 reconstruction + beta2 * adversarial (eq. 18) [+ KL, eq. 4].
            disc.requires_grad_(False)
            code, kl = self._encode_train(real, rng)
            recon = gen.synthesize(code, self.code_space)
            loss_pix = F.mse_loss(recon, real)
            loss_e = loss_pix + cfg.beta2_adversarial * gan_g_loss(disc(recon))
            if eps is not None:
                loss_e = loss_e + weight * eps.distance(recon, eps.prepare(real)).mean()
            if kl is not None:
                loss_e = loss_e + cfg.kl_weight * kl
            opt_e.zero_grad(set_to_none=True)
            loss_e.backward()
            opt_e.step()
            disc.requires_grad_(True)
            shown = {"pixel": (loss_pix, ".4f"), "loss_d": (loss_d, ".3f")}
            loop.report(step, shown, loss_d=loss_d, loss_e=loss_e)
        enc.eval().requires_grad_(False)
        disc.eval().requires_grad_(False)

    def _set_perceptual(self, eps: Perceptual | None, weight: float, flavor: str) -> None:
        self._eps, self.perceptual_weight, self.perceptual_flavor = eps, weight, flavor
        self._eps_state = perceptual_state(eps) if eps is not None else {}
        self._eps_state.pop("perceptual_flavor", None)  # kept as meta.perceptual

    def perceptual_net(self) -> Perceptual | None:
        """eps as stage 2 used it (for eq. 5's refinement), rebuilt after a cache load."""
        if self._eps is None and self.perceptual_weight > 0:
            if self._eps_state:  # the LeNet stand-in travels with the model
                self._eps = perceptual_from_state(self._eps_state, self.device)
            else:  # VGG conv4_3: found on disk again, as it was when fit ran
                path = find_weights(VGG16)
                if path is None:
                    raise UsageError(f"refinement with eq. 5's VGG term: {missing_message(VGG16)}")
                self._eps = VGGConv43(str(path)).to(self.device)
        return self._eps

    # -- cache ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        assert self.generator is not None and self._channels is not None
        out = {f"gen.{k}": v for k, v in self.generator.state_dict().items()}
        out.update({f"enc.{k}": v for k, v in self.encoder.state_dict().items()})
        out.update({f"eps.{k}": v for k, v in self._eps_state.items()})
        out["meta.shape"] = torch.tensor([self._channels, self._resolution])
        out["meta.perceptual"] = torch.tensor(
            list(self.perceptual_flavor.encode()), dtype=torch.uint8
        )
        out["meta.perceptual_weight"] = torch.tensor(self.perceptual_weight, dtype=torch.float64)
        if self.decoder_init:
            out["meta.decoder_init"] = torch.tensor(
                list(self.decoder_init.encode()), dtype=torch.uint8
            )
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.generator is None:
            c, r = (int(v) for v in state["meta.shape"])
            self.build(c, r)
        assert self.generator is not None
        self.generator.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("gen.")})
        self.encoder.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("enc.")})
        self.perceptual_flavor = bytes(state["meta.perceptual"].tolist()).decode()
        self.perceptual_weight = float(state["meta.perceptual_weight"])
        init = state.get("meta.decoder_init")
        self.decoder_init = bytes(init.tolist()).decode() if init is not None else ""
        self._eps_state = {k[4:]: v for k, v in state.items() if k.startswith("eps.")}
        self._eps = None
        self.generator.to(self.device).eval().requires_grad_(False)
        self.encoder.to(self.device).eval().requires_grad_(False)

    def flavor(self) -> dict[str, str]:
        out = {"perceptual": self.perceptual_flavor}
        if self.decoder_init:  # stage 1 started from a pretrained StyleGAN2's synthesis weights
            out["decoder_init"] = self.decoder_init
        return out

    # -- inversion -------------------------------------------------------------------------------------
    def _code(self, images: torch.Tensor) -> torch.Tensor:
        """f(x): y for LIA, the posterior mean mu(x) for the variational lia-mlp."""
        out = self.encoder(images.to(self.device))
        return out.chunk(2, dim=1)[0] if self.variational else out

    def _into_space(self, code: torch.Tensor) -> torch.Tensor:
        """A code of the encoder's space in ``cfg.space``: z = phi(y) (§7.3), y+ = y per layer."""
        gen = self.generator
        assert gen is not None
        if self.code_space == "y" and self.cfg.space == "z":
            return gen.z_from_y(code)
        if self.cfg.space == "y+":
            return gen.per_layer(code)
        return code

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's code in ``self.space`` (y = f(x), z = phi(f(x)), or y+)."""
        with torch.no_grad():
            return self._into_space(self._code(images))

    def initial_code(self, images: torch.Tensor) -> torch.Tensor:
        """The refinement's start (§7.2), made in the encoder's space and mapped by phi (§7.3)
        or repeated per layer (§7.2)."""
        gen = self.generator
        assert gen is not None
        init, space = self.cfg.refine_init, self.code_space
        with torch.no_grad():
            if init == "encoder":
                code = self._code(images)
            elif init == "mean":  # Image2StyleGAN's average code
                if self._mean_y is None:
                    self._mean_y = gen.mean_latent(space)
                code = self._mean_y.expand(len(images), -1).clone()
            else:  # a prior sample, seeded by the image's content (independent of its batch)
                code = init_latents(gen, images, space, "random", self.seed)
            return self._into_space(code)

    def invert(self, images: torch.Tensor) -> Latents:
        assert self.generator is not None, "call fit() or load_state_dict() first"
        if self.cfg.refine_steps == 0:
            return Latents(self.encode(images), self.cfg.space)
        # Eq. 5: pixel distance plus the perceptual distance, here stage 2's eps and weight.
        eps = self.perceptual_net() if self.cfg.refine_loss == "pixel+perceptual" else None
        opt_cfg = OptimConfig(
            space=self.cfg.space,
            steps=self.cfg.refine_steps,
            lr=self.cfg.refine_lr,
            optimizer=self.cfg.refine_optimizer,
            loss="l2",
            perceptual_weight=self.perceptual_weight if eps is not None else 0.0,
        )
        code, _ = optimise(
            self.generator,
            images.to(self.device),
            self.initial_code(images),
            opt_cfg,
            perceptual=eps,
            desc=f"{self.name} refine in {self.cfg.space} ({len(images)} images)",
        )
        return Latents(code, self.cfg.space)


@METHODS.register("lia-mlp")
class LIAMLP(LIA):
    """Table 3's VAE/GAN column: LIA's two stages with StyleGAN's MLP mapping and a variational
    encoder that infers z (eq. 4)."""

    @dataclass
    class Config(LIA.Config):
        mapping: Literal["nice", "mlp"] = "mlp"
        space: Literal["y", "z", "y+"] = "z"
        kl_weight: float = 1e-4


@METHODS.register("lia-stylegan")
class LIAStyle(LIA):
    """LIA on the zoo's style-based synthesis network (the paper's StyleGAN decoder, §7), which
    offers y+ for Table 4's per-layer refinement; defaults in configs/methods/lia-stylegan.yaml."""

    @dataclass
    class Config(LIA.Config):
        backbone: Literal["dcgan", "stylegan-lite", "stylegan2"] = "stylegan-lite"
        d_norm: Literal["batch", "layer", "none"] = "none"
        batch_size: int = 32
        lr_g: float = 2e-3  # the zoo's stylegan-lite recipe (configs/generators/stylegan-lite.yaml)
        lr_d: float = 2e-3
        gamma_r1_stage1: float = 0.5
