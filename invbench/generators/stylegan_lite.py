"""``stylegan-lite``: a small style-based generator after StyleGAN2 (Karras et al. 2020).

    z --MappingNetwork--> w --(one w per layer: w+)--> StyleSynthesis --> image in [-1, 1]

- Mapping: z normalised to unit second moment, then ``mapping_layers`` fully connected layers
  (8 as in StyleGAN; its learning rate is scaled by ``mapping_lr_mul`` = 0.01 as in StyleGAN).
- Synthesis: a learned constant 4x4 input; per resolution two 3x3 *modulated convolutions*
  (StyleGAN2 eqs. 1-3: weights scaled by the per-layer style s = A(w), then demodulated so each
  output feature map has unit expected std), per-pixel noise with a learned strength, and a
  "skip" output: every resolution adds its 1x1 ToRGB (modulated, not demodulated) to the
  upsampled image of the previous one.
- Latent spaces: ``z`` (N(0, I)), ``w`` (one code broadcast to all layers), ``w+`` ([num_ws,
  w_dim], one code per layer; Abdal et al. 2019). ``mix`` builds a w+ from two latents,
  ``truncate`` pulls codes toward the mean w (the truncation trick), ``mean_latent("w")`` is
  that mean (estimated from 4,096 samples).

Lite, on purpose, for CPU: upsampling is bilinear (not StyleGAN2's [1,3,3,1] FIR transposed
convolution), the output is squashed by tanh to honour the zoo's [-1, 1] contract (StyleGAN2
leaves it linear), and the discriminator is the zoo's ``DCGANDiscriminator`` without
normalisation, trained with the non-saturating loss and the R1 penalty as in StyleGAN2 (no
residual discriminator, no minibatch-stddev layer, no path-length regulariser, no lazy
regularisation). Noise is random while training and a fixed buffer at inference, so synthesis
is deterministic (``noise_mode`` chooses "random", "const" or "none").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from invbench.config import MAX_LR, MAX_WIDTH, bounded
from invbench.generators.base import GanTraining, Generator, validate_training
from invbench.generators.dcgan import DCGANDiscriminator
from invbench.registry import GENERATORS

NoiseMode = Literal["random", "const", "none"]
SQRT2 = math.sqrt(2.0)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    # StyleGAN's activation: leaky ReLU with gain sqrt(2) to keep unit variance.
    return F.leaky_relu(x, 0.2) * SQRT2


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class EqualLinear(nn.Module):
    """Fully connected layer with the equalised learning rate of Karras et al. (2018, §4.1)."""

    def __init__(
        self, in_f: int, out_f: int, bias_init: float = 0.0, lr_mul: float = 1.0, act: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_f,), float(bias_init) / lr_mul))
        self.w_gain = lr_mul / math.sqrt(in_f)
        self.b_gain = lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.w_gain, self.bias * self.b_gain)
        return _lrelu(x) if self.act else x


class MappingNetwork(nn.Module):
    """z -> w: normalise z to unit second moment, then an MLP with leaky ReLUs (StyleGAN §2)."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_mul: float = 0.01) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.z_dim, self.w_dim = z_dim, w_dim
        self.layers = nn.Sequential(
            *[EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, act=True) for i in range(num_layers)]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        return self.layers(z)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution, eqs. 1-3, in its un-fused form (the same maths).

    s = A(w) scales the input feature maps (eq. 1, w'_ijk = s_i w_ijk); with ``demodulate`` the
    output map j is divided by sigma_j = sqrt(sum_ik (s_i w_ijk)^2 + eps) (eqs. 2-3).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # styles start near 1
        self.demodulate = demodulate
        self.pad = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)  # [B, in]
        weight = self.weight * self.gain
        x = F.conv2d(x * s[:, :, None, None], weight, padding=self.pad)
        if self.demodulate:
            sigma_inv = torch.rsqrt(s.square() @ weight.square().sum((2, 3)).t() + 1e-8)
            x = x * sigma_inv[:, :, None, None]  # [B, out]
        return x


