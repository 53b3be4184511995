"""Reference statistics of the distribution metrics (FID, KID): the train split, or a real image
folder, summarised once by the feature network and cached as an artifact keyed by the content
hash of (split, dataset, feature network, preprocessing, N).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud

from invbench import artifacts
from invbench.metrics.distribution import RunningStats
from invbench.metrics.features import FeatureNet

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
    payload = {
        "split": split,
        "data": data_fp,
        "net": net.key,
        "prep": PREPROCESS,
        "n": n_images,
        "kid_max": kid_max,
        "v": REF_VERSION,
    }

    def build(key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        stats = RunningStats()
        kept: list[torch.Tensor] = []
        n_kept = 0
        for x in batches:
            f = net.features(x).cpu()
            stats.update(f)
            if n_kept < kid_max:
                kept.append(f[: kid_max - n_kept])
                n_kept += len(kept[-1])
        tensors = {
            "mu": torch.from_numpy(stats.mean()),
            "sigma": torch.from_numpy(stats.cov()),
            "feats": torch.cat(kept),
        }
        return tensors, {"split": split, "net": net.flavor, "n": n_images}

    t = artifacts.cached("refstats", payload, build).tensors
    return Reference(t["mu"].numpy(), t["sigma"].numpy(), t["feats"].numpy(), n_images, split)
