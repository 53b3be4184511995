"""NICE: a volume-preserving invertible network of additive couplings (Dinh et al., 2015).

LIA (Zhu et al., §4.1) puts one between the disentangled feature space y and the prior space z:
``z = phi(y)`` and ``y = phi^-1(z)``. Each layer splits its input into a top and a bottom part
and shifts the bottom by a function of the top,

    eq. 11 (forward):  z_t = x_t,  z_b = x_b + tau(x_t)
    eq. 12 (inverse):  x_t = z_t,  x_b = z_b - tau(z_t)

so the inverse is exact whatever tau is; tau is a small MLP with leaky ReLU (§4.1, as in NICE).
Between layers the coordinates are reversed, so every coordinate is shifted by every other one
after two layers (the permutation of genforce/lia's ``reverse_features``).
"""

from __future__ import annotations

import torch
from torch import nn


def _tau(d_in: int, d_out: int, hidden: int, layers: int, slope: float) -> nn.Sequential:
    """The coupling function: ``layers`` hidden leaky-ReLU layers and a linear output."""
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.LeakyReLU(slope)]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class AdditiveCoupling(nn.Module):
    """One NICE layer (eqs. 11-12), followed by a reversal of the coordinates."""

    def __init__(self, dim: int, hidden: int, layers: int = 2, slope: float = 0.2) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"an additive coupling needs dim >= 2, got {dim}")
        self.d_top = dim // 2
        self.tau = _tau(self.d_top, dim - self.d_top, hidden, layers, slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = x[:, : self.d_top], x[:, self.d_top :]
        out = torch.cat([top, bottom + self.tau(top)], dim=1)  # eq. 11
        return out.flip(1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        z = z.flip(1)
        top, bottom = z[:, : self.d_top], z[:, self.d_top :]
        return torch.cat([top, bottom - self.tau(top)], dim=1)  # eq. 12


class NICE(nn.Module):
    """``forward`` is phi (y -> z), ``inverse`` is phi^-1 (z -> y); exact up to round-off.

    With ``identity_init`` the last layer of every tau starts at zero, so the network starts as
    the identity (up to the reversals) and a GAN trained through it starts like a plain one.
    """

    def __init__(
        self,
        dim: int,
        depth: int = 8,
        hidden: int = 64,
        tau_layers: int = 2,
        slope: float = 0.2,
        identity_init: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"NICE depth must be >= 1, got {depth}")
        self.dim = dim
        self.layers = nn.ModuleList(
            AdditiveCoupling(dim, hidden, tau_layers, slope) for _ in range(depth)
        )
        if identity_init:
            for layer in self.layers:
                last = layer.tau[-1]
                assert isinstance(last, nn.Linear)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = layer(y)
        return y

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z
