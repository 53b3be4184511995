"""``closed-form``: layer-wise inversion with a closed-form first layer (survey §4.2.3).

G = G_f(g_1(z)) with g_1 the generator's first, linear layer r = W z + b (DCGAN's ``fc``).
Bau et al. (survey eq. 27) invert the easier G_f: r* = argmin_r ||G_f(r) - x||^2 by gradient
descent from r_0 = g_1(z_0). The latent is then recovered from r* in closed form:

- ``solve: lstsq``: z = argmin_z ||W z + b - r*||^2 (the pseudo-inverse; exact when r* = W z + b);
- ``solve: lp``: the optimised representation is the first block's output h = ReLU(W' z + b')
  (eval-mode BatchNorm folded into W', b'), h >= 0 kept by projection, and z solves survey
  eq. 25, w_i^T z + b_i = h_i where h_i > 0 and w_i^T z + b_i <= 0 where h_i = 0, as an L1
  linear program with slacks (scipy's HiGHS) so an unrealisable h still gets the nearest z.

r* usually lies off the generator's range {W z + b}: decoding the recovered z loses what G_f(r*)
had. How far is reported per run as ``closed_form_range_residual`` = mean over inverted images of
||g_1(z) - r*|| / ||r*|| (in the run record's provenance, via ``flavor``), with the MSE of
G_f(r*) (``closed_form_layer_mse``) as the layer-wise reconstruction before the projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from invbench.config import MAX_BATCH, MAX_LR, MAX_STEPS, bounded
from invbench.errors import UsageError
from invbench.generators.base import Generator
from invbench.inverter import Inverter, Latents
from invbench.latent_opt import init_latents, make_optimizer
from invbench.progress import bar
from invbench.registry import METHODS


def split_dcgan(gen: nn.Module) -> tuple[nn.Linear, nn.Module, int]:
    """(first linear layer, the rest G_f as a Sequential, channels of the 4x4 map)."""
    net = getattr(gen, "net", None)
    if (
        net is None
        or not isinstance(getattr(net, "fc", None), nn.Linear)
        or not hasattr(net, "body")
    ):
        raise UsageError(
            f"closed-form needs a generator whose first layer is a linear `net.fc` followed by "
            f"`net.body` (dcgan, dcgan-noise, wgan-gp); '{getattr(gen, 'name', gen)}' is not one."
        )
    return net.fc, net.body, int(net.top)


def fold_relu_block(fc: nn.Linear, body: nn.Module, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """W', b' of h = ReLU(BN(W z + b)) with eval-mode BatchNorm folded in (per 4x4 channel)."""
    bn = body[0]
    if not isinstance(bn, nn.BatchNorm2d) or not isinstance(body[1], nn.ReLU):
        raise UsageError("solve=lp needs the first block to be Linear -> BatchNorm2d -> ReLU.")
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).double()
    shift = bn.bias.double() - bn.running_mean.double() * scale
    per = fc.weight.shape[0] // top
    a, c = scale.repeat_interleave(per), shift.repeat_interleave(per)
    w = fc.weight.detach().double() * a[:, None]
    b = fc.bias.detach().double() * a + c
    return w.detach(), b.detach()


def lstsq_latent(weight: torch.Tensor, bias: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """z = argmin ||W z + b - r|| for every row of r [B, out]."""
    return torch.linalg.lstsq(weight.double(), (r.double() - bias.double()).T).solution.T


def lp_latent(
    weight: torch.Tensor, bias: torch.Tensor, h: torch.Tensor, tol: float = 1e-6
) -> torch.Tensor:
    """Survey eq. 25 for h = ReLU(W z + b), with L1 slacks s: min sum s subject to
    |w_i^T z + b_i - h_i| <= s_i (h_i > tol) and w_i^T z + b_i <= s_i (h_i <= tol)."""
    from scipy import sparse
    from scipy.optimize import linprog

    w, b = weight.double().cpu().numpy(), bias.double().cpu().numpy()
    n, d = w.shape
    eye = sparse.identity(n, format="csr")
    out = []
    for hi in h.double().cpu().numpy():
        act = hi > tol
        ea, ei = eye[np.flatnonzero(act)], eye[np.flatnonzero(~act)]
        a_ub = sparse.vstack(
            [
                sparse.hstack([w[act], -ea]),
                sparse.hstack([-w[act], -ea]),
                sparse.hstack([w[~act], -ei]),
            ],
            format="csr",
        )
        b_ub = np.concatenate([hi[act] - b[act], b[act] - hi[act], -b[~act]])
        res = linprog(
            np.r_[np.zeros(d), np.ones(n)],
            A_ub=a_ub,
            b_ub=b_ub,
            bounds=[(None, None)] * d + [(0, None)] * n,
            method="highs",
        )
        if res.status != 0:
            raise UsageError(f"closed-form: the linear program of eq. 25 failed ({res.message}).")
        out.append(res.x[:d])
    return torch.from_numpy(np.stack(out))


@METHODS.register("closed-form")
class ClosedForm(Inverter):
    @dataclass
    class Config:
        """Defaults; the suite's values and their sources are in configs/methods/closed-form.yaml."""

        solve: Literal["lstsq", "lp"] = "lstsq"
        steps: int = bounded(300, ge=0, le=MAX_STEPS)  # gradient steps on r
        lr: float = bounded(0.01, gt=0, le=MAX_LR)
        optimizer: Literal["rmsprop", "adam", "sgd"] = "adam"
        init: Literal["random", "mean"] = "mean"  # r_0 = g_1(z_0), z_0 ~ p(z) or z_0 = 0
        batch_size: int = bounded(512, ge=1, le=MAX_BATCH)
        space: Literal["z"] = "z"

        def validate(self) -> None:
            if self.steps < 0 or self.lr <= 0 or self.batch_size < 1:
                raise ValueError("steps must be >= 0, lr > 0 and batch_size >= 1")

    def __init__(
        self,
        cfg: Config,
        generator: Generator | None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if generator is None:
            raise UsageError("closed-form inverts a zoo generator; pass --generator dcgan.")
        super().__init__(cfg, generator, device, seed)
        self.fc, self.body, self.top = split_dcgan(generator)
        self._residual: list[float] = []
        self._layer_mse: list[float] = []

    def _first(self) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
        """The map the representation comes out of (W, b) and the rest of the generator."""
        if self.cfg.solve == "lp":
            w, b = fold_relu_block(self.fc, self.body, self.top)
            return w, b, self.body[2:]
        return self.fc.weight.detach().double(), self.fc.bias.detach().double(), self.body

    def recover(self, r: torch.Tensor) -> torch.Tensor:
        """The closed-form step: the latent whose first layer output is nearest r [B, out]."""
        w, b, _ = self._first()
        if self.cfg.solve == "lp":
            return lp_latent(w, b, r).to(r.device, torch.float32)
        return lstsq_latent(w.to(r.device), b.to(r.device), r).float()

    def represent(self, z: torch.Tensor) -> torch.Tensor:
        """g_1(z): the representation the closed form inverts (after the ReLU for lp)."""
        w, b, _ = self._first()
        r = z.double() @ w.to(z.device).T + b.to(z.device)
        return (r.clamp_min(0) if self.cfg.solve == "lp" else r).float()

    def _invert_batch(self, images: torch.Tensor) -> torch.Tensor:
        gen = self.generator
        assert gen is not None
        _, _, rest = self._first()
        z0 = init_latents(gen, images, "z", self.cfg.init, self.seed)
        r = self.represent(z0).detach().requires_grad_(True)
        opt = make_optimizer(self.cfg.optimizer, [r], self.cfg.lr)
        pbar = bar(self.cfg.steps, f"closed-form r ({len(images)} images)")

        def per_image(r_: torch.Tensor) -> torch.Tensor:
            x = rest(r_.view(len(r_), self.top, 4, 4))
            return (x - images).pow(2).flatten(1).mean(1)

        for _ in range(self.cfg.steps):  # eq. 27: r* = argmin ||G_f(r) - x||^2
            loss = per_image(r)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            if self.cfg.solve == "lp":
                with torch.no_grad():
                    r.clamp_(min=0)  # h is a ReLU output
            pbar.update(1)
        pbar.close()
        r = r.detach()
        z = self.recover(r)
        with torch.no_grad():
            self._layer_mse += per_image(r).tolist()
            gap = (self.represent(z) - r).norm(dim=1) / r.norm(dim=1).clamp_min(1e-12)
        self._residual += gap.tolist()
        return z

    def invert(self, images: torch.Tensor) -> Latents:
        images = images.detach().to(self.device)
        bs = self.cfg.batch_size
        parts = [self._invert_batch(images[i : i + bs]) for i in range(0, len(images), bs)]
        return Latents(torch.cat(parts), "z")

    def warmup(self, images: torch.Tensor) -> None:
        pass  # nothing lazy; every step costs the same

    def range_residual(self) -> float:
        """Mean ||g_1(z) - r*|| / ||r*|| over the images inverted so far."""
        return float(np.mean(self._residual)) if self._residual else float("nan")

    def diagnostics(self) -> dict[str, str]:
        # Measured per run (they vary with the images), so not a flavor: rows would never match.
        return {
            "closed_form_solve": self.cfg.solve,
            "closed_form_range_residual": f"{self.range_residual():.6f}",
            "closed_form_layer_mse": f"{np.mean(self._layer_mse) if self._layer_mse else float('nan'):.6f}",
            "closed_form_images": str(len(self._residual)),
        }
