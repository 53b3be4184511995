"""NICE: a volume-preserving invertible network of additive couplings (Dinh et al., 2015).

LIA (Zhu et al., §4.1) puts one between the disentangled feature space y and the prior space z:
``z = phi(y)`` and ``y = phi^-1(z)``. Each layer splits its input into a top and a bottom part
and shifts the bottom by a function of the top,

    eq. 11 (forward):  z_t = x_t,  z_b = x_b + tau(x_t)
    eq. 12 (inverse):  x_t = z_t,  x_b = z_b - tau(z_t)

so the inverse is exact whatever tau is; tau is a small MLP with leaky ReLU (§4.1, as in NICE).
Between layers the coordinates are reversed, so every coordinate is shifted by every other one
after two layers (the permutation of genforce/lia's ``reverse_features``).

Initialisation and learning rate follow the reference implementation (genforce/lia, the
``G_mapping_ND`` flow): every dense layer of tau has He-scale weights under StyleGAN's
equalised learning rate with a multiplier ``lr_mul`` (0.01) -- weights stored at N(0, 1/lr_mul^2)
and scaled by lr_mul * sqrt(2 / fan_in) at run time, biases stored at 0 and scaled by lr_mul --
and a leaky ReLU after each of them, the last one included. The flow therefore starts as a
random, strongly non-linear bijection (not the identity) and moves slowly: with Adam a stored
weight moves by about lr per step, so the weight in use moves by about lr * lr_mul of its own
scale. A zero-initialised last layer trained at lr * lr_mul (what invbench did before) leaves
phi within ~1e-3 of the identity after a digits-scale stage 1: y and z are then one space.
"""

from __future__ import annotations

import torch
from torch import nn

from invbench.generators.stylegan_lite import EqualLinear

LR_MUL = 0.01  # genforce/lia: the coupling functions' dense layers use mapping_lrmul = 0.01


def _tau(d_in: int, d_out: int, hidden: int, layers: int, lr_mul: float) -> nn.Sequential:
    """The coupling function: ``layers`` equalised-lr dense layers, each with a leaky ReLU."""
    dims = [d_in] + [hidden] * (layers - 1) + [d_out]
    return nn.Sequential(
        *(EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, act=True) for i in range(layers))
    )


class AdditiveCoupling(nn.Module):
    """One NICE layer (eqs. 11-12), followed by a reversal of the coordinates."""

    def __init__(self, dim: int, hidden: int, layers: int = 2, lr_mul: float = LR_MUL) -> None:
        super().__init__()
        if dim < 2 or layers < 1:
            raise ValueError(f"an additive coupling needs dim >= 2 and layers >= 1, got {dim}")
        self.d_top = dim // 2
        self.tau = _tau(self.d_top, dim - self.d_top, hidden, layers, lr_mul)

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

    Its parameters carry their learning-rate multiplier in the parametrisation (equalised
    learning rate), so an optimiser trains them at the decoder's own learning rate.
    """

    def __init__(
        self,
        dim: int,
        depth: int = 8,
        hidden: int = 64,
        tau_layers: int = 2,
        lr_mul: float = LR_MUL,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"NICE depth must be >= 1, got {depth}")
        self.dim = dim
        self.layers = nn.ModuleList(
            AdditiveCoupling(dim, hidden, tau_layers, lr_mul) for _ in range(depth)
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = layer(y)
        return y

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z
