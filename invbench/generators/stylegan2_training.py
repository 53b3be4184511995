"""Training StyleGAN2 (Karras et al. 2020, config F): the discriminator and the regularisers.

``invbench.generators.stylegan2`` holds the generator (mapping + synthesis, rosinality's
``g_ema`` layout, equalised learning rate in every layer: weights stored at N(0, 1) and scaled
by 1/sqrt(fan_in) at run time, ProGAN §4.1). This module adds what training it needs, for the
methods that train a StyleGAN2-class network of their own (LIA's decoder, InvGAN):

- ``StyleGAN2Discriminator``: the residual discriminator (StyleGAN2 Fig. 7b, Appendix B): a 1x1
  fromRGB at full resolution, one residual block per resolution down to 4x4 (two 3x3 convs,
  the second downsampling after a [1,3,3,1] blur; a 1x1 skip, sum scaled by 1/sqrt(2)), the
  minibatch standard deviation layer (ProGAN §3, group 4, one feature), a 3x3 conv, and two
  dense layers. Module names follow rosinality's ``Discriminator``, so the ``d`` entry of a
  stylegan2-pytorch checkpoint loads with ``strict=True``. ``features`` is the penultimate
  vector and ``logit`` the last layer (InvGAN hangs its latent head on the same features).
- Lazy regularisation (App. B, "Lazy regularization"): R1 every ``r1_every`` = 16 D steps and
  the path-length penalty every ``pl_every`` = 4 G steps, each weighted by its interval; the
  optimisers' lr and betas scaled by c = k / (k + 1) (``lazy_adam``).
- Path-length regularisation (§3.2, eq. 4): E_w,y (||J_w^T y||_2 - a)^2 with y ~ N(0, I) /
  sqrt(H W), a the running mean of the lengths (decay 0.01), on a batch shrunk by 2, weight 2.
- Style mixing (StyleGAN §3.1, probability 0.9), per-pixel noise drawn from the trainer's RNG,
  and the exponential moving average of G (half-life 10k images, ``ema_beta``).

Written anew from the papers with rosinality's names; no code of either repository is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from invbench.generators.stylegan2 import (
    Blur,
    EqualLinear,
    StyleGAN2Net,
    _BiasAct,
    checked_channels,
    rosinality_channels,
)

BLUR = (1, 3, 3, 1)


@dataclass
class StyleGAN2Recipe:
    """StyleGAN2 config F's training hyper-parameters (Karras et al. 2020, App. B; the values
    of NVlabs' ``paper1024`` / rosinality's ``train.py`` defaults). A method copies the ones
    it exposes into its own ``Config`` fields; this is where their paper values are stated."""

    lr: float = 0.002  # Adam, both networks
    beta1: float = 0.0
    beta2: float = 0.99
    r1_gamma: float = 10.0  # FFHQ 1024; R1 weight gamma/2 (Mescheder et al. 2018, eq. 9)
    r1_every: int = 16  # lazy R1: one step in 16 (App. B)
    pl_weight: float = 2.0  # path-length weight (§3.2)
    pl_every: int = 4  # lazy path length: one step in 4
    pl_decay: float = 0.01  # running mean of the path lengths
    pl_batch_shrink: int = 2  # the penalty's batch is batch // 2
    mixing_prob: float = 0.9  # style mixing (StyleGAN §3.1)
    ema_kimg: float = 10.0  # G's moving average: half-life in thousands of images
    batch_size: int = 32  # 8 GPUs x 4


def config_f_channels(size: int, channel_max: int = 512) -> dict[int, int]:
    """Feature maps per resolution of config F (App. B: 512 up to 32x32, then halving with a
    doubled base, Fig. 7), capped at ``channel_max`` (512: the paper; smaller for tests)."""
    return {r: min(c, channel_max) for r, c in rosinality_channels(size).items()}


# -- the discriminator ------------------------------------------------------------------------------
class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate: weight ~ N(0, 1), scaled by 1/sqrt(fan_in)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias=True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.scale = 1 / math.sqrt(in_ch * kernel**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.scale
        return F.conv2d(x, w, self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    """[blur, stride-2] conv, then bias + leaky ReLU * sqrt(2) (rosinality's ``ConvLayer``)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            # Blur before the strided conv so it samples an anti-aliased signal (App. B).
            p = (len(BLUR) - 2) + (kernel - 1)
            layers.append(Blur(list(BLUR), pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel, stride, padding, bias and not activate))
        if activate:
            layers.append(_BiasAct(out_ch))  # every activated layer here has a bias
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs (the second halves the resolution) + a 1x1 skip; sum / sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """ProGAN §3's layer: the std of each feature over groups of ``group`` images, averaged to
    one number per group and appended as a constant feature map. The group is the largest
    divisor of the batch not above ``group`` (NVlabs asserts divisibility instead)."""
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    s = x.view(g, -1, 1, c, h, w)
    s = torch.sqrt(s.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    return torch.cat([x, s.repeat(g, 1, h, w)], 1)


class StyleGAN2Discriminator(nn.Module):
    """The residual discriminator of config F at ``size`` (channels as the generator's)."""

    def __init__(
        self,
        size: int,
        channels: dict[int, int] | None = None,
        in_channels: int = 3,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        log_size, ch = checked_channels(size, channels)
        convs: list[nn.Module] = [ConvLayer(in_channels, ch[size], 1)]  # fromRGB
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(in_ch, ch[2 ** (i - 1)]))
            in_ch = ch[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self.mbstd_group = mbstd_group
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 16, ch[4], act=True), EqualLinear(ch[4], 1)
        )
        self.size, self.feature_dim = size, ch[4]
        self.widths = {2**i: ch[2**i] for i in range(log_size, 1, -1)}

    @property
    def logit(self) -> nn.Module:
        """The last dense layer: features -> real/fake logit."""
        return self.final_linear[1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate vector [B, channels at 4x4] (before the logit layer)."""
        out = self.final_conv(minibatch_stddev(self.convs(x), self.mbstd_group))
        return self.final_linear[0](out.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The real/fake logit, shape [B]."""
        return self.logit(self.features(x)).squeeze(1)


# -- the generator while it trains -------------------------------------------------------------------
class Synthesis(nn.Module):
    """The synthesis network of a config-F StyleGAN2 (no mapping network: the method brings its
    own, LIA's NICE flow or InvGAN's 8-layer mapping) as a function of one code per image
    [B, dim] (broadcast to every layer) or per-layer codes [B, n_latent, dim].

    Per-pixel noise is random while training (drawn from torch's generator, which the trainers'
    checkpoints carry) and the network's fixed noise maps in eval mode, so a code decodes to one
    image. ``net`` keeps rosinality's names (``net.convs.0.conv.weight``, ...), so the synthesis
    weights of a pretrained StyleGAN2 load into it (``load_synthesis``)."""

    def __init__(self, size: int, dim: int = 512, channels: dict[int, int] | None = None) -> None:
        super().__init__()
        self.net = StyleGAN2Net(size, dim, n_mlp=0, channels=channels)
        self.n_latent, self.dim = self.net.n_latent, dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        ws = codes[:, None, :].expand(-1, self.n_latent, -1) if codes.ndim == 2 else codes
        noise = [None] * self.net.num_layers if self.training else None
        return self.net.synthesis(ws, noise)  # type: ignore[arg-type]

    def load_synthesis(self, g_ema: dict[str, torch.Tensor]) -> list[str]:
        """The synthesis weights of a rosinality ``g_ema`` state dict (the mapping ``style.*``
        left out); shapes must match (same size, widths and style dimension). Returns the keys
        loaded."""
        take = {k: v for k, v in g_ema.items() if not k.startswith("style.")}
        self.net.load_state_dict(take, strict=True)
        return sorted(take)


def random_noise(
    net: StyleGAN2Net, batch: int, rng: torch.Generator, device: torch.device
) -> list[torch.Tensor]:
    """Fresh per-pixel noise for every layer, drawn from ``rng`` (resumable training)."""
    return [torch.randn(batch, *s[1:], generator=rng).to(device) for s in net.noise_shapes()]


def mix_styles(
    ws: torch.Tensor, ws2: torch.Tensor, prob: float, rng: torch.Generator
) -> torch.Tensor:
    """Style mixing regularisation (StyleGAN §3.1): with probability ``prob`` an image takes
    the codes of a second latent from a random crossover layer on. [B, n_latent, dim]."""
    b, n = ws.shape[:2]
    mixed = torch.rand(b, generator=rng) < prob
    cut = torch.randint(1, n, (b,), generator=rng)
    take2 = (torch.arange(n)[None, :] >= cut[:, None]) & mixed[:, None]
    return torch.where(take2.to(ws.device)[:, :, None], ws2, ws)


def path_lengths(images: torch.Tensor, ws: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """||J_w^T y||_2 per image (§3.2, eq. 4): y ~ N(0, I) / sqrt(H W), J the Jacobian of the
    images with respect to the per-layer codes ``ws`` (which must require grad); the norm is
    over the code dimension, averaged over the layers, as in the paper's implementation."""
    y = torch.randn(images.shape, generator=rng).to(images) / math.sqrt(
        images.shape[2] * images.shape[3]
    )
    (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
    return grad.pow(2).sum(2).mean(1).sqrt()


class PathLengthPenalty(nn.Module):
    """(||J^T y|| - a)^2 with ``a`` the running mean of the lengths (a buffer, checkpointed)."""

    def __init__(self, decay: float = 0.01) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.zeros(()))

    def forward(self, images: torch.Tensor, ws: torch.Tensor, rng: torch.Generator):
        lengths = path_lengths(images, ws, rng)
        with torch.no_grad():
            self.mean.lerp_(lengths.mean(), self.decay)
        return (lengths - self.mean).pow(2).mean()


def lazy_adam(params, lr: float, betas: tuple[float, float], every: int) -> torch.optim.Adam:
    """Adam for a network regularised every ``every`` steps (App. B): c = k / (k + 1) scales
    the learning rate and raises the betas to c, so the optimiser sees the same effective
    schedule as with a regulariser applied at every step."""
    c = every / (every + 1) if every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * c, betas=(betas[0] ** c, betas[1] ** c))


def ema_beta(batch: int, half_life_kimg: float) -> float:
    """The decay per step of G's moving average whose half-life is ``half_life_kimg`` x 1000
    images (StyleGAN2: 10k images; ProGAN §A.1)."""
    return 0.5 ** (batch / max(half_life_kimg * 1000.0, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, live: nn.Module, beta: float) -> None:
    """theta_ema <- beta theta_ema + (1 - beta) theta; buffers (noise maps) copied."""
    for pe, p in zip(ema.parameters(), live.parameters(), strict=True):
        pe.lerp_(p, 1.0 - beta)
    for be, b in zip(ema.buffers(), live.buffers(), strict=True):
        be.copy_(b)


class GANStep:
    """One alternating step of the StyleGAN2 game (non-saturating logistic loss) for a
    generator whose per-layer codes come from ``codes(z)`` (a mapping network, LIA's inverse
    flow) and are drawn to images by ``synthesis`` (``Synthesis``), against ``disc``.

    D: softplus(D(G(z))) + softplus(-D(x)), plus every ``r1_every``-th step the lazy R1 term
    (gamma / 2) * r1_every * ||grad_x D(x)||^2. G: softplus(-D(G(z))) with style mixing, plus
    every ``pl_every``-th step the lazy path-length term pl_weight * pl_every * (||J^T y|| - a)^2
    on a batch shrunk by ``pl_batch_shrink`` (App. B). ``ema`` (a copy of the generator's
    modules) follows the trained ones with ``ema_beta``. Networks run through ``run`` (the
    execution layer's mixed precision, when given); the losses stay float32.
    """

    def __init__(
        self,
        codes: nn.Module,
        synthesis: Synthesis,
        disc: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        recipe: StyleGAN2Recipe,
        z_dim: int,
        pl: PathLengthPenalty,
        run=None,
    ) -> None:
        self.codes, self.synthesis, self.disc = codes, synthesis, disc
        self.opt_g, self.opt_d, self.r, self.z_dim, self.pl = opt_g, opt_d, recipe, z_dim, pl
        self.run = run or (lambda fn: fn)

    def _ws(self, n: int, rng: torch.Generator, device: torch.device) -> torch.Tensor:
        k = self.synthesis.n_latent
        z1 = torch.randn(n, self.z_dim, generator=rng).to(device)
        ws = self.codes(z1)[:, None].expand(-1, k, -1)
        if self.r.mixing_prob > 0:
            z2 = torch.randn(n, self.z_dim, generator=rng).to(device)
            ws = mix_styles(ws, self.codes(z2)[:, None].expand(-1, k, -1), self.r.mixing_prob, rng)
        return ws

    def __call__(self, real: torch.Tensor, step: int, rng: torch.Generator) -> dict:
        from invbench.losses import gan_d_loss, gan_g_loss, r1_penalty

        r, n, dev = self.r, len(real), real.device
        synth, disc = self.run(self.synthesis), self.run(self.disc)
        out: dict[str, torch.Tensor] = {}
        # -- D ---------------------------------------------------------------------------------
        with torch.no_grad():
            fake = synth(self._ws(n, rng, dev))
        lazy_r1 = r.r1_gamma > 0 and step % r.r1_every == 0
        real = real.detach().requires_grad_(lazy_r1)
        logit_real = disc(real)
        loss_d = gan_d_loss(logit_real, disc(fake))
        out["loss_d"] = loss_d.detach()
        if lazy_r1:  # gamma/2 ||grad||^2, applied every r1_every steps with weight r1_every
            r1 = r1_penalty(logit_real, real)
            loss_d = loss_d + r.r1_gamma / 2 * r.r1_every * r1
            out["r1"] = r1.detach()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        # -- G ---------------------------------------------------------------------------------
        self.disc.requires_grad_(False)
        loss_g = gan_g_loss(disc(synth(self._ws(n, rng, dev))))
        out["loss_g"] = loss_g.detach()
        if r.pl_weight > 0 and step % r.pl_every == 0:
            ws = self._ws(max(1, n // r.pl_batch_shrink), rng, dev)
            if not ws.requires_grad:  # a mapping without parameters: lengths w.r.t. the codes
                ws = ws.detach().requires_grad_(True)
            pen = self.pl(synth(ws), ws, rng)
            loss_g = loss_g + r.pl_weight * r.pl_every * pen
            out["pl"] = pen.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.disc.requires_grad_(True)
        return out


def n_params(module: nn.Module) -> int:
    """Trainable parameter count (what papers report)."""
    return sum(p.numel() for p in module.parameters())