class StyledLayer(nn.Module):
    """(Upsample) -> modulated 3x3 conv -> + noise * strength -> + bias -> leaky ReLU."""

    def __init__(
        self, in_ch: int, out_ch: int, w_dim: int, resolution: int, up: bool, noise: bool
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, w_dim)
        self.up = up
        self.use_noise = noise
        if noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode = "const",
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        x = self.conv(_up(x) if self.up else x, w)
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                b, _, h, wd = x.shape
                noise = torch.randn(b, 1, h, wd, generator=rng).to(x.device)
            else:
                noise = self.noise_const
            x = x + noise * self.noise_strength
        return _lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """1x1 modulated convolution without demodulation, plus a bias (StyleGAN2 Fig. 2)."""

    def __init__(self, in_ch: int, channels: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


class StyleSynthesis(nn.Module):
    """ws [B, num_ws, w_dim] -> images [B, channels, resolution, resolution] in [-1, 1].

    Layer i of the w+ code drives, in order: the 4x4 conv (0), then per resolution r = 8..R its
    two convs, with each ToRGB sharing the w of the next conv (StyleGAN2's indexing), so
    ``num_ws = 2 log2(R) - 2`` (8 at 32x32, 10 at 64x64). Low indices control coarse structure,
    high indices fine detail. Feature maps at resolution r have min(channel_base // r,
    channel_max) channels.
    """

    def __init__(
        self,
        w_dim: int,
        channels: int,
        resolution: int,
        channel_base: int = 1024,
        channel_max: int = 64,
        noise: bool = True,
    ) -> None:
        super().__init__()
        log2 = int(math.log2(resolution))
        if resolution < 8 or 2**log2 != resolution:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")

        def ch(r: int) -> int:
            return max(1, min(channel_base // r, channel_max))

        self.w_dim, self.resolution, self.channels = w_dim, resolution, channels
        self.num_ws = 2 * log2 - 2
        self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
        self.conv4 = StyledLayer(ch(4), ch(4), w_dim, 4, up=False, noise=noise)
        self.rgb4 = ToRGB(ch(4), channels, w_dim)
        self.convs = nn.ModuleList()
        self.rgbs = nn.ModuleList()
        for k in range(3, log2 + 1):
            r = 2**k
            self.convs.append(StyledLayer(ch(r // 2), ch(r), w_dim, r, up=True, noise=noise))
            self.convs.append(StyledLayer(ch(r), ch(r), w_dim, r, up=False, noise=noise))
            self.rgbs.append(ToRGB(ch(r), channels, w_dim))

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: NoiseMode = "const",
        rng: torch.Generator | None = None,
    ) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        x = self.const.expand(len(ws), -1, -1, -1)
        x = self.conv4(x, ws[:, 0], noise_mode, rng)
        img = self.rgb4(x, ws[:, 1])
        for i, rgb in enumerate(self.rgbs):
            j = 1 + 2 * i  # the first w of this resolution
            x = self.convs[2 * i](x, ws[:, j], noise_mode, rng)
            x = self.convs[2 * i + 1](x, ws[:, j + 1], noise_mode, rng)
            img = _up(img) + rgb(x, ws[:, j + 2])
        return torch.tanh(img)


@GENERATORS.register("stylegan-lite")
class StyleGANLite(Generator):
    """Mapping + synthesis; the discriminator is ``DCGANDiscriminator(norm="none")`` + R1."""

    latent_spaces = ("z", "w", "w+")

    @dataclass
    class Config(GanTraining):
        z_dim: int = bounded(64, ge=1, le=MAX_WIDTH)
        w_dim: int = bounded(64, ge=1, le=MAX_WIDTH)
        mapping_layers: int = bounded(8, ge=1, le=64)  # StyleGAN's depth
        # StyleGAN's reduced learning rate of the mapping network
        mapping_lr_mul: float = bounded(0.01, gt=0, le=MAX_LR)
        # narrow for CPU: 32 maps at 4..16 px, 16 at 32 px
        channel_base: int = bounded(512, ge=1, le=1 << 20)
        channel_max: int = bounded(32, ge=1, le=MAX_WIDTH)
        noise: bool = True
        # style-mixing regularisation while training (StyleGAN §3.1)
        mixing_prob: float = bounded(0.9, ge=0, le=1)
        ndf: int = bounded(16, ge=1, le=MAX_WIDTH)
        steps: int = 1500
        batch_size: int = 32
        lr_g: float = 2e-3
        lr_d: float = 2e-3
        beta1: float = 0.0
        beta2: float = 0.99
        r1_gamma: float = 1.0  # see configs/generators/stylegan-lite.yaml

        def validate(self) -> None:
            if min(self.z_dim, self.w_dim, self.mapping_layers, self.channel_base) < 1:
                raise ValueError("z_dim, w_dim, mapping_layers and channel_base must be >= 1")
            if self.channel_max < 1 or self.ndf < 1 or self.mapping_lr_mul <= 0:
                raise ValueError("channel_max and ndf must be >= 1, mapping_lr_mul > 0")
            if not 0 <= self.mixing_prob <= 1:
                raise ValueError("mixing_prob must lie in [0, 1]")
            validate_training(self)

    def __init__(self, cfg: Config, channels: int, resolution: int) -> None:
        super().__init__(cfg, channels, resolution)
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul)
        self.synthesis = StyleSynthesis(
            cfg.w_dim, channels, resolution, cfg.channel_base, cfg.channel_max, cfg.noise
        )

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self.check_space(space)
        return {
            "z": (self.z_dim,),
            "w": (self.cfg.w_dim,),
            "w+": (self.num_ws, self.cfg.w_dim),
        }[space]

    def to_space(self, z: torch.Tensor, space: str) -> torch.Tensor:
        self.check_space(space)
        if space == "z":
            return z
        w = self.mapping(z)
        return w if space == "w" else w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def to_ws(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        """Any latent -> the per-layer codes [B, num_ws, w_dim] the synthesis network takes."""
        self.check_space(space)
        self.check_latent(latent, space)
        if space == "w+":
            return latent
        w = self.mapping(latent) if space == "z" else latent
        return w.unsqueeze(1).expand(-1, self.num_ws, -1)

    def synthesize(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        return self.synthesis(self.to_ws(latent, space))

    def mix(
        self, w1: torch.Tensor, w2: torch.Tensor, cutoff: int, space: str = "w"
    ) -> torch.Tensor:
        """Style mixing: a w+ code taking layers [0, cutoff) from w1 and the rest from w2."""
        if not 0 <= cutoff <= self.num_ws:
            raise ValueError(f"cutoff must lie in [0, {self.num_ws}], got {cutoff}")
        a, b = self.to_ws(w1, space), self.to_ws(w2, space)
        layer = torch.arange(self.num_ws, device=a.device)[None, :, None]
        return torch.where(layer < cutoff, a, b)

    def truncate(self, latent: torch.Tensor, psi: float, space: str = "w") -> torch.Tensor:
        """The truncation trick: w_mean + psi (w - w_mean), in w or w+."""
        if space not in ("w", "w+"):
            raise ValueError("truncation applies to w or w+ latents")
        mean = self.mean_latent(space).to(latent)
        return mean + psi * (latent - mean)

    def training_forward(self, z: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        def second() -> torch.Tensor:
            return self.to_ws(self.sample_z(len(z), rng), "z")

        ws = mix_at_random(self.to_ws(z, "z"), second, self.cfg.mixing_prob, rng)
        return self.synthesis(ws, "random" if self.cfg.noise else "none", rng)

    def make_discriminator(self) -> nn.Module:
        return DCGANDiscriminator(self.channels, self.resolution, self.cfg.ndf, norm="none")

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "w_dim": self.cfg.w_dim, "num_ws": self.num_ws}


def mix_at_random(
    ws: torch.Tensor, second: Callable[[], torch.Tensor], prob: float, rng: torch.Generator
) -> torch.Tensor:
    """Style-mixing regularisation (StyleGAN §3.1) of a batch of per-layer codes ``ws``
    (batch, layers, dim): for a fraction ``prob`` of the batch, the layers from a random cutoff
    in [1, layers) on take the code of a second latent (``second()``, drawn only when
    ``prob`` > 0). Every draw comes from ``rng``, in this order: which samples mix, their
    cutoffs, the second latents."""
    if prob <= 0:
        return ws
    n, layers = ws.shape[:2]
    mixed = torch.rand(n, generator=rng) < prob
    cutoff = torch.randint(1, layers, (n,), generator=rng)
    ws2 = second()
    layer = torch.arange(layers)[None, :]
    take2 = ((layer >= cutoff[:, None]) & mixed[:, None]).to(ws.device)
    return torch.where(take2[:, :, None], ws2, ws)
