"""``ffhq``: Flickr-Faces-HQ (Karras et al. 2019), 70,000 aligned faces, with LIA's split.

Reads any of the official layouts under the root (``$INVBENCH_DATA/ffhq`` or ``--set root=``):
``images1024x1024/00000/00000.png`` … ``images1024x1024/69000/69999.png`` (1024²),
``thumbnails128x128/…`` (128², same names), a zip of either (``images1024x1024.zip``,
``thumbnails128x128.zip`` or any ``*.zip`` of ``NNNNN.png``), or the root itself as a zip.
``source: auto`` uses the thumbnails when ``resolution <= 128`` and the 1024² images otherwise
(falling back to whichever exists, then to a zip). Images are resized with Lanczos.

Split (LIA, Zhu et al., §5 "Datasets and Metrics"): "the first 65,000 faces as the training
set and the remaining 5,000 faces as the reconstruction test according to the exact order of
the dataset" — file order is the image number. A partial or miniature copy with N < 70,000
images keeps the test fraction 5,000 / 70,000: the last round(N / 14) images (at least one)
are the test split and the rest train (``invbench.data.split_counts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from invbench.config import MAX_SAMPLES, bounded
from invbench.data import NUMBERED, FileDataConfig, FileDataset, ImageRef, list_images, split_counts
from invbench.errors import DataError
from invbench.progress import log
from invbench.registry import DATASETS

FOLDERS = ("images1024x1024", "thumbnails128x128")


@DATASETS.register("ffhq")
class FFHQ(FileDataset):
    scale = "paper"  # LIA §7 / InvGAN §4 data: runs use the paper profile by default
    expected = (
        "Expected under the root one of: images1024x1024/00000/00000.png … "
        "images1024x1024/69000/69999.png (official 1024² layout); thumbnails128x128/00000/"
        "00000.png … (official 128² thumbnails); images1024x1024.zip or thumbnails128x128.zip "
        "(or any *.zip of NNNNN.png); or the root itself a .zip."
    )

    @dataclass
    class Config(FileDataConfig):
        resolution: int = bounded(256, ge=8, le=4096)
        source: Literal["auto", "images1024x1024", "thumbnails128x128", "zip"] = "auto"
        n_train: int = bounded(65_000, ge=1, le=MAX_SAMPLES)  # LIA §5: the first 65,000 images
        n_test: int = bounded(5_000, ge=1, le=MAX_SAMPLES)  # LIA §5: the remaining 5,000

        def validate(self) -> None:
            super().validate()
            if self.n_train < 1 or self.n_test < 1:
                raise ValueError("n_train and n_test must be positive")

    def _candidates(self, root: Path) -> list[tuple[str, Path]]:
        if root.is_file():
            return [("zip", root)]
        found = [(f, root / f) for f in FOLDERS if (root / f).is_dir()]
        if self.cfg.resolution <= 128:
            found.reverse()  # thumbnails first: no need to decode 1024² images
        zips = sorted(root.glob("*.zip"))
        zips.sort(key=lambda p: p.stem not in FOLDERS)
        return found + [("zip", z) for z in zips]

    def refs(self) -> tuple[list[ImageRef], list[ImageRef]]:
        root = self.root()
        cands = self._candidates(root)
        if self.cfg.source != "auto":
            cands = [(k, p) for k, p in cands if k == self.cfg.source]
        if not cands:
            what = "" if self.cfg.source == "auto" else f" for source={self.cfg.source}"
            raise DataError(f"dataset 'ffhq': nothing found in {root}{what}. {self.expected}")
        kind, path = cands[0]
        self.source_folder = str(path)  # recorded (data_source): which of the layouts was read
        refs = [r for r in list_images(path) if NUMBERED.search(Path(r.name).name)]
        if not refs:
            raise DataError(
                f"dataset 'ffhq': {path} holds no images named NNNNN.png. {self.expected}"
            )
        # File order is the image number (names are zero-padded, but do not rely on it).
        refs.sort(key=lambda r: int(NUMBERED.search(Path(r.name).name).group(1)))  # type: ignore[union-attr]
        n_train, n_test = split_counts(len(refs), self.cfg.n_train, self.cfg.n_test)
        if n_test == 0:
            raise DataError(f"dataset 'ffhq': {path} holds {len(refs)} image; need at least 2.")
        if len(refs) != self.cfg.n_train + self.cfg.n_test:
            log(
                f"ffhq: {len(refs)} images in {path} (the full set has 70,000): "
                f"first {n_train} train, last {n_test} test"
            )
        return refs[:n_train], refs[len(refs) - n_test :]
