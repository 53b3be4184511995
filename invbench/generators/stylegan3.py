"""StyleGAN3 synthesis (Karras et al. 2021, "Alias-Free Generative Adversarial Networks") for
NVlabs' network pickles, built from the data ``invbench.generators.nvlabs`` reads.

Written anew from the paper and NVlabs' ``training/networks_stylegan3.py`` (its layer names and
the quantities each layer stores), in plain torch: no custom op. Everything a layer's design
produces — the Kaiser / jinc low-pass filters, sampling rates, sizes, paddings, the input's
Fourier frequencies and phases, the tracked input magnitude — is read from the pickle, so the
network here only executes:

- ``SynthesisInput`` (§3.2 and Appendix F): Fourier features sin(2 pi (<f, x> + phi)) on a
  grid of the layer's size at its sampling rate, rotated and translated by an affine map of w,
  amplitudes damped outside the band, then a learned channel mix (weight / sqrt(C)).
- each ``SynthesisLayer``: modulated 3x3 (R: 1x1) convolution with demodulation (StyleGAN2's
  eqs. 1-3 after NVlabs' pre-normalisation), the input scaled by 1/sqrt(magnitude EMA); then
  the filtered nonlinearity of §3.2 (``filtered_lrelu``): bias, upsample by ``up`` with the
  up-filter, leaky ReLU (slope 0.2, gain sqrt 2) and clamp, downsample by ``down`` with the
  down-filter (separable 1-D filters, or 2-D radially symmetric ones in StyleGAN3-R);
  the last layer is ToRGB (1x1, no demodulation, linear).
- the output times ``output_scale`` (0.25). There are no noise inputs.

The mapping network is StyleGAN2's (normalised z, equalised-lr fully connected layers with
leaky ReLU), so it is built from ``invbench.generators.stylegan2``'s layers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from invbench.errors import DataError
from invbench.generators.nvlabs import Persistent
from invbench.generators.stylegan2 import EqualLinear, PixelNorm, upfirdn2d


def _linear(fc: Persistent, act: bool = False) -> EqualLinear:
    """An NVlabs FullyConnectedLayer as an EqualLinear: the same stored weight / lr_mul layout."""
    w, b = fc.tensor("weight"), fc.tensor("bias")
    lin = EqualLinear(int(w.shape[1]), int(w.shape[0]), lr_mul=float(fc.attr("bias_gain")), act=act)
    lin.weight.data.copy_(w)
    lin.bias.data.copy_(b)
    return lin


def _fir(
    x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1, pad=(0, 0), gain=1.0
) -> torch.Tensor:
    """NVlabs' ``upfirdn2d`` with a 1-D (separable: two 1-D passes, as theirs), 2-D or no
    filter: zero insertion, padding, true convolution times ``gain``, decimation."""
    if f is None or f.ndim == 2:
        k = torch.ones(1, 1) if f is None else f
        return upfirdn2d(x, k.to(x) * gain, up=up, down=down, pad=pad)
    x = upfirdn2d(x, torch.ones(1, 1).to(x), up=up, pad=pad)  # zero insertion and padding
    c, taps = x.shape[1], f.flip(0).to(x) * gain**0.5
    x = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


class Input(nn.Module):
    """``SynthesisInput``: transformed Fourier features and a channel mix."""

    def __init__(self, p: Persistent) -> None:
        super().__init__()
        self.affine = _linear(p.child("affine"))
        self.weight = nn.Parameter(p.tensor("weight").clone())
        for name in ("transform", "freqs", "phases"):
            self.register_buffer(name, p.tensor(name).clone())
        self.size = [int(s) for s in np.broadcast_to(np.asarray(p.attr("size")), [2])]
        self.sampling_rate = float(p.attr("sampling_rate"))
        self.bandwidth = float(p.attr("bandwidth"))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        t = self.affine(w)  # (r_c, r_s, t_x, t_y), the rotation normalised to unit length
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        b = len(w)
        m_r = torch.eye(3, device=w.device).repeat(b, 1, 1)  # inverse rotation of the image
        m_r[:, 0, 0], m_r[:, 0, 1], m_r[:, 1, 0], m_r[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        m_t = torch.eye(3, device=w.device).repeat(b, 1, 1)  # inverse translation
        m_t[:, 0, 2], m_t[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = m_r @ m_t @ self.transform.unsqueeze(0)
        freqs = self.freqs.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (freqs @ transforms[:, :2, 2:]).squeeze(2)
        freqs = freqs @ transforms[:, :2, :2]
        # frequencies moved out of band by the transform fade out (NVlabs' amplitude ramp)
        band = self.sampling_rate / 2 - self.bandwidth
        amps = (1 - (freqs.norm(dim=2) - self.bandwidth) / band).clamp(0, 1)
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * self.size[0] / self.sampling_rate
        theta[1, 1] = 0.5 * self.size[1] / self.sampling_rate
        grid = F.affine_grid(theta[None], [1, 1, self.size[1], self.size[0]], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = torch.sin((x + phases[:, None, None]) * (2 * math.pi)) * amps[:, None, None]
        x = x @ (self.weight / math.sqrt(self.weight.shape[0])).t()
        return x.permute(0, 3, 1, 2)


class Layer(nn.Module):
    """``SynthesisLayer``: modulated conv, then the filtered leaky ReLU (or ToRGB)."""

    def __init__(self, p: Persistent) -> None:
        super().__init__()
        self.affine = _linear(p.child("affine"))
        self.weight = nn.Parameter(p.tensor("weight").clone())
        self.bias = nn.Parameter(p.tensor("bias").clone())
        self.register_buffer("magnitude_ema", p.tensor("magnitude_ema").clone())
        self.is_torgb = bool(p.attr("is_torgb"))
        self.k = int(p.attr("conv_kernel"))
        self.up, self.down = int(p.attr("up_factor")), int(p.attr("down_factor"))
        pad = [int(v) for v in p.attr("padding")]
        if pad[:2] != pad[2:]:
            raise DataError(f"a StyleGAN3 layer with non-square padding {pad}; not supported.")
        self.pad = (pad[0], pad[1])
        clamp = p.attr("conv_clamp")
        self.clamp = None if clamp is None else float(clamp)
        tensors = p.tensors()
        self.fu, self.fd = tensors.get("up_filter"), tensors.get("down_filter")

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)
        weight = self.weight
        if self.is_torgb:
            s = s / math.sqrt(weight.shape[1] * self.k**2)
        else:  # NVlabs' pre-normalisation; demodulation below makes the result scale-free
            weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
            s = s * s.square().mean().rsqrt()
        wt = weight.unsqueeze(0) * s[:, None, :, None, None]  # modulation (StyleGAN2 eq. 1)
        if not self.is_torgb:  # demodulation (eq. 3)
            wt = wt * (wt.square().sum([2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
        wt = wt * self.magnitude_ema.rsqrt()  # input gain: 1 / RMS of the layer's input
        b, c = x.shape[:2]
        y = F.conv2d(
            x.reshape(1, b * c, *x.shape[2:]),
            wt.reshape(-1, c, self.k, self.k),
            padding=self.k - 1,
            groups=b,
        )
        x = y.reshape(b, -1, *y.shape[2:])
        # filtered_lrelu (§3.2): bias, upsample + low-pass, leaky ReLU and clamp, low-pass + down
        x = x + self.bias.view(1, -1, 1, 1)
        x = _fir(x, self.fu, up=self.up, pad=self.pad, gain=self.up**2)  # gain up^2, as NVlabs'
        if not self.is_torgb:
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        if self.clamp is not None:
            x = x.clamp(-self.clamp, self.clamp)
        return _fir(x, self.fd, down=self.down)


class StyleGAN3Net(nn.Module):
    """Mapping and synthesis of an NVlabs StyleGAN3 ``G_ema``, with StyleGAN2Net's interface
    (``style``, ``synthesis(wp, noise)``, ``size``, ``z_dim``, ``style_dim``, ``n_latent``)."""

    def __init__(self, G: Persistent) -> None:
        super().__init__()
        mapping, syn = G.child("mapping"), G.child("synthesis")
        n_mlp = int(mapping.attr("num_layers"))
        self.style = nn.Sequential(
            PixelNorm(), *[_linear(mapping.child(f"fc{i}"), act=True) for i in range(n_mlp)]
        )
        self.input = Input(syn.child("input"))
        names = list(syn.attr("layer_names"))
        self.layers = nn.ModuleList(Layer(syn.child(n)) for n in names)
        self.output_scale = float(syn.attr("output_scale"))
        self.size = int(syn.attr("img_resolution"))
        self.z_dim, self.style_dim = int(G.attr("z_dim")), int(G.attr("w_dim"))
        self.n_latent = int(syn.attr("num_ws"))
        self.n_mlp, self.num_layers = n_mlp, 0  # no noise inputs

    def noise_shapes(self) -> list[tuple[int, ...]]:
        return []

    def synthesis(self, wp: torch.Tensor, noise: Any = None) -> torch.Tensor:
        x = self.input(wp[:, 0])
        for i, layer in enumerate(self.layers):
            x = layer(x, wp[:, i + 1])
        return x * self.output_scale
