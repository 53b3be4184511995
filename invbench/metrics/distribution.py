"""Distribution metrics on features: streaming Gaussian statistics, the Fréchet distance, KID,
and the FID / KID metrics of the protocol's tracks (InvGAN Table 1).

Written by hand because the field's libraries either keep every feature in memory
(torch-fidelity, clean-fid) or, like torchmetrics' ``FrechetInceptionDistance`` (whose float64
sums this mirrors), extract features per metric object: here one feature pass per batch feeds
the FID at the track's N, the FID at the small N and the KID, against reference statistics
cached once. The formulas are theirs; the tests check them against torchmetrics' FID,
torch-fidelity's KID, scipy and closed forms.

- ``RunningStats``: float64 running sums of x and x x^T (torchmetrics' FID state), so memory
  is O(D^2) whatever the number of images, and the result does not depend on batching.
- ``frechet_distance``: FID of Heusel et al. 2017, eq. (6):
  d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}).
- ``kid``: KID of Binkowski et al. 2018: the unbiased MMD^2 estimator with the cubic polynomial
  kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets; the subsets are drawn exactly
  as torch-fidelity draws them, so equal seeds give torch-fidelity's numbers.
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import numpy as np
import torch

from invbench.metrics.base import (
    Batch,
    EvalContext,
    Fold,
    Metric,
    MetricSpec,
    Result,
    register,
)


class RunningStats:
    """Mean and covariance of a stream of feature batches, in float64, O(D^2) memory."""

    def __init__(self, dim: int | None = None) -> None:
        self.n = 0
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None
        if dim is not None:
            self._init(dim)

    def _init(self, dim: int) -> None:
        self.sum = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, feats: torch.Tensor) -> None:
        f = feats.detach().to("cpu", torch.float64).reshape(len(feats), -1)
        if self.sum is None:
            self._init(f.shape[1])
        assert self.sum is not None and self.outer is not None
        self.sum += f.sum(0)
        self.outer += f.T @ f
        self.n += len(f)

    def __add__(self, other: RunningStats) -> RunningStats:
        """The statistics of both streams (a sharded evaluation's processes): sums add."""
        both = RunningStats()
        both.n = self.n + other.n
        parts = [s for s in (self, other) if s.sum is not None]
        if parts:
            both.sum = sum((s.sum for s in parts), torch.zeros_like(parts[0].sum))
            both.outer = sum((s.outer for s in parts), torch.zeros_like(parts[0].outer))
        return both

    def mean(self) -> np.ndarray:
        assert self.sum is not None and self.n > 0
        return (self.sum / self.n).numpy()

    def cov(self) -> np.ndarray:
        """Sample covariance (n - 1), the convention of pytorch-fid, torch-fidelity and clean-fid."""
        assert self.sum is not None and self.outer is not None
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 samples")
        mu = self.sum / self.n
        return ((self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)).numpy()


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr (S1 S2)^{1/2} = tr (S1^{1/2} S2 S1^{1/2})^{1/2}: the second matrix is symmetric PSD, so
    both roots come from ``eigh`` — no complex parts, no ill-conditioned ``sqrtm`` iterations.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    r1 = _sqrt_psd(s1)
    m = r1 @ s2 @ r1
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    t = x @ y.T / x.shape[1] + 1
    return t * t * t  # (x.y / d + 1)^3; products are several times faster than ** 3


def _mmd2_unbiased(m: int, sxx: float, syy: float, sxy: float) -> float:
    """Unbiased MMD^2 from kernel sums over a subset of size m (diagonals already removed
    from sxx and syy)."""
    return (sxx + syy) / (m * (m - 1)) - 2 * sxy / (m * m)


def kid(
    feats1: np.ndarray | torch.Tensor,
    feats2: np.ndarray | torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
) -> tuple[float, float]:
    """KID mean and standard deviation over ``subsets`` random subsets (torch-fidelity's draw).

    ``subset_size`` is clipped to the smaller set, so small test splits still get a number.
    """
    f1 = np.asarray(feats1, dtype=np.float64)
    f2 = np.asarray(feats2, dtype=np.float64)
    size = min(subset_size, len(f1), len(f2))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), size, replace=False)]
        y = f2[rng.choice(len(f2), size, replace=False)]
        kxx, kyy = _poly_kernel(x, x), _poly_kernel(y, y)
        sxx = kxx.sum() - np.trace(kxx)
        syy = kyy.sum() - np.trace(kyy)
        mmds[i] = _mmd2_unbiased(size, float(sxx), float(syy), float(_poly_kernel(x, y).sum()))
    return float(mmds.mean()), float(mmds.std())


