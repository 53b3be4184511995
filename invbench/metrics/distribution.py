"""Distribution metrics on features: streaming Gaussian statistics, the Fréchet distance, KID.

Written by hand because the field's libraries either keep every feature in memory
(torch-fidelity, clean-fid) or tie the statistics to Inception (torchmetrics); the formulas
are theirs and the tests check them against torch-fidelity, scipy and closed forms.

- ``RunningStats``: float64 running sums of x and x x^T (torchmetrics' FID state), so memory
  is O(D^2) whatever the number of images, and the result does not depend on batching.
- ``frechet_distance``: FID of Heusel et al. 2017, eq. (6):
  d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}).
- ``kid``: KID of Binkowski et al. 2018: the unbiased MMD^2 estimator with the cubic polynomial
  kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets; the subsets are drawn exactly
  as torch-fidelity draws them, so equal seeds give torch-fidelity's numbers.
"""

from __future__ import annotations

import numpy as np
import torch


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
