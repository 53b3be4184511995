"""``omniglot``: Omniglot characters (Lake et al. 2015) with the unseen-alphabet split.

Creswell & Bharath §IV-A: "The background set consists of characters from 30 writing
systems, while the test dataset consists of characters from the other 20"; the GAN is trained
on the background set and inverts characters of alphabets it never saw. So the train split is
``images_background`` (30 alphabets, 19,280 images) and the test split ``images_evaluation``
(20 alphabets, 13,180 images), read by ``torchvision.datasets.Omniglot`` from
``<root>/omniglot-py/`` (or from the root itself when it holds the two folders). torchvision
checks the MD5 of the *zips*; extracted folders without their zips are accepted here.
Grey 105x105 images (black strokes on white; ``invert: true`` for white on black) are resized
with antialiasing. Labels are the character index within each split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from invbench.data import Dataset, Splits
from invbench.datasets._torchvision import TorchvisionConfig, construct, resolve_root, to_images
from invbench.errors import DataError
from invbench.registry import DATASETS

FOLDERS = ("images_background", "images_evaluation")


@DATASETS.register("omniglot")
class Omniglot(Dataset):
    @dataclass
    class Config(TorchvisionConfig):
        invert: bool = False  # True: white strokes on black, like MNIST

    def load(self) -> Splits:
        import numpy as np
        from torchvision.datasets import Omniglot as TV

        expected = (
            "Expected <root>/omniglot-py/images_background/<alphabet>/<character>/*.png and "
            "<root>/omniglot-py/images_evaluation/… (the extracted official zips), or "
            "--set download=true where the network allows."
        )
        root = Path(resolve_root(self.name, self.cfg, expected))
        if self.cfg.download:
            for bg in (True, False):
                construct(
                    self.name, lambda bg=bg: TV(str(root), background=bg, download=True), expected
                )
        sub = TV.folder if (root / TV.folder).is_dir() else ""
        missing = [str(root / sub / f) for f in FOLDERS if not (root / sub / f).is_dir()]
        if missing:
            raise DataError(f"dataset 'omniglot': missing {', '.join(missing)}. {expected}")

        class _Extracted(TV):  # the folders exist; torchvision would demand the zips too
            folder = sub

            def _check_integrity(self) -> bool:
                return True

        parts = []
        for bg in (True, False):
            ds = construct(self.name, lambda bg=bg: _Extracted(str(root), background=bg), expected)
            if len(ds) == 0:
                raise DataError(f"dataset 'omniglot': {root / sub / FOLDERS[1 - bg]} has no .png.")
            try:
                pairs = [(np.asarray(img.convert("L"), dtype=np.uint8), y) for img, y in ds]
            except OSError as e:
                raise DataError(f"dataset 'omniglot': cannot decode an image ({e}).") from None
            imgs, labels = zip(*pairs, strict=True)
            x = np.stack(imgs)
            parts.append((to_images(255 - x if self.cfg.invert else x, self.cfg.resolution),
                          torch.tensor(labels)))  # fmt: skip
        (xtr, ytr), (xte, yte) = parts
        return Splits(xtr, xte, ytr, yte).validate(self.name)
