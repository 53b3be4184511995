"""Deterministic random weights for a state-dict layout, shared by the published-encoder tests
and the script that made their fixtures with the authors' code (see test_published_encoders).

Every tensor is drawn in sorted key order from one seeded generator, so the same key -> shape
table gives the same weights in any process: conv / linear weights N(0, 1/fan_in), 1-D weights
1 + 0.1 N, biases and running means 0.1 N, running variances 1 + 0.1 |N|; StyleGAN2's FIR
kernels keep their fixed [1, 3, 3, 1] values (they are buffers, not weights).
"""

from __future__ import annotations

import math

import torch


def seeded_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(k1, k1) / 64 * 4  # rosinality's blur / upsample buffers (gain 4)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = tuple(int(s) for s in shapes[key])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
            continue
        if key.endswith(".kernel"):
            out[key] = kernel.clone()
            continue
        r = torch.randn(shape, generator=g)
        if key.endswith("running_var"):
            out[key] = 1 + 0.1 * r.abs()
        elif key.endswith("running_mean") or key.endswith("bias"):
            out[key] = 0.1 * r
        elif len(shape) >= 2:
            out[key] = r / math.sqrt(math.prod(shape[1:]))
        else:
            out[key] = 1 + 0.1 * r
    return out
