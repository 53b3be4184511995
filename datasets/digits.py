"""``digits``: scikit-learn's bundled 8x8 handwritten digits, the embedded default dataset.

1,797 grey-scale images that ship inside scikit-learn (no download). Pixel values 0..16 are
scaled to [0, 1], upsampled bilinearly to ``resolution`` x ``resolution`` and mapped to
[-1, 1]. The split is fixed: a permutation of all images drawn with
``numpy.random.RandomState(split_seed)``; its first ``n_test`` indices are the test split
(297 by default, leaving 1,500 for training). Class labels 0-9 are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from invbench.config import MAX_SEED, bounded
from invbench.data import Dataset, Splits
from invbench.registry import DATASETS


@DATASETS.register("digits")
class Digits(Dataset):
    @dataclass
    class Config:
        resolution: int = bounded(32, ge=8, le=4096)
        n_test: int = bounded(297, ge=1, le=1796)
        split_seed: int = bounded(0, ge=0, le=MAX_SEED)

        def validate(self) -> None:
            if self.resolution < 8 or self.resolution & (self.resolution - 1):
                raise ValueError("resolution must be a power of two >= 8")
            if not 1 <= self.n_test < 1797:
                raise ValueError("n_test must be between 1 and 1796")

    def load(self) -> Splits:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # N,1,8,8 in [0,1]
        if self.cfg.resolution != 8:
            x = F.interpolate(x, size=self.cfg.resolution, mode="bilinear", align_corners=False)
        x = (x.clamp(0, 1) * 2 - 1).contiguous()
        y = torch.from_numpy(bunch.target.astype(np.int64))
        perm = torch.from_numpy(np.random.RandomState(self.cfg.split_seed).permutation(len(x)))
        test, train = perm[: self.cfg.n_test], perm[self.cfg.n_test :]
        return Splits(x[train], x[test], y[train], y[test], num_classes=10).validate(self.name)
