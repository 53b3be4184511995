"""The dataset interface: a train / test split of images in [-1, 1], NCHW float32."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass
class Splits:
    """What a dataset plugin returns. Labels are kept for class-aware metrics and probes."""

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    num_classes: int | None = None

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train.shape[-1])

    def validate(self, name: str) -> Splits:
        from invbench.errors import DataError

        for split, x in (("train", self.train), ("test", self.test)):
            if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
                raise DataError(
                    f"dataset '{name}': {split} split must be N x C x H x H, got {tuple(x.shape)}."
                )
            if not torch.isfinite(x).all():
                raise DataError(f"dataset '{name}': {split} split contains NaN or inf values.")
            if x.min() < -1.0001 or x.max() > 1.0001:
                raise DataError(f"dataset '{name}': {split} images must lie in [-1, 1].")
        return self


class Dataset:
    """A dataset plugin: a ``Config`` dataclass and ``load() -> Splits``."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def load(self) -> Splits:  # pragma: no cover - interface
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this dataset's content for cache keys."""
        from invbench.config import as_dict

        return {"dataset": self.name, **as_dict(self.cfg)}
