"""Where inverted latents lie relative to the prior (the ICLR 2020 latent-space study, Fig. 10).

For z ~ N(0, I_d), ||z||^2 follows chi^2_d: the prior's mass sits on a thin shell of radius
about sqrt(d), and a latent far inside or outside it is one the generator almost never saw in
training. The study runs the inversion without its projection and finds that the norms of the
latents it recovers barely overlap those of prior samples ("the overlap is virtually
non-existent", Appendix, Fig. 10), which is why it projects (§4.2, eq. 5).

Two per-latent quantities, meant to be averaged over the inverted test latents of a run:

- ``in_typical_set``: 1 when ||z||^2 lies in the central interval of chi^2_d holding the
  two-sided 3-sigma mass (99.73%, the study's "3-sigma rule" of §4.2), else 0. Two-sided because
  the typical set is a shell: a latent near the origin is as atypical as one far out (eq. 5's
  ball only bounds the norm from above). For a uniform prior U[-1, 1]^d every point of the
  support is equally likely, so the typical set is the box itself: 1 when every |z_i| <= 1.
  Its mean is ``typical_share`` (higher: more latents where the prior puts its mass).
- ``latent_norm``: ||z|| / sqrt(d), about 1 for prior draws once d is moderate (its exact mean is
  sqrt(2/d) Gamma((d+1)/2) / Gamma(d/2)).

Both are registered metrics of the inverted test latents (``needs="latents"`` on the test
track, so they are reported with ``eval.tracks`` off too): ``typical_share`` and its companion
``latent_norm`` (the mean; no better direction, not gated). They read the prior of the
generator that the run inverts (``Generator.prior``) and only codes of its sampled space ``z``.

Hand-written: no library computes these; the chi^2 quantiles come from SciPy.
"""

from __future__ import annotations

import math
import operator
from typing import ClassVar, Literal

import torch

from invbench.metrics.base import (
    Batch,
    EvalContext,
    Fold,
    Metric,
    MetricSpec,
    Result,
    Unavailable,
    first_set,
    register,
)

#: The two-sided 3-sigma mass of a normal distribution: P(|X| <= 3), X ~ N(0, 1).
THREE_SIGMA_MASS = math.erf(3 / math.sqrt(2))


def chi2_interval(d: int, mass: float = THREE_SIGMA_MASS) -> tuple[float, float]:
    """The central interval of chi^2_d holding ``mass`` of its probability."""
    from scipy.stats import chi2

    tail = (1.0 - mass) / 2
    return float(chi2.ppf(tail, d)), float(chi2.isf(tail, d))


def in_typical_set(
    latents: torch.Tensor, prior: Literal["gaussian", "uniform"] = "gaussian"
) -> torch.Tensor:
    """Per latent (first dimension = batch): 1.0 inside the prior's typical set, else 0.0."""
    z = latents.detach().flatten(1).double()
    if prior == "uniform":
        return (z.abs() <= 1.0).all(1).double()
    if prior != "gaussian":
        raise ValueError(f"prior must be 'gaussian' or 'uniform', got {prior!r}")
    lo, hi = chi2_interval(z.shape[1])
    r2 = z.pow(2).sum(1)
    return ((r2 >= lo) & (r2 <= hi)).double()


def typical_share(
    latents: torch.Tensor, prior: Literal["gaussian", "uniform"] = "gaussian"
) -> float:
    """Share of ``latents`` inside the prior's typical set (see ``in_typical_set``)."""
    return float(in_typical_set(latents, prior).mean())


def latent_norm(latents: torch.Tensor) -> torch.Tensor:
    """Per latent: ||z|| / sqrt(d)."""
    z = latents.detach().flatten(1).double()
    return z.norm(dim=1) / math.sqrt(z.shape[1])


class TypicalShare(Metric):
    """Streams the per-latent typical-set indicator and norm of the inverted test latents."""

    states: ClassVar[dict[str, Fold]] = {
        "inside": operator.add,  # per-latent values, in order
        "norm": operator.add,
        "space": first_set,
    }

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        if ctx.prior not in ("gaussian", "uniform"):
            raise Unavailable("the run inverts no generator with a known prior p(z)")
        self.inside: list[torch.Tensor] = []
        self.norm: list[torch.Tensor] = []
        self.space = ""

    def update(self, batch: Batch) -> None:
        if batch.latents is None or batch.space != "z":
            self.space = batch.space or "none"  # codes of w / w+ / y: the prior is on z
            return
        z = batch.latents.detach().cpu()
        self.inside.append(in_typical_set(z, self.ctx.prior))  # type: ignore[arg-type]
        self.norm.append(latent_norm(z))

    def compute(self) -> Result:
        names = (self.spec.name, "latent_norm")
        if not self.inside:
            why = (
                f"{self.spec.name} unavailable: the method inverts into space "
                f"'{self.space or '?'}', but the prior p(z) is a distribution of z."
            )
            return Result(dict.fromkeys(names, None), unavailable=dict.fromkeys(names, why))
        inside, norm = torch.cat(self.inside), torch.cat(self.norm)
        rule = "box" if self.ctx.prior == "uniform" else "chi2 3-sigma"
        flavor = f"{self.ctx.prior} prior/{rule}/N={len(inside)}"
        values = {names[0]: float(inside.mean()), names[1]: float(norm.mean())}
        return Result(values, dict.fromkeys(names, flavor))


register(
    MetricSpec(
        "typical_share",
        "share of the inverted test latents in the prior's typical set: squared norm in the "
        "central 99.73% of chi^2_d (Gaussian), every coordinate in [-1, 1] (uniform) "
        "(ICLR 2020 Fig. 10)",
        higher_better=True,
        fmt="{:.3f}",
        group="Latent",
        needs="latents",
        track="test",
        flavor="prior/rule/N",
    ),
    TypicalShare,
)
register(
    MetricSpec(
        "latent_norm",
        "mean norm / sqrt(d) of the inverted test latents (about 1 for draws of N(0, I); "
        "no better direction, not gated)",
        fmt="{:.3f}",
        group="Latent",
        gated=False,
        needs="latents",
        track="test",
        part_of="typical_share",
    )
)
