"""Shared by the plugins that read their files through torchvision's dataset classes.

torchvision's classes expect their own layout below a root (``MNIST/raw/…``,
``cifar-10-batches-py/…``, ``omniglot-py/…``); the plugin's root is ``--set root=`` or
``$INVBENCH_DATA/<name>``. With ``download: true`` torchvision fetches missing files (needs the
network); otherwise the files are read from the root and a missing file is a ``DataError``
naming it. The decoded uint8 images are small enough to keep in memory (``Splits``).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from invbench.config import bounded
from invbench.data import DATA_ENV, data_root
from invbench.errors import DataError


@dataclass
class TorchvisionConfig:
    root: str = ""  # "" = $INVBENCH_DATA/<dataset name>
    resolution: int = bounded(32, ge=8, le=4096)
    download: bool = False  # let torchvision download missing files (needs the network)

    def validate(self) -> None:
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError("resolution must be a power of two >= 8")


def resolve_root(name: str, cfg: TorchvisionConfig, expected: str) -> Path:
    if cfg.download:  # the root is created by the download; only its location must be known
        import os

        if not cfg.root and not os.environ.get(DATA_ENV):
            return data_root(name, cfg.root, expected)  # raises: nowhere to download to
        path = Path(cfg.root).expanduser() if cfg.root else Path(os.environ[DATA_ENV]) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return data_root(name, cfg.root, expected)


def construct(name: str, make: Callable[[], Any], expected: str) -> Any:
    """Call a torchvision constructor; turn its errors into a DataError naming the layout."""
    try:
        return make()
    except urllib.error.URLError as e:
        raise DataError(
            f"dataset '{name}': download failed ({e.reason}). Without network access, copy "
            f"the files into the root yourself. {expected}"
        ) from None
    except (RuntimeError, OSError, ValueError, AssertionError, EOFError) as e:
        raise DataError(f"dataset '{name}': cannot read the files ({e}). {expected}") from None


def to_images(x: np.ndarray | torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 images (N,H,W) or (N,H,W,C) -> float N,C,R,R in [-1, 1] (bilinear, antialiased)."""
    t = torch.as_tensor(np.asarray(x))
    t = t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)
    t = t.float() / 255.0
    if t.shape[-1] != resolution or t.shape[-2] != resolution:
        t = F.interpolate(
            t,
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=t.shape[-1] > resolution,
        )
    return (t.clamp(0, 1) * 2 - 1).contiguous()
