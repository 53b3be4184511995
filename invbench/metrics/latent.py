"""Latent recovery on random samples (track ``rand_rec``): the generator's own images, whose true
code is known, inverted again. Only where the method inverts into the space it samples from."""

from __future__ import annotations

import operator
from typing import ClassVar

import torch

from invbench.metrics.base import (
    Batch,
    EvalContext,
    Fold,
    Metric,
    MetricSpec,
    Result,
    first_set,
    register,
)


class _Recovered(Metric):
    """Collects, per random sample, the squared error and the largest |z_i - z*_i| of its
    recovered code; refuses (unavailable) when the found codes live in another space."""

    states: ClassVar[dict[str, Fold]] = {
        "mse": operator.add,  # per-sample values, in order
        "max": operator.add,
        "space": first_set,
        "mismatch": first_set,
    }

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        self.mse: list[torch.Tensor] = []
        self.max: list[torch.Tensor] = []
        self.space = ""
        self.mismatch = ""

    def update(self, batch: Batch) -> None:
        assert batch.latents is not None and batch.true_latents is not None
        est = batch.latents.detach().cpu().double()
        true = batch.true_latents.detach().cpu().double()
        if est.shape != true.shape:
            self.mismatch = (
                f"{self.spec.name} unavailable: the method inverts into codes of shape "
                f"{list(est.shape[1:])} but samples codes of shape {list(true.shape[1:])}, so the "
                "true latent of a random sample is unknown in its space."
            )
            return
        self.space = batch.space
        self.mse.append((est - true).pow(2).flatten(1).mean(1))
        self.max.append((est - true).abs().flatten(1).amax(1))

    def unavailable(self) -> Result | None:
        if self.mismatch or not self.mse:
            msg = self.mismatch or f"{self.spec.name} unavailable: no random sample was inverted."
            return Result(values={self.spec.name: None}, unavailable={self.spec.name: msg})
        return None


class LatentMSE(_Recovered):
    def compute(self) -> Result:
        missing = self.unavailable()
        if missing is not None:
            return missing
        v = torch.cat(self.mse)
        name = self.spec.name
        return Result({name: float(v.mean())}, {name: f"space={self.space}/N={len(v)}"})


class Recovery(_Recovered):
    """``recovery@eps``: share of random samples whose code is recovered within eps in every
    coordinate (Lipton & Tripathi 2017), one value per ``eval.recovery_eps``."""

    def compute(self) -> Result:
        missing = self.unavailable()
        if missing is not None:
            return Result(unavailable=missing.unavailable)
        worst = torch.cat(self.max)
        res = Result()
        for eps in self.ctx.cfg.recovery_eps:
            name = f"{self.spec.name}@{eps:g}"
            res.values[name] = float((worst < eps).double().mean())
            res.flavors[name] = f"all |z_i - z*_i| < {eps:g}/space={self.space}/N={len(worst)}"
        return res


register(
    MetricSpec(
        "latent_mse",
        "MSE of recovered latents of random samples (where the true latent is known)",
        group="Latent",
        needs="latents",
        track="rand_rec",
        flavor="latent space/N",
    ),
    LatentMSE,
)
register(
    MetricSpec(
        "recovery",
        "recovery@eps: share of random samples whose latent is recovered with every "
        "|z_i - z*_i| < eps (Lipton & Tripathi 2017)",
        higher_better=True,
        fmt="{:.3f}",
        group="Latent",
        needs="latents",
        track="rand_rec",
        flavor="eps/latent space/N",
    ),
    Recovery,
)
