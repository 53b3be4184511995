"""``stylegan2``: a pretrained StyleGAN2 generator (Karras et al. 2020, config F) from a checkpoint.

Reads two formats. NVlabs' network pickles (``.pkl``, StyleGAN2-ADA-PyTorch and the StyleGAN2
models of NVlabs' stylegan3 release) are read without running the code they carry and mapped
onto the layers below (``invbench.generators.nvlabs``); a StyleGAN3 pickle is executed by
``invbench.generators.stylegan3`` behind the same interface (spaces z, w, w+; no noise). Otherwise the checkpoint format of
rosinality's stylegan2-pytorch (the format most inversion code uses): a ``torch.save`` dict whose ``g_ema`` entry is the generator's state dict, with keys
``style.N.weight`` (mapping network), ``input.input``, ``conv1.conv.weight``,
``convs.N.conv.modulation.weight``, ``to_rgbs.N.…``, ``noises.noise_N`` and optionally
``latent_avg`` (the official mean w, kept by ``convert_weight.py``). The architecture — output
size, style dimension, mapping depth and the channels of every resolution — is read from the
state dict's shapes, so 256² and 1024² checkpoints (and any channel multiplier) load alike.

The network is a clean re-implementation of the same layers in plain torch (no custom CUDA op):
``upfirdn2d`` is zero-insertion upsampling, padding, a 2-D FIR filter and strided
downsampling; the fused leaky ReLU is ``leaky_relu(x + b, 0.2) * sqrt(2)``.

Latent spaces: ``z`` (N(0, I), 512-d), ``w`` = mapping(z), ``w+`` (one w per style input,
``n_latent`` = 2 log2(size) - 2 rows). Truncation ``w' = w_avg + psi (w - w_avg)`` (StyleGAN,
Karras et al. 2019, eq. 3 of §B) applies when latents are *drawn* (z -> w), never to latents an
inverter passes in. Noise inputs are the checkpoint's fixed ``noises.noise_N`` buffers by default
(``noise_mode: const``), so ``synthesize`` is deterministic and inversion errors are reproducible.

Checkpoints are read with ``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed, as
rosinality's training checkpoints store their ``args``); a file that needs arbitrary code to
unpickle is refused unless ``allow_pickle: true`` is set. This generator never trains:
``pretrained = True`` tells ``invbench.generators.train.obtain`` to load it instead.
"""

from __future__ import annotations

import argparse
import itertools
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from invbench.config import MAX_LR, MAX_SAMPLES, MAX_SEED, bounded
from invbench.errors import DataError, UsageError
from invbench.generators.base import Generator
from invbench.registry import GENERATORS

SQRT2 = math.sqrt(2.0)


# -- upfirdn2d and the fused leaky ReLU, in plain torch ------------------------------------------
def make_kernel(k: list[float] | torch.Tensor) -> torch.Tensor:
    """A separable 1-D FIR kernel -> its normalised 2-D outer product (sums to 1)."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative pads crop), convolve with ``kernel``, decimate.

    The same operation as NVIDIA's ``upfirdn_2d`` (true convolution: the kernel is flipped),
    with ``pad = (before, after)`` applied to both spatial axes as in stylegan2-pytorch.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        hh, ww = x.shape[-2:]
        x = x[:, :, max(-p0, 0) : hh - max(-p1, 0), max(-p0, 0) : ww - max(-p1, 0)]
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x).view(1, 1, kh, kw).expand(c, 1, kh, kw)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Bias, leaky ReLU (slope 0.2) and the sqrt(2) gain that keeps activations' scale."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, 0.2) * SQRT2


# -- layers: parameter names and shapes follow stylegan2-pytorch's ``g_ema`` state dict ----------
class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: weight ~ N(0, 1/lr_mul), scaled at run time."""

    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, act=False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    def __init__(self, kernel: list[float], pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * gain)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the skip (ToRGB) branch."""

    def __init__(self, kernel: list[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's weight (de)modulation (Karras et al. 2020, eqs. 1-3), as a grouped conv.

    w'_ijk = s_i w_ijk (eq. 1); w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps) (eq. 3).
    Upsampling is a stride-2 transposed convolution followed by a [1,3,3,1] blur.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: list[float] = (1, 3, 3, 1),  # type: ignore[assignment]
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.k = in_ch, out_ch, kernel_size
        self.upsample = upsample
        if upsample:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur = Blur(list(blur_kernel), pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s = self.modulation(style).view(b, 1, self.in_ch, 1, 1)
        weight = self.scale * self.weight * s  # eq. 1
        if self.demodulate:  # eq. 3
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(
                b, self.out_ch, 1, 1, 1
            )
        x = x.reshape(1, b * self.in_ch, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, self.k, self.k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = self.blur(out.view(b, self.out_ch, *out.shape[-2:]))
        else:
            weight = weight.reshape(b * self.out_ch, self.in_ch, self.k, self.k)
            out = F.conv2d(x, weight, padding=self.padding, groups=b)
            out = out.view(b, self.out_ch, *out.shape[-2:])
        return out


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


def _clamp(x: torch.Tensor, clamp: float | None) -> torch.Tensor:
    """NVlabs' ``conv_clamp``: activations limited to +-X (None: no clamp, as rosinality)."""
    return x if clamp is None else x.clamp(-clamp, clamp)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        style_dim: int,
        upsample: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = _BiasAct(out_ch)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None):
        return _clamp(self.activate(self.noise(self.conv(x, style), noise)), self.conv_clamp)


