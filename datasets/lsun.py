"""``lsun``: LSUN categories (Yu et al. 2015) exported to image folders, with LIA's sizes.

LSUN ships as LMDB databases; this plugin reads the image folders that LSUN's own
``data.py export`` writes (``<out>/<k0>/<k1>/<k2>/<key>.webp``, or flat with ``--flat``),
one folder per category under the root: ``bedroom/`` (also accepted: ``bedroom_train/``,
``bedroom_train_lmdb/``), ``cat/``, ``car/``, ``church/`` (or ``church_outdoor…``).
File order is the sorted path, i.e. the LMDB key order.

LIA (Zhu et al., §5): "0.1 million images ... from the first 0.5 million", bedroom and cat
at 128x128, car at 128x96; tested on LSUN's validation set. Here the train split is the
first ``n_train`` (100,000) images in key order — LIA's ranking-based selection is not
reproducible — and the test split is ``<category>_val/`` when present (bedroom has a
300-image validation set), else the last ``n_test`` images. ``fit: pad`` letterboxes cars
to a square (128x96 content); the default ``crop`` centre-crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from invbench.config import MAX_SAMPLES, bounded
from invbench.data import FileDataConfig, FileDataset, ImageRef, list_images, split_counts
from invbench.errors import DataError
from invbench.registry import DATASETS

ALIASES = {"church": ("church", "church_outdoor")}


@DATASETS.register("lsun")
class LSUN(FileDataset):
    scale = "paper"  # LIA §7 / InvGAN §4 data: runs use the paper profile by default
    expected = (
        "Expected under the root one exported image folder per category (LSUN's "
        "`data.py export`): bedroom/ (or bedroom_train/, bedroom_train_lmdb/), cat/, car/, "
        "church/ (or church_outdoor_train/), each holding .webp/.jpg/.png files at any depth; "
        "optionally <category>_val/ for the test split."
    )

    @dataclass
    class Config(FileDataConfig):
        category: Literal["bedroom", "cat", "car", "church"] = "bedroom"
        resolution: int = bounded(128, ge=8, le=4096)  # LIA §5: 128x128 (car: 128x96, see fit)
        n_train: int = bounded(100_000, ge=1, le=MAX_SAMPLES * 10)  # LIA §5: 0.1 million images
        # used when there is no <category>_val/ (bedroom_val has 300)
        n_test: int = bounded(300, ge=1, le=MAX_SAMPLES)

        def validate(self) -> None:
            super().validate()
            if self.n_train < 1 or self.n_test < 1:
                raise ValueError("n_train and n_test must be positive")

    def _find(self, root: Path, suffixes: tuple[str, ...]) -> Path | None:
        for base in ALIASES.get(self.cfg.category, (self.cfg.category,)):
            for s in suffixes:
                if (root / f"{base}{s}").is_dir():
                    return root / f"{base}{s}"
        return None

    def refs(self) -> tuple[list[ImageRef], list[ImageRef]]:
        root = self.root()
        train_dir = self._find(root, ("", "_train", "_train_lmdb"))
        if train_dir is None:
            raise DataError(
                f"dataset 'lsun': no folder for category '{self.cfg.category}' in {root}. "
                f"{self.expected}"
            )
        refs = list_images(train_dir)
        if not refs:
            raise DataError(f"dataset 'lsun': {train_dir} holds no images. {self.expected}")
        val_dir = self._find(root, ("_val", "_val_lmdb"))
        if val_dir is not None:
            test = list_images(val_dir)[: self.cfg.n_test]
            if not test:
                raise DataError(f"dataset 'lsun': {val_dir} holds no images.")
            return refs[: self.cfg.n_train], test
        n_train, n_test = split_counts(len(refs), self.cfg.n_train, self.cfg.n_test)
        if n_test == 0:
            raise DataError(f"dataset 'lsun': {train_dir} holds 1 image; need at least 2.")
        return refs[:n_train], refs[len(refs) - n_test :]
