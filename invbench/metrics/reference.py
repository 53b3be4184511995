"""The streaming glue between image tracks and the metrics, shared by the runner and
``invbench eval-images``.

A *track* is a stream of images (test reconstructions, random samples, interpolations...) fed
batch by batch. ``FeatureTrack`` turns it into features and running statistics at two sample
sizes (the first ``small_n`` images and all of them), the FID flavors of InvGAN's Table 1; the
reference (the train split, or a real image folder) is summarised once and cached by the
content hash of (split, dataset, feature network, preprocessing, N).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

from invbench import artifacts
from invbench.config import stable_hash
from invbench.metrics.distribution import RunningStats, frechet_distance, kid
from invbench.metrics.features import DomainNet, FeatureNet

# What happens to images before the feature network; part of the reference cache key.
PREPROCESS = "float32 NCHW in [-1,1], native resolution (Inception: uint8 RGB, TF-bilinear 299)"
REF_VERSION = 1


def batched_features(net: FeatureNet, images: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat(
        [net.features(images[i : i + batch]).cpu() for i in range(0, len(images), batch)]
    )


@dataclass
class Reference:
    """Gaussian statistics of the reference set (float64) and its features (for KID)."""

    mu: np.ndarray
    sigma: np.ndarray
    feats: np.ndarray
    n: int
    split: str


def reference(
    net: FeatureNet,
    images: torch.Tensor | tud.DataLoader,
    split: str,
    data_fp: dict[str, Any],
    batch: int = 500,
    kid_max: int = 10_000,
) -> Reference:
    """Statistics of ``images`` (the reference split), cached as an artifact.

    ``images`` is one tensor or a DataLoader of image batches (a split too large for memory,
    streamed: ``splits.loader(split, batch)``); both give the same statistics. KID keeps at most
    ``kid_max`` reference features (the first ones) to bound memory.
    """
    if isinstance(images, torch.Tensor):
        n_images = len(images)
        batches: Iterable[torch.Tensor] = (images[i : i + batch] for i in range(0, n_images, batch))
    else:
        n_images, batches = len(images.dataset), images  # type: ignore[arg-type]
    key = stable_hash(
        {
            "split": split,
            "data": data_fp,
            "net": net.key,
            "prep": PREPROCESS,
            "n": n_images,
            "kid_max": kid_max,
            "v": REF_VERSION,
        }
    )
    cached = artifacts.load_artifact("refstats", key)
    if cached is not None:
        t = cached[0]
        return Reference(t["mu"].numpy(), t["sigma"].numpy(), t["feats"].numpy(), n_images, split)
    stats = RunningStats()
    kept: list[torch.Tensor] = []
    n_kept = 0
    for x in batches:
        f = net.features(x).cpu()
        stats.update(f)
        if n_kept < kid_max:
            kept.append(f[: kid_max - n_kept])
            n_kept += len(kept[-1])
    ref = Reference(stats.mean(), stats.cov(), torch.cat(kept).numpy(), n_images, split)
    artifacts.save_artifact(
        "refstats",
        key,
        {
            "mu": torch.from_numpy(ref.mu),
            "sigma": torch.from_numpy(ref.sigma),
            "feats": torch.from_numpy(ref.feats),
        },
        {"split": split, "net": net.flavor, "n": n_images},
    )
    return ref


class FeatureTrack:
    """One image stream's features: FID statistics at all N and at the first ``small_n``
    images, plus (optionally) the features themselves for KID. Memory is O(D^2) unless
    ``keep_features``."""

    def __init__(
        self, name: str, net: FeatureNet, small_n: int = 0, keep_features: bool = False
    ) -> None:
        self.name = name
        self.net = net
        self.small_n = small_n
        self.all = RunningStats()
        self.small = RunningStats()
        self.kept: list[torch.Tensor] | None = [] if keep_features else None

    @property
    def n(self) -> int:
        return self.all.n

    def update(self, images: torch.Tensor, batch: int = 500) -> None:
        for i in range(0, len(images), batch):
            f = self.net.features(images[i : i + batch]).cpu()
            room = self.small_n - self.small.n
            if room > 0:
                self.small.update(f[:room])
            self.all.update(f)
            if self.kept is not None:
                self.kept.append(f)

    def _flavor(self, n: int, ref: Reference) -> str:
        return f"{self.net.flavor}/N={n}/ref={ref.split}"

    def fid(self, ref: Reference) -> tuple[dict[str, float], dict[str, str]]:
        """``{name: FID at all N, name@N=small: FID at small N}`` and their flavors.

        The small-N value is reported only when it differs from the full one (N > small_n);
        FID is biased upward at small N, so only equal-N values are comparable.
        """
        metrics, flavors = {}, {}
        if self.n >= 2:
            metrics[self.name] = frechet_distance(
                self.all.mean(), self.all.cov(), ref.mu, ref.sigma
            )
            flavors[self.name] = self._flavor(self.n, ref)
        if 2 <= self.small_n < self.n:
            name = f"{self.name}@N={self.small_n}"
            s = self.small
            metrics[name] = frechet_distance(s.mean(), s.cov(), ref.mu, ref.sigma)
            flavors[name] = self._flavor(self.small_n, ref)
        return metrics, flavors

    def kid(
        self, ref: Reference, name: str, subsets: int, subset_size: int, seed: int
    ) -> tuple[dict[str, float], dict[str, str]]:
        assert self.kept is not None, "this track did not keep its features"
        feats = torch.cat(self.kept).numpy()
        size = min(subset_size, len(feats), len(ref.feats))
        mean, std = kid(feats, ref.feats, subsets, size, seed)
        flavor = f"{self.net.flavor}/N={len(feats)}/ref={ref.split}/subsets={subsets}x{size}"
        return {name: mean, f"{name}_sd": std}, {name: flavor, f"{name}_sd": flavor}


class ClassShares:
    """Mode coverage of random samples: the share of each class that the domain classifier
    predicts, reported as its minimum and maximum (every class of a balanced dataset near
    1/classes means no mode collapse; a dropped mode shows as ``class_share_min`` near 0)."""

    def __init__(self, net: DomainNet) -> None:
        self.net = net
        self.counts = torch.zeros(net.head.out_features, dtype=torch.long)

    def update(self, images: torch.Tensor, batch: int = 500) -> None:
        dev = next(self.net.parameters()).device
        with torch.no_grad():
            for i in range(0, len(images), batch):
                pred = self.net.logits(images[i : i + batch].to(dev, torch.float32)).argmax(1)
                self.counts += torch.bincount(pred.cpu(), minlength=len(self.counts))

    def result(self) -> tuple[dict[str, float], dict[str, str]]:
        n = int(self.counts.sum())
        if n == 0:
            return {}, {}
        share = self.counts.double() / n
        flavor = f"{self.net.flavor}-classifier/N={n}/classes={len(self.counts)}"
        metrics = {"class_share_min": float(share.min()), "class_share_max": float(share.max())}
        return metrics, dict.fromkeys(metrics, flavor)