# -- the metrics of the tracks ---------------------------------------------------------------------
class FID(Metric):
    """FID of a track's images against the reference statistics, at the evaluation's one N for
    the track (``ctx.fid_n``; 0 = every image) and at ``eval.fid_small_n`` when that is smaller
    (reported as ``name@N=<n>``: FID is biased upwards at small N, compare equal N only).
    Memory is O(D^2): float64 running sums, whatever N. The first N images are those of global
    index < N (``Batch.start``), so a sharded track counts the same images."""

    states: ClassVar[dict[str, Fold]] = {"all": operator.add, "small": operator.add}

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        self.net = ctx.feature_net()  # Unavailable (no feature network) stops it here
        self.n = int(ctx.fid_n.get(str(spec.track), 0))
        self.small_n = int(getattr(ctx.cfg, "fid_small_n", 0))
        self.all, self.small = RunningStats(), RunningStats()

    def update(self, batch: Batch) -> None:
        room = (self.n - batch.start) if self.n else len(batch.images)
        if room <= 0:
            return
        f = self.ctx.features(batch.images)[:room]
        self.all.update(f)
        if batch.start < self.small_n:
            self.small.update(f[: self.small_n - batch.start])

    def reference(self) -> Any:
        """The statistics compared against: the evaluation's reference set."""
        return self.ctx.reference()

    def compute(self) -> Result:
        ref = self.reference()
        name, res = self.spec.name, Result()
        if self.all.n >= 2:
            res.values[name] = frechet_distance(self.all.mean(), self.all.cov(), ref.mu, ref.sigma)
            res.flavors[name] = f"{self.net.flavor}/N={self.all.n}/ref={ref.split}"
        if 2 <= self.small_n < self.all.n:
            small = f"{name}@N={self.small_n}"
            s = self.small
            res.values[small] = frechet_distance(s.mean(), s.cov(), ref.mu, ref.sigma)
            res.flavors[small] = f"{self.net.flavor}/N={self.small_n}/ref={ref.split}"
        return res


class KID(Metric):
    """KID of a track's images (all of them) against the reference features, averaged over
    ``eval.kid_subsets`` subsets drawn from both sets (torch-fidelity's draw), with its spread
    over the subsets as ``<name>_sd``. Keeps the track's features (KID needs them)."""

    states: ClassVar[dict[str, Fold]] = {"feats": operator.add}  # kept features, in order

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        self.net = ctx.feature_net()
        self.feats: list[torch.Tensor] = []

    def update(self, batch: Batch) -> None:
        self.feats.append(self.ctx.features(batch.images))

    def compute(self) -> Result:
        ref, cfg = self.ctx.reference(), self.ctx.cfg
        feats = torch.cat(self.feats).numpy()
        size = min(int(cfg.kid_subset_size), len(feats), len(ref.feats))
        mean, std = kid(feats, ref.feats, int(cfg.kid_subsets), size, self.ctx.seed)
        flavor = (
            f"{self.net.flavor}/N={len(feats)}/ref={ref.split}/subsets={cfg.kid_subsets}x{size}"
        )
        name = self.spec.name
        return Result({name: mean, f"{name}_sd": std}, {name: flavor, f"{name}_sd": flavor})


FID_FLAVOR = "feature network/N/reference split (e.g. lenet-digits/N=148/ref=train)"


def _fid(name: str, track: str, meaning: str) -> None:
    spec = MetricSpec(name, meaning, False, "{:.2f}", "Distribution", True, "distribution",
                      track, FID_FLAVOR)  # fmt: skip
    register(spec, FID)


_fid("fid_rand", "rand", "FID of random samples vs the train split (InvGAN RandFID)")
_fid("fid_rand_rec", "rand_rec", "FID of reconstructions of random samples vs train (RandRecFID)")
_fid("fid_test_rec", "test", "FID of test reconstructions vs train (TsRecFID)")
_fid(
    "fid_interp",
    "interp",
    "FID of midpoints of N disjoint test pairs (2N test images) vs train (IntTsFID)",
)
register(
    MetricSpec(
        "kid_test_rec",
        "KID of test reconstructions vs train",
        fmt="{:.4f}",
        group="Distribution",
        needs="distribution",
        track="test",
        flavor="feature network/N/reference split/subsets x subset size",
    ),
    KID,
)
register(
    MetricSpec(
        "kid_test_rec_sd",
        "standard deviation of kid_test_rec over its random subsets",
        group="Distribution",
        needs="distribution",
        track="test",
        part_of="kid_test_rec",
    )
)
