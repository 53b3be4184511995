"""``ganspace``: principal components of the latent distribution (Härkönen et al., NeurIPS 2020).

In a learned space (StyleGAN's w, InvGAN's w, LIA's y) the principal axes of sampled codes are
the directions (GANSpace's StyleGAN recipe). An isotropic z has no principal axes, so there the
PCA runs on the first layer's output r = W z + b and each component v_k is mapped back to z by
least squares, u_k = argmin_u ||W u - v_k|| (the survey's "PCA in the feature space"; GANSpace
regresses z on the PCA coordinates for BigGAN, which for a linear first layer is the same map
up to scale). Directions are unit length, sorted by explained variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from invbench.config import MAX_SEED, MAX_WIDTH, bounded
from invbench.directions import Directions, LatentModel, first_linear
from invbench.registry import DIRECTIONS


@DIRECTIONS.register("ganspace")
class GANSpace(Directions):
    @dataclass
    class Config:
        num: int = bounded(8, ge=1, le=MAX_WIDTH)
        samples: int = bounded(4096, ge=2, le=1_000_000)  # codes drawn for the PCA
        source: Literal["auto", "latent", "activations"] = "auto"  # auto: activations for z
        seed: int = bounded(0, ge=0, le=MAX_SEED)

        def validate(self) -> None:
            if self.num < 1 or self.samples < 2:
                raise ValueError("num must be >= 1 and samples >= 2")

    def compute(self, model: LatentModel) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed)
        codes = model.sample(self.cfg.samples, g).detach().double().cpu()
        if codes.ndim == 3:  # w+ from the prior repeats one w: its first layer is the code
            codes = codes[:, 0]
        source = self.cfg.source
        if source == "auto":
            source = "activations" if model.space == "z" else "latent"
        feats = codes
        lin = None
        if source == "activations":
            (lin,) = first_linear(model)[:1]
            feats = codes @ lin.weight.T + lin.bias
        centred = feats - feats.mean(0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        var = s.square() / (len(feats) - 1)
        comps = vh[: self.cfg.num]
        if lin is not None:  # back to z: u_k = argmin ||W u - v_k||
            comps = torch.linalg.lstsq(lin.weight, comps.T).solution.T
        comps = comps / comps.norm(dim=1, keepdim=True)
        self.info = {
            "source": source,
            "explained_variance_ratio": [
                round(float(v), 6) for v in (var / var.sum())[: self.cfg.num]
            ],
        }
        return comps
