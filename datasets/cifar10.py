"""``cifar10``: CIFAR-10 (Krizhevsky 2009), the official 50,000 / 10,000 split, 32x32 RGB.

Read from ``<root>/cifar-10-batches-py/`` (the pickled batches ``data_batch_1`` …
``data_batch_5``, ``test_batch`` and ``batches.meta``; torchvision's file list and MD5s). Each
file's MD5 is checked against the published one unless ``verify: false``; a mismatch names the
file. The batches are pickles, so they are read with ``invbench.safe_pickle`` (numpy arrays,
lists and strings only: a forged batch cannot run code), not with torchvision's ``pickle.load``.
``--set download=true`` lets torchvision fetch the archive. Labels 0-9 are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invbench import safe_pickle
from invbench.data import Dataset, Splits
from invbench.datasets._torchvision import TorchvisionConfig, construct, resolve_root, to_images
from invbench.errors import DataError
from invbench.registry import DATASETS

FOLDER = "cifar-10-batches-py"


@DATASETS.register("cifar10")
class CIFAR10(Dataset):
    @dataclass
    class Config(TorchvisionConfig):
        verify: bool = True  # check each file's MD5 against torchvision's published values

    def load(self) -> Splits:
        from torchvision.datasets import CIFAR10 as TV
        from torchvision.datasets.utils import check_integrity  # an MD5, no unpickling

        files = [*TV.train_list, *TV.test_list, [TV.meta["filename"], TV.meta["md5"]]]
        expected = (
            f"Expected <root>/{FOLDER}/ holding {', '.join(f for f, _ in files)} (the python "
            "version of CIFAR-10, extracted), or --set download=true where the network allows."
        )
        root = resolve_root(self.name, self.cfg, expected)
        if self.cfg.download:
            from torchvision.datasets.utils import download_and_extract_archive

            # The archive only (MD5-checked); its batches are read below, never by pickle.load.
            construct(
                self.name,
                lambda: download_and_extract_archive(TV.url, str(root), md5=TV.tgz_md5),
                expected,
            )
        folder = Path(root) / FOLDER
        missing = [f for f, _ in files if not (folder / f).is_file()]
        if missing:
            raise DataError(
                f"dataset 'cifar10': missing {', '.join(str(folder / f) for f in missing)}. "
                f"{expected}"
            )
        if self.cfg.verify:
            bad = [f for f, md5 in files if not check_integrity(str(folder / f), md5)]
            if bad:
                raise DataError(
                    f"dataset 'cifar10': MD5 mismatch for {', '.join(str(folder / f) for f in bad)}"
                    " (corrupt or not the official files). Re-extract them, or --set verify=false "
                    "to read them anyway."
                )

        parts = []
        for batches in (TV.train_list, TV.test_list):
            data, labels = [], []
            for fname, _ in batches:
                batch = _read_batch(folder / fname)
                data.append(batch["data"])
                labels += batch["labels"]
            x = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            parts.append((to_images(x, self.cfg.resolution), torch.as_tensor(labels)))
        (xtr, ytr), (xte, yte) = parts
        return Splits(xtr, xte, ytr.long(), yte.long(), num_classes=10).validate(self.name)


def _read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR-10 python batch: ``data`` (N x 3072 uint8) and ``labels``, read safely."""

    def check(obj: Any) -> None:
        if not isinstance(obj, dict):
            raise DataError(
                f"{path}: expected a CIFAR-10 batch (a dict), got {type(obj).__name__}."
            )

    raw = safe_pickle.load(path, safe_pickle.NUMPY_ARRAYS, encoding="latin1", check=check)
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in raw.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' is not an N x 3072 uint8 array; not a CIFAR-10 batch.")
    if data.shape[1] != 3072 or not isinstance(labels, list) or len(labels) != len(data):
        raise DataError(f"{path}: 'data' / 'labels' do not have CIFAR-10's shape.")
    return {"data": data, "labels": [int(v) for v in labels]}