class _BiasAct(nn.Module):
    """Holds the ``activate.bias`` parameter of stylegan2-pytorch's FusedLeakyReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class ToRGB(nn.Module):
    def __init__(
        self, in_ch: int, style_dim: int, upsample: bool = True, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample([1, 3, 3, 1])
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None):
        out = _clamp(self.conv(x, style) + self.bias, self.conv_clamp)
        return out if skip is None else out + self.upsample(skip)


def mapping_network(z_dim: int, w_dim: int, n_layers: int, lr_mul: float = 0.01) -> nn.Sequential:
    """StyleGAN's mapping network (Karras et al. 2019, §2): z normalised to unit second moment,
    then ``n_layers`` equalised-lr dense layers with leaky ReLU, learning-rate multiplier 0.01
    (App. C). Indices as ``g_ema``'s ``style.N`` (0 is the normalisation)."""
    dims = [z_dim] + [w_dim] * n_layers
    return nn.Sequential(
        PixelNorm(),
        *[EqualLinear(a, b, lr_mul=lr_mul, act=True) for a, b in itertools.pairwise(dims)],
    )


def checked_channels(
    size: int, channels: dict[int, int] | None = None
) -> tuple[int, dict[int, int]]:
    """log2(size) and the feature maps per resolution (rosinality's table unless given) of a
    generator or discriminator at ``size``, a power of two >= 8."""
    log_size = int(math.log2(size))
    if size < 8 or 2**log_size != size:
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    return log_size, channels or rosinality_channels(size)


def rosinality_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """Channels per resolution of stylegan2-pytorch's Generator (config F: multiplier 2)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    return {
        r: c if r <= 32 else c * channel_multiplier for r, c in table.items() if r <= max(size, 4)
    }


class StyleGAN2Net(nn.Module):
    """The synthesis and mapping networks; module names match the ``g_ema`` state dict.

    ``z_dim`` (default: ``style_dim``, as in rosinality's model) is the mapping's input width;
    NVlabs' generators may differ. ``conv_clamp`` is NVlabs' activation clamp (None: none).
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channels: dict[int, int] | None = None,
        lr_mlp: float = 0.01,
        z_dim: int | None = None,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        log_size, ch = checked_channels(size, channels)
        self.size, self.style_dim, self.n_mlp, self.log_size = size, style_dim, n_mlp, log_size
        self.z_dim = z_dim or style_dim
        self.channels = {r: int(ch[r]) for r in (2**i for i in range(2, log_size + 1))}
        self.style = mapping_network(self.z_dim, style_dim, n_mlp, lr_mlp)
        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, style_dim, conv_clamp=conv_clamp)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False, conv_clamp=conv_clamp)
        self.num_layers = (log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty, present in the reference too
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        in_ch = c4
        for i in range(3, log_size + 1):
            out_ch = self.channels[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, True, conv_clamp))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim, conv_clamp=conv_clamp))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, conv_clamp=conv_clamp))
            in_ch = out_ch
        self.n_latent = log_size * 2 - 2

    @property
    def widths(self) -> dict[int, int]:
        """Feature maps per resolution (what a run logs and records beside the parameters)."""
        return self.channels

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        return [tuple(getattr(self.noises, f"noise_{i}").shape) for i in range(self.num_layers)]

    def synthesis(
        self, wp: torch.Tensor, noise: list[torch.Tensor | None] | None = None
    ) -> torch.Tensor:
        """Image from w+ ([B, n_latent, style_dim]); ``noise[i] = None`` draws fresh noise."""
        if noise is None:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.conv1(self.input(len(wp)), wp[:, 0], noise[0])
        skip = self.to_rgb1(out, wp[:, 1])
        i = 1
        for conv_up, conv, n1, n2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs, strict=True
        ):
            out = conv_up(out, wp[:, i], n1)
            out = conv(out, wp[:, i + 1], n2)
            skip = to_rgb(out, wp[:, i + 2], skip)
            i += 2
        return skip


