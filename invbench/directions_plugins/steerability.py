"""``steerability``: GAN steerability without optimisation (Spingarn-Eliezer et al., ICLR 2021).

The first layer r = W z + b already has spatial coordinates, so a geometric transform T of
the image is sought as a latent step: G(z + q) ~ T{G(z)}. With P the matrix of T at the first
layer's resolution and D a diagonal weighting, survey eq. 15 asks for
q = argmin E_z ||D (W (z + q) + b - P (W z + b))||^2, whose closed form (E[z] = 0) is eq. 16:

    q = (W^T D^2 W)^-1 W^T D^2 (P - I) b.

The non-linear walk z_{n+1} = M z_n + q (eq. 17) keeps the same q and, with E[z z^T] = s^2 I,
M_ii = w_i^T D^2 P w_i / (w_i^T D^2 w_i) (eq. 18, w_i the i-th column of W). A step of -n walks
the inverse map z_n = M^-1 (z_{n+1} - q).

``mode: svd`` gives the unsupervised directions: the right singular vectors of W (survey
§4.1.4), by decreasing singular value. ``transforms`` lists the user-specified transforms:
``shift_x`` / ``shift_y`` by ``shift`` cells of the first layer's map (zero fill) and ``zoom``
by ``zoom`` (bilinear, centre crop or zero pad). ``weighting: valid`` sets D to zero on cells
the transform fills from outside the map (their target is unknown); ``uniform`` is D = I.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from invbench.config import MAX_WIDTH, bounded
from invbench.directions import Directions, LatentModel, first_linear
from invbench.errors import UsageError
from invbench.registry import DIRECTIONS

TRANSFORMS = ("shift_x", "shift_y", "zoom")


def spatial_shape(model: LatentModel, out: int) -> tuple[int, int, int]:
    """(C, H, W) of the first layer's output (DCGAN decoders reshape fc to [top, 4, 4])."""
    top = getattr(model.entry, "top", None)
    if top is None or out % int(top):
        raise UsageError(
            f"'{model.name}' in space '{model.space}': the first layer's output has no spatial "
            "layout invbench knows, so geometric transforms are undefined. Use mode=svd."
        )
    side = math.isqrt(out // int(top))
    if int(top) * side * side != out:
        raise UsageError(f"first layer output {out} is not {top} square maps.")
    return int(top), side, side


def apply_transform(x: torch.Tensor, kind: str, shift: int, zoom: float) -> torch.Tensor:
    """T applied to maps [N, C, H, W]: a linear map, so P v = T(v)."""
    if kind in ("shift_x", "shift_y"):
        dim = 3 if kind == "shift_x" else 2
        out = torch.zeros_like(x)
        n = x.shape[dim]
        s = max(-n, min(n, shift))
        src = x.narrow(dim, 0, n - abs(s)) if s >= 0 else x.narrow(dim, -s, n + s)
        out.narrow(dim, s if s >= 0 else 0, n - abs(s)).copy_(src)
        return out
    if kind == "zoom":
        h, w = x.shape[-2:]
        nh, nw = max(1, round(h * zoom)), max(1, round(w * zoom))
        y = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        if nh >= h:  # zoom in: centre crop
            t, left = (nh - h) // 2, (nw - w) // 2
            return y[..., t : t + h, left : left + w]
        t, left = (h - nh) // 2, (w - nw) // 2  # zoom out: centre, zero pad
        return F.pad(y, (left, w - nw - left, t, h - nh - t))
    raise UsageError(f"unknown transform '{kind}'; use one of {', '.join(TRANSFORMS)}.")


def steer(
    weight: torch.Tensor, bias: torch.Tensor, transform, d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(q of eq. 16, diag M of eq. 18) for W [out, dim], b [out], P v = transform(v)."""
    d2 = d.square()
    wt_d2 = weight.T * d2  # W^T D^2
    pb = transform(bias[None])[0]
    q = torch.linalg.solve(wt_d2 @ weight, wt_d2 @ (pb - bias))  # eq. 16
    pw = transform(weight.T).T  # P w_i for every column i
    m = (wt_d2 * pw.T).sum(1) / (wt_d2 * weight.T).sum(1)  # eq. 18
    return q, m


@DIRECTIONS.register("steerability")
class Steerability(Directions):
    @dataclass
    class Config:
        mode: Literal["transforms", "svd"] = "transforms"
        transforms: tuple[str, ...] = TRANSFORMS
        # cells of the first layer's map per step (1 cell = 1/4 of a DCGAN image)
        shift: int = bounded(1, ge=1, le=1024)
        zoom: float = bounded(1.25, gt=0, le=100)  # scale factor per step
        weighting: Literal["valid", "uniform"] = "valid"
        walk: Literal["linear", "nonlinear"] = "linear"
        num: int = bounded(8, ge=1, le=MAX_WIDTH)  # directions kept in mode=svd

        def validate(self) -> None:
            bad = [t for t in self.transforms if t not in TRANSFORMS]
            if bad or not self.transforms:
                raise ValueError(f"transforms must be a non-empty subset of {TRANSFORMS}")
            if self.zoom <= 0 or self.num < 1:
                raise ValueError("zoom must be > 0 and num >= 1")

    def _transform(self, kind: str, shape: tuple[int, int, int]):
        def t(v: torch.Tensor) -> torch.Tensor:
            maps = v.reshape(len(v), *shape)
            return apply_transform(maps, kind, self.cfg.shift, self.cfg.zoom).reshape(len(v), -1)

        return t

    def compute(self, model: LatentModel) -> torch.Tensor:
        (lin,) = first_linear(model)[:1]
        w, b = lin.weight, lin.bias
        if self.cfg.mode == "svd":
            _, s, vh = torch.linalg.svd(w, full_matrices=False)
            self.info = {"singular_values": [round(float(v), 6) for v in s[: self.cfg.num]]}
            self.m = None
            return vh[: self.cfg.num]
        shape = spatial_shape(model, w.shape[0])
        qs, ms = [], []
        for kind in self.cfg.transforms:
            t = self._transform(kind, shape)
            d = torch.ones(w.shape[0], dtype=w.dtype)
            if self.cfg.weighting == "valid":  # cells filled from outside the map weigh 0
                d = (t(torch.ones(1, w.shape[0], dtype=w.dtype))[0] > 0.5).to(w.dtype)
            q, m = steer(w, b, t, d)
            qs.append(q)
            ms.append(m)
        self.m = torch.stack(ms).float()
        self.info = {
            "transforms": list(self.cfg.transforms),
            "q_norm": [float(q.norm()) for q in qs],
        }
        return torch.stack(qs)  # not normalised: one step is one application of T

    def edit(self, latents: torch.Tensor, k: int, step: float) -> torch.Tensor:
        q = self._check(k).to(latents)
        if self.cfg.walk == "linear" or self.m is None:
            return latents + step * q
        if step != int(step):
            raise UsageError("walk=nonlinear takes whole steps (z_{n+1} = M z_n + q, eq. 17).")
        m = self.m[k].to(latents)
        z = latents
        for _ in range(abs(int(step))):
            z = m * z + q if step > 0 else (z - q) / m
        return z
