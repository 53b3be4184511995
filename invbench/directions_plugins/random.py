"""``random``: random orthonormal directions, the baseline every found direction must beat.

QR of a Gaussian matrix gives directions uniform on the sphere (Haar measure), seeded so the
baseline is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.config import MAX_SEED, MAX_WIDTH, bounded
from invbench.directions import Directions, LatentModel
from invbench.errors import UsageError
from invbench.registry import DIRECTIONS


@DIRECTIONS.register("random")
class RandomDirections(Directions):
    @dataclass
    class Config:
        num: int = bounded(8, ge=1, le=MAX_WIDTH)
        seed: int = bounded(0, ge=0, le=MAX_SEED)

        def validate(self) -> None:
            if self.num < 1:
                raise ValueError("num must be >= 1")

    def compute(self, model: LatentModel) -> torch.Tensor:
        probe = model.sample(1, torch.Generator().manual_seed(0))
        dim = probe.shape[-1]
        if self.cfg.num > dim:
            raise UsageError(f"num={self.cfg.num} exceeds the latent dimension {dim}; lower num.")
        g = torch.Generator().manual_seed(self.cfg.seed)
        q, r = torch.linalg.qr(torch.randn(dim, self.cfg.num, generator=g, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))  # the unique QR with positive diagonal: Haar
        return q.T
