"""``celeba``: CelebA aligned faces with the official partition, or CelebA-HQ.

``variant: aligned`` (Liu et al. 2015) reads, under the root (or its ``celeba/`` subfolder,
torchvision's layout), ``img_align_celeba/000001.jpg`` … (or ``img_align_celeba.zip``) and
the official ``list_eval_partition.txt`` (lines ``000001.jpg 0``; 0 train, 1 validation,
2 test): the test split is partition 2 (19,962 images), the train split partition 0 (162,770;
plus validation with ``use_val_for_train``). Images (178x218) are centre-cropped to
``crop`` pixels (0: the largest centred square) and resized with Lanczos.

``variant: hq`` (Karras et al. 2018) reads either StarGAN v2's folders ``train/`` and ``val/``
(each e.g. ``female/``, ``male/``), or CelebAMask-HQ's ``CelebA-HQ-img/0.jpg`` …
``29999.jpg``. With the flat numbered folder the split is the official one when
``CelebA-HQ-to-CelebA-mapping.txt`` and ``list_eval_partition.txt`` are both in the root
(an HQ image is a test image when its original CelebA file is in partition 2); otherwise the
last ``hq_n_test`` images in number order are the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from invbench.config import bounded
from invbench.data import NUMBERED, FileDataConfig, FileDataset, ImageRef, list_images, split_counts
from invbench.errors import DataError
from invbench.registry import DATASETS

PARTITION = "list_eval_partition.txt"
HQ_MAP = "CelebA-HQ-to-CelebA-mapping.txt"
HQ_TOTAL = 30_000


def read_partition(path: Path) -> dict[str, int]:
    """``list_eval_partition.txt``: file name -> 0 (train), 1 (validation), 2 (test)."""
    out: dict[str, int] = {}
    for i, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(
                f"{path}:{i}: expected '<image>.jpg <0|1|2>', got {line!r}. Use the official "
                "list_eval_partition.txt of CelebA."
            )
        out[parts[0]] = int(parts[1])
    return out


def _by_number(refs: list[ImageRef]) -> list[ImageRef]:
    refs = [r for r in refs if NUMBERED.search(Path(r.name).name)]
    return sorted(refs, key=lambda r: int(NUMBERED.search(Path(r.name).name).group(1)))  # type: ignore[union-attr]


@DATASETS.register("celeba")
class CelebA(FileDataset):
    expected = (
        "Expected under the root (or root/celeba/) for variant=aligned: img_align_celeba/"
        "000001.jpg … (or img_align_celeba.zip) and list_eval_partition.txt; for variant=hq: "
        "train/ and val/ image folders (StarGAN v2), or CelebA-HQ-img/0.jpg … 29999.jpg "
        f"(CelebAMask-HQ, with {HQ_MAP} and {PARTITION} for the official split)."
    )

    @dataclass
    class Config(FileDataConfig):
        variant: Literal["aligned", "hq"] = "aligned"
        resolution: int = bounded(64, ge=8, le=4096)  # Creswell & Bharath §IV-C: 64x64 CelebA
        # centre crop (pixels) before resizing; 0 = largest centred square
        crop: int = bounded(0, ge=0, le=1 << 16)
        use_val_for_train: bool = False
        # HQ without the mapping files: last images in number order
        hq_n_test: int = bounded(2_000, ge=1, le=29_999)

        def validate(self) -> None:
            super().validate()
            if self.crop < 0 or not 1 <= self.hq_n_test < HQ_TOTAL:
                raise ValueError("crop must be >= 0 and 1 <= hq_n_test < 30000")

    def refs(self) -> tuple[list[ImageRef], list[ImageRef]]:
        root = self.root()
        if (root / "celeba").is_dir() and not (root / PARTITION).is_file():
            root = root / "celeba"  # torchvision's CelebA layout
        return self._aligned(root) if self.cfg.variant == "aligned" else self._hq(root)

    def _aligned(self, root: Path) -> tuple[list[ImageRef], list[ImageRef]]:
        part_file = root / PARTITION
        if (root / "img_align_celeba").is_dir():
            refs = list_images(root / "img_align_celeba")
        elif (root / "img_align_celeba.zip").is_file():
            refs = list_images(root / "img_align_celeba.zip")
        else:
            raise DataError(f"dataset 'celeba': no img_align_celeba/ in {root}. {self.expected}")
        if not part_file.is_file():
            raise DataError(f"dataset 'celeba': {part_file} is missing. {self.expected}")
        part = read_partition(part_file)
        by_name = {Path(r.name).name: r for r in refs}
        missing = [f for f in part if f not in by_name]
        if missing:
            raise DataError(
                f"dataset 'celeba': {len(missing)} images listed in {part_file} are not in "
                f"img_align_celeba (first: {missing[0]}). Re-extract img_align_celeba."
            )
        keep = (0, 1) if self.cfg.use_val_for_train else (0,)
        train = [by_name[f] for f in sorted(part) if part[f] in keep]
        test = [by_name[f] for f in sorted(part) if part[f] == 2]
        return train, test

    def _hq(self, root: Path) -> tuple[list[ImageRef], list[ImageRef]]:
        if (root / "train").is_dir() and (root / "val").is_dir():
            return list_images(root / "train"), list_images(root / "val")
        folder = root / "CelebA-HQ-img"
        if not folder.is_dir():
            raise DataError(
                f"dataset 'celeba' (hq): no train/ + val/ and no CelebA-HQ-img/ in {root}. "
                f"{self.expected}"
            )
        refs = _by_number(list_images(folder))
        if not refs:
            raise DataError(f"dataset 'celeba' (hq): {folder} holds no N.jpg images.")
        if (root / HQ_MAP).is_file() and (root / PARTITION).is_file():
            part = read_partition(root / PARTITION)
            orig: dict[int, str] = {}
            for line in (root / HQ_MAP).read_text().splitlines()[1:]:  # idx orig_idx orig_file
                cols = line.split()
                if len(cols) == 3:
                    orig[int(cols[0])] = cols[2]
            num = {r: int(NUMBERED.search(Path(r.name).name).group(1)) for r in refs}  # type: ignore[union-attr]
            test = [r for r in refs if part.get(orig.get(num[r], ""), 0) == 2]
            train = [r for r in refs if part.get(orig.get(num[r], ""), 0) != 2]
            return train, test
        n_train, n_test = split_counts(len(refs), HQ_TOTAL - self.cfg.hq_n_test, self.cfg.hq_n_test)
        return refs[:n_train], refs[len(refs) - n_test :]
