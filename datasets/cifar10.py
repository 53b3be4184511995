"""``cifar10``: CIFAR-10 (Krizhevsky 2009), the official 50,000 / 10,000 split, 32x32 RGB.

Read by ``torchvision.datasets.CIFAR10`` from ``<root>/cifar-10-batches-py/`` (the pickled
batches ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and ``batches.meta``). Each
file's MD5 is checked against the published one (torchvision's values) unless
``verify: false``; a mismatch names the file. Labels 0-9 are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

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
        from torchvision.datasets.utils import check_integrity

        files = [*TV.train_list, *TV.test_list, [TV.meta["filename"], TV.meta["md5"]]]
        expected = (
            f"Expected <root>/{FOLDER}/ holding {', '.join(f for f, _ in files)} (the python "
            "version of CIFAR-10, extracted), or --set download=true where the network allows."
        )
        root = resolve_root(self.name, self.cfg, expected)
        if self.cfg.download:
            construct(self.name, lambda: TV(str(root), train=True, download=True), expected)
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

        class _Checked(TV):  # integrity was checked above (or waived by verify: false)
            def _check_integrity(self) -> bool:
                return True

            def _load_meta(self) -> None:
                import pickle

                with open(folder / TV.meta["filename"], "rb") as f:
                    self.classes = pickle.load(f, encoding="latin1")[TV.meta["key"]]

        parts = []
        for train in (True, False):
            ds = construct(
                self.name, lambda train=train: _Checked(str(root), train=train), expected
            )
            parts.append((to_images(ds.data, self.cfg.resolution), torch.as_tensor(ds.targets)))
        (xtr, ytr), (xte, yte) = parts
        return Splits(xtr, xte, ytr.long(), yte.long(), num_classes=10).validate(self.name)