# -- reading checkpoints --------------------------------------------------------------------------
def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "Check the doc" not in ln]
    return lines[-1] if lines else type(e).__name__


def read_checkpoint(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """Load a StyleGAN2 checkpoint; return a dict with ``g_ema`` (rosinality's layout),
    ``latent_avg`` (or None), ``lr_mlp`` and ``conv_clamp`` (None when the file does not say)
    and ``format``.

    A ``.pkl`` is an NVlabs network pickle (StyleGAN2-ADA), read without running its code by
    ``invbench.generators.nvlabs``; anything else a stylegan2-pytorch ``torch.save`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"StyleGAN2 checkpoint {path} does not exist.")
    if path.suffix.lower() == ".pkl":
        from invbench.generators import nvlabs

        data = nvlabs.read_pickle(path)
        if nvlabs.is_stylegan3(data["G_ema"]):
            from invbench.generators.stylegan3 import StyleGAN3Net

            G = nvlabs.check_generator(data["G_ema"], str(path))
            avg = G.child("mapping").tensors().get("w_avg")
            out = {"net": StyleGAN3Net(G), "g_ema": None, "latent_avg": avg, "lr_mlp": None}
            return {**out, "conv_clamp": None, "format": "nvlabs-stylegan3"}
        w = nvlabs.stylegan2_weights(data, str(path))
        out = {"g_ema": w.g_ema, "latent_avg": w.latent_avg, "lr_mlp": w.lr_mlp}
        return {**out, "conv_clamp": w.conv_clamp, "format": "nvlabs-pickle"}
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if m is None:  # not a class it refused: the bytes are not a checkpoint at all
            raise DataError(f"{path}: not a readable torch checkpoint ({_last_line(e)}).") from None
        if not allow_pickle:
            raise UsageError(
                f"{path}: this checkpoint needs arbitrary code to unpickle (it refers to "
                f"{m.group(1)}), which invbench refuses by default. If you trust the file, pass "
                "--set generator.allow_pickle=true; better, re-save its g_ema state dict "
                "with torch.save({'g_ema': state_dict}, path)."
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch.load raises many types for foreign or truncated bytes
        raise DataError(f"{path}: not a readable torch checkpoint ({_last_line(e)}).") from None
    if isinstance(obj, dict) and "g_ema" in obj:
        out = {"g_ema": obj["g_ema"], "latent_avg": obj.get("latent_avg")}
    elif isinstance(obj, dict) and "style.1.weight" in obj:  # a bare g_ema state dict
        out = {"g_ema": obj, "latent_avg": None}
    else:
        keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise DataError(
            f"{path}: not a stylegan2-pytorch checkpoint: expected a dict with 'g_ema' (the "
            f"generator's state dict, keys like 'style.1.weight'), found {keys}."
        )
    if not isinstance(out["g_ema"], dict) or "input.input" not in out["g_ema"]:
        raise DataError(f"{path}: 'g_ema' lacks 'input.input'; not a StyleGAN2 generator.")
    return {**out, "lr_mlp": None, "conv_clamp": None, "format": "stylegan2-pytorch"}


def architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Size, style and z dims, mapping depth and per-resolution channels, from tensor shapes."""
    mlp = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    n_rgb = sum(1 for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise DataError("g_ema has no mapping layers style.1..N.weight; not a StyleGAN2 state.")
    log_size = n_rgb + 2
    channels = {4: int(state["input.input"].shape[1])}
    for i in range(3, log_size + 1):
        channels[2**i] = int(state[f"convs.{2 * (i - 3)}.conv.weight"].shape[1])
    return {
        "size": 2**log_size,
        "style_dim": int(state[f"style.{len(mlp)}.weight"].shape[0]),
        "z_dim": int(state["style.1.weight"].shape[1]),
        "n_mlp": len(mlp),
        "channels": channels,
    }


def _mean_w(net: StyleGAN2Net, n: int, seed: int) -> torch.Tensor:
    """Mean of mapping(z) over ``n`` seeded draws (stylegan2-pytorch's ``mean_latent``)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return net.style(torch.randn(n, net.z_dim, generator=g)).mean(0)


@GENERATORS.register("stylegan2")
class StyleGAN2(Generator):
    """Pretrained StyleGAN2 (rosinality stylegan2-pytorch ``g_ema``), 256² or 1024², RGB."""

    latent_spaces: ClassVar[tuple[str, ...]] = ("z", "w", "w+")
    #: Loaded, never trained: ``obtain()`` constructs it and skips training and the cache.
    pretrained: ClassVar[bool] = True

    @dataclass
    class Config:
        # A path, or a file name looked up in $INVBENCH_WEIGHTS and the other weight directories
        # (`invbench weights list`): a stylegan2-pytorch .pt or an NVlabs .pkl. The default is
        # rosinality's conversion of NVIDIA's FFHQ model.
        checkpoint: str = "stylegan2-ffhq-config-f.pt"
        # Opt in to unpickling .pt checkpoints that need code execution (.pkl never runs code).
        allow_pickle: bool = False
        truncation: float = bounded(1.0, ge=0, le=1)  # psi; 1 = none. Applies to drawn latents only
        truncation_mean: int = bounded(
            4096, ge=1, le=MAX_SAMPLES
        )  # draws for the mean w when the file has no latent_avg
        mean_seed: int = bounded(0, ge=0, le=MAX_SEED)
        noise_mode: Literal["const", "random", "zero"] = "const"
        # Mapping net's learning-rate multiplier: not stored in .pt files (NVlabs' .pkl has it).
        lr_mlp: float = bounded(0.01, gt=0, le=MAX_LR)
        resize_output: bool = True  # area-downsample outputs to the dataset's resolution

        def validate(self) -> None:
            if not 0.0 <= self.truncation <= 1.0:
                raise ValueError("truncation (psi) must lie in [0, 1]")
            if self.truncation_mean < 1 or self.lr_mlp <= 0:
                raise ValueError("truncation_mean must be >= 1 and lr_mlp > 0")

    def __init__(
        self,
        cfg: Config,
        channels: int = 3,
        resolution: int | None = None,
        weights: dict[str, Any] | None = None,
        source: Path | None = None,
    ) -> None:
        """Read ``cfg.checkpoint``; or, with ``weights`` (``read_checkpoint``'s dict, e.g. the
        decoder of a pSp checkpoint) and the ``source`` file they came from, use those."""
        if weights is None:
            from invbench.weights import find_stylegan2

            path = find_stylegan2(cfg.checkpoint)
            ckpt = read_checkpoint(path, cfg.allow_pickle)
        else:
            assert source is not None, "weights need the file they came from"
            path, ckpt = Path(source), weights
        net = ckpt.get("net")  # StyleGAN3: the network is built by the reader
        if net is None:
            arch = architecture(ckpt["g_ema"])
        else:
            arch = {"size": net.size, "style_dim": net.style_dim, "z_dim": net.z_dim}
        size = arch["size"]
        resolution = size if resolution is None else resolution
        if channels != 3:
            raise DataError(
                f"StyleGAN2 checkpoint {path.name} makes RGB images, but the dataset has "
                f"{channels} channel(s). Use an RGB dataset (ffhq, celeba, lsun, folder)."
            )
        if resolution != size and not (
            cfg.resize_output and resolution < size and size % resolution == 0
        ):
            raise DataError(
                f"StyleGAN2 checkpoint {path.name} makes {size}x{size} images but the dataset "
                f"is {resolution}x{resolution}. Set --set dataset.resolution={size} (or a "
                "power-of-two divisor of it, with generator.resize_output=true)."
            )
        super().__init__(cfg, channels, resolution)
        self.checkpoint_path = path
        self.checkpoint_format = ckpt.get("format", "stylegan2-pytorch")
        # NVlabs pickles store the mapping's lr multiplier; rosinality's files do not.
        self.lr_mlp = float(ckpt.get("lr_mlp") or cfg.lr_mlp)
        if net is not None:
            self.net = net
        else:
            self.net = StyleGAN2Net(
                size,
                arch["style_dim"],
                arch["n_mlp"],
                arch["channels"],
                lr_mlp=self.lr_mlp,
                z_dim=arch["z_dim"],
                conv_clamp=ckpt.get("conv_clamp"),
            )
            try:
                self.net.load_state_dict(ckpt["g_ema"], strict=True)
            except RuntimeError as e:
                raise DataError(f"{path}: g_ema does not match the StyleGAN2 layout: {e}") from None
        avg = ckpt.get("latent_avg")
        if isinstance(avg, torch.Tensor) and avg.numel() % arch["style_dim"] == 0:
            # [w] (rosinality, NVlabs' w_avg) or one row per style input (pSp, e4e: equal rows)
            w_avg = avg.reshape(-1, arch["style_dim"]).float().mean(0)
            self.w_avg_source = "checkpoint latent_avg"
        else:
            w_avg = _mean_w(self.net, cfg.truncation_mean, cfg.mean_seed)
            self.w_avg_source = f"mean of {cfg.truncation_mean} mapped z"
        self.register_buffer("w_avg", w_avg, persistent=False)
        self._sha256: str | None = None

    # -- latent spaces ---------------------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        return self.net.z_dim

    @property
    def w_dim(self) -> int:
        return self.net.style_dim

    @property
    def n_latent(self) -> int:
        return self.net.n_latent

    def latent_shape(self, space: str = "z") -> tuple[int, ...]:
        self.check_space(space)
        if space == "z":
            return (self.z_dim,)
        return (self.n_latent, self.w_dim) if space == "w+" else (self.w_dim,)

    def to_space(self, z: torch.Tensor, space: str) -> torch.Tensor:
        self.check_space(space)
        if space == "z":
            return z
        w = self.net.style(z)
        if self.cfg.truncation < 1:
            w = self.w_avg + self.cfg.truncation * (w - self.w_avg)
        return w.unsqueeze(1).repeat(1, self.n_latent, 1) if space == "w+" else w

    def mean_latent(self, space: str = "z", n: int = 4096) -> torch.Tensor:
        if space == "z":
            return torch.zeros(self.z_dim, device=self.device)
        self.check_space(space)
        w = self.w_avg.to(self.device)
        return w.unsqueeze(0).repeat(self.n_latent, 1) if space == "w+" else w

    # -- synthesis --------------------------------------------------------------------------------
    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None):
        """Fresh per-layer noise maps, e.g. to optimise them (the StyleGAN2 projector)."""
        return [
            torch.randn(batch, *s[1:], generator=generator).to(self.device)
            for s in self.net.noise_shapes()
        ]

    def synthesize(
        self,
        latent: torch.Tensor,
        space: str = "z",
        noise: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        self.check_space(space)
        self.check_latent(latent, space)
        if space == "z":
            wp = self.to_space(latent, "w+")
        elif space == "w":
            wp = latent.unsqueeze(1).expand(-1, self.n_latent, -1)
        else:
            wp = latent
        if noise is None and self.cfg.noise_mode == "random":
            noise = [None] * self.net.num_layers  # type: ignore[list-item]
        elif noise is None and self.cfg.noise_mode == "zero":
            noise = [torch.zeros(s, device=self.device) for s in self.net.noise_shapes()]
        img = self.net.synthesis(wp, noise)  # type: ignore[arg-type]
        if self.resolution != self.net.size:  # box filter down to the dataset's resolution
            img = F.avg_pool2d(img, self.net.size // self.resolution)
        return img

    def check_latent(self, latent: torch.Tensor, space: str) -> None:
        shape = self.latent_shape(space)
        if tuple(latent.shape[1:]) != shape:
            raise UsageError(
                f"generator 'stylegan2': a batch of '{space}' latents must have shape "
                f"[B, {', '.join(map(str, shape))}], got {list(latent.shape)}."
            )

    def make_discriminator(self) -> nn.Module:
        raise UsageError("the 'stylegan2' generator is pretrained; invbench does not train it.")

    # -- identity -----------------------------------------------------------------------------------
    def weights_sha256(self) -> str:
        if self._sha256 is None:
            from invbench.artifacts import sha256_file

            self._sha256 = sha256_file(self.checkpoint_path)
        return self._sha256

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this generator for cache keys: the weights' content, not their path."""
        from invbench.config import as_dict

        cfg = {k: v for k, v in as_dict(self.cfg).items() if k not in ("checkpoint",)}
        return {"generator": self.name, "sha256": self.weights_sha256(), "config": cfg}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "checkpoint": str(self.checkpoint_path),
            "checkpoint_format": self.checkpoint_format,
            "w_dim": self.w_dim,
            "native_resolution": self.net.size,
            "n_latent": self.n_latent,
            "w_avg": self.w_avg_source,
        }
