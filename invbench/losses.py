"""Loss terms shared by the methods that train networks (InvGAN, LIA, encoders).

Each is a small pure function of tensors, so a method reads as its paper's objective and the
terms can be tested on tiny tensors against closed forms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

#: Multipliers of the median squared distance used as RBF bandwidths when none are given:
#: a mixture of scales keeps the MMD's gradient alive both for far and for near sets.
MEDIAN_SCALES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)


def rbf_bandwidths(x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Bandwidths (2 sigma^2) from the median heuristic on the pooled, detached sample."""
    pooled = torch.cat([x, y]).detach().flatten(1)
    d2 = torch.cdist(pooled, pooled).pow(2)
    off = d2[~torch.eye(len(pooled), dtype=torch.bool, device=d2.device)]
    med = float(off.median()) if off.numel() else 1.0
    med = med if med > 1e-12 else 1.0
    return [s * med for s in MEDIAN_SCALES]


def mmd_rbf(
    x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None = None
) -> torch.Tensor:
    """Squared maximum mean discrepancy between samples ``x`` [n, d] and ``y`` [m, d].

    Gretton et al. (2012), eq. 5 (the biased V-statistic: exactly 0 for identical sets and never
    negative), with the kernel k(a, b) = sum_s exp(-||a - b||^2 / h_s) over ``bandwidths`` h_s
    (= 2 sigma_s^2). ``None`` picks them by the median heuristic (``rbf_bandwidths``).
    """
    x, y = x.flatten(1), y.flatten(1)
    hs = list(bandwidths) if bandwidths is not None else rbf_bandwidths(x, y)
    if not hs or any(h <= 0 for h in hs):
        raise ValueError(f"RBF bandwidths must be positive, got {hs}")

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)
        return sum(torch.exp(-d2 / h) for h in hs)  # type: ignore[return-value]

    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def gan_d_loss(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator side of the GAN game (Goodfellow et al. 2014; InvGAN eq. 1), as a loss."""
    return F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()


def gan_g_loss(logit_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014, §3)."""
    return F.softplus(-logit_fake).mean()


def r1_penalty(logit_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, eq. 9 without gamma/2): E ||grad_x D(x)||^2 on real data.

    ``real`` must have had ``requires_grad_(True)`` before ``logit_real`` was computed.
    """
    (grad,) = torch.autograd.grad(logit_real.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017, eq. 3): E (||grad D(x_hat)||_2 - 1)^2 on random
    interpolates x_hat = eps x + (1 - eps) x~, eps ~ U[0, 1] per sample."""
    shape = (len(real),) + (1,) * (real.ndim - 1)
    eps = torch.rand(shape, generator=generator).to(real.device)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
