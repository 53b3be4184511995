"""Out-of-distribution probes on top of ``digits`` (ICLR 2020 latent-space study §5.3; Creswell's
unseen-alphabet test): the train split is digits' own — so generators and encoders trained on
digits are reused from the cache — and only the test split is replaced:

- ``digits-shifted``: the test digits translated by ``shift`` pixels (right and down), the
  uncovered border filled with background (-1);
- ``uniform-noise``: i.i.d. uniform noise images in [-1, 1];
- ``natural-patches``: grey-scale crops of the photographs bundled with scikit-image
  (camera, coins, moon, text, page, horse, clock, brick, grass, gravel), resized to the digits'
  resolution — images of another dataset, no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from invbench.config import MAX_SEED, bounded
from invbench.data import Dataset, Splits
from invbench.datasets.digits import Digits
from invbench.registry import DATASETS

PHOTOS = ("camera", "coins", "moon", "text", "page", "horse", "clock", "brick", "grass", "gravel")


class _DigitsProbe(Dataset):
    """Digits' train split, a replaced test split."""

    def _digits(self) -> Digits:
        c = self.cfg
        return Digits(
            Digits.Config(resolution=c.resolution, n_test=c.n_test, split_seed=c.split_seed)
        )

    def train_fingerprint(self) -> dict[str, Any]:
        return self._digits().fingerprint()

    def probe(self, base: Splits, rng: np.random.RandomState) -> torch.Tensor:
        raise NotImplementedError

    def load(self) -> Splits:
        base = self._digits().load()
        test = self.probe(base, np.random.RandomState(self.cfg.probe_seed)).clamp(-1, 1).float()
        return Splits(
            base.train, test.contiguous(), base.train_labels, None, base.num_classes
        ).validate(self.name)


@dataclass
class _ProbeConfig:
    resolution: int = bounded(32, ge=8, le=4096)
    n_test: int = bounded(297, ge=1, le=1796)
    split_seed: int = bounded(0, ge=0, le=MAX_SEED)
    probe_seed: int = bounded(0, ge=0, le=MAX_SEED)

    def validate(self) -> None:
        Digits.Config(self.resolution, self.n_test, self.split_seed).validate()


@DATASETS.register("digits-shifted")
class DigitsShifted(_DigitsProbe):
    @dataclass
    class Config(_ProbeConfig):
        shift: int = bounded(2, ge=0, le=4096)  # pixels at the dataset's resolution, right and down

        def validate(self) -> None:
            super().validate()
            if not 0 <= self.shift < self.resolution:
                raise ValueError("shift must be between 0 and resolution - 1")

    def probe(self, base: Splits, rng: np.random.RandomState) -> torch.Tensor:
        s = self.cfg.shift
        out = torch.full_like(base.test, -1.0)
        out[..., s:, s:] = base.test[..., : base.test.shape[-2] - s, : base.test.shape[-1] - s]
        return out


@DATASETS.register("uniform-noise")
class UniformNoise(_DigitsProbe):
    Config = _ProbeConfig

    def probe(self, base: Splits, rng: np.random.RandomState) -> torch.Tensor:
        shape = (self.cfg.n_test, *base.test.shape[1:])
        return torch.from_numpy(rng.uniform(-1, 1, size=shape).astype(np.float32))


@DATASETS.register("natural-patches")
class NaturalPatches(_DigitsProbe):
    @dataclass
    class Config(_ProbeConfig):
        # side of the square crop taken from a photograph before resizing
        crop: int = bounded(96, ge=1, le=4096)

    def probe(self, base: Splits, rng: np.random.RandomState) -> torch.Tensor:
        import skimage.data

        photos = [np.asarray(getattr(skimage.data, n)(), dtype=np.float32) / 255.0 for n in PHOTOS]
        c, r = self.cfg.crop, self.cfg.resolution
        crops = []
        for i in range(self.cfg.n_test):
            img = photos[i % len(photos)]
            y = rng.randint(0, img.shape[0] - c + 1)
            x = rng.randint(0, img.shape[1] - c + 1)
            crops.append(img[y : y + c, x : x + c])
        t = torch.from_numpy(np.stack(crops))[:, None]
        t = F.interpolate(t, size=r, mode="area")
        return (t * 2 - 1).expand(-1, base.test.shape[1], -1, -1)
