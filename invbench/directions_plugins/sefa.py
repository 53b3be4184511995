"""``sefa``: closed-form factorisation of latent semantics (Shen & Zhou, CVPR 2021).

Survey eq. 19: n* = argmax_{n^T n = 1} ||A n||^2, whose solutions are the eigenvectors of A^T A,
A the weight of the first projection the latent enters. As in genforce/sefa's
``factorize_weight``, each output unit's weight row is normalised to unit length first, and for
a style generator A stacks the style affine layers of the chosen w+ layers. ``eigh`` is the
symmetric eigensolver (A^T A is symmetric); directions are sorted by decreasing eigenvalue.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from invbench.config import MAX_WIDTH, bounded
from invbench.directions import Directions, LatentModel, first_linear
from invbench.registry import DIRECTIONS


@DIRECTIONS.register("sefa")
class SeFa(Directions):
    @dataclass
    class Config:
        num: int = bounded(8, ge=1, le=MAX_WIDTH)  # directions kept (the top eigenvectors)
        # w+ layers of a style generator (empty: all)
        layers: tuple[int, ...] = bounded((), ge=0, le=1024)

        def validate(self) -> None:
            if self.num < 1:
                raise ValueError("num must be >= 1")

    def compute(self, model: LatentModel) -> torch.Tensor:
        maps = first_linear(model, self.cfg.layers)
        a = torch.cat([m.weight for m in maps])  # [sum of outputs, dim], float64
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)  # unit rows (sefa's axis=0 of A^T)
        values, vectors = torch.linalg.eigh(a.T @ a)  # ascending
        order = values.argsort(descending=True)[: self.cfg.num]
        self.layers = tuple(i for m in maps for i in m.layers) if model.space == "w+" else ()
        self.info = {
            "eigenvalues": [round(float(v), 6) for v in values[order]],
            "layers": [m.name for m in maps],
        }
        return vectors[:, order].T  # rows: unit eigenvectors
