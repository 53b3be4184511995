"""The plain MLP mapping network z -> w that InvGAN puts in front of its DCGAN decoder (its 2-layer
M, §4 of its paper). The zoo's ``stylegan-lite`` has StyleGAN's own mapping (equalised learning
rate), which lia-mlp uses too (LIA Table 3's "StyleGAN with its original multi-layer perceptron").

He-initialised with zero biases, so that w = M(z) starts near the prior's scale (variance ~0.7
per coordinate for z ~ N(0, I) after 2 layers, ~0.3 after 8), as StyleGAN's equalised learning
rate keeps its mapping's output. PyTorch's default Linear init shrinks the variance by ~3x per layer
(0.05 after 2 layers, 7e-7 after 8): the decoder then starts from nearly one input, and InvGAN
collapsed to a single image on 2 of 3 seeds (notes/session-3.md).
"""

from __future__ import annotations

import torch
from torch import nn

SLOPE = 0.2  # leaky ReLU slope, as StyleGAN's mapping


class MappingMLP(nn.Module):
    """``layers`` Linear layers (leaky ReLU between them): ``in_dim`` -> ``out_dim``, hidden
    width ``hidden`` (default ``out_dim``)."""

    def __init__(self, in_dim: int, out_dim: int, layers: int, hidden: int | None = None) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        d, width = in_dim, hidden or out_dim
        for i in range(layers):
            last = i == layers - 1
            lin = nn.Linear(d, out_dim if last else width)
            gain = "linear" if last else "leaky_relu"
            nn.init.kaiming_normal_(lin.weight, a=SLOPE, nonlinearity=gain)
            nn.init.zeros_(lin.bias)
            mods.append(lin)
            if not last:
                mods.append(nn.LeakyReLU(SLOPE))
            d = lin.out_features
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
