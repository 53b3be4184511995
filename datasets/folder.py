"""``folder``: any folder (searched recursively) or zip of images, for users' own data.

Images (PNG, JPEG, WebP, BMP) are taken in sorted path order, made square (``fit``) and
resized with Lanczos to ``resolution``. The test split is the last ``n_test`` images, or the
last ``test_fraction`` of them when ``n_test`` is 0; the rest is the train split. With
``channels: 1`` images are converted to grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from invbench.config import MAX_SAMPLES, bounded
from invbench.data import FileDataConfig, FileDataset, ImageFiles, ImageRef, list_images
from invbench.errors import DataError
from invbench.registry import DATASETS


@DATASETS.register("folder")
class Folder(FileDataset):
    expected = "Expected: a folder holding .png/.jpg/.jpeg/.webp/.bmp images, or a .zip of them."

    @dataclass
    class Config(FileDataConfig):
        channels: int = bounded(3, ge=1, le=3)
        n_test: int = bounded(0, ge=0, le=MAX_SAMPLES)  # last n_test images; 0 = use test_fraction
        test_fraction: float = bounded(0.1, gt=0, lt=1)

        def validate(self) -> None:
            super().validate()
            if self.channels not in (1, 3):
                raise ValueError("channels must be 1 or 3")
            if self.n_test < 0 or not 0 < self.test_fraction < 1:
                raise ValueError("n_test must be >= 0 and test_fraction in (0, 1)")

    def refs(self) -> tuple[list[ImageRef], list[ImageRef]]:
        root = self.root()
        refs = list_images(root)
        if len(refs) < 2:
            raise DataError(
                f"dataset 'folder': {root} holds {len(refs)} image(s); need at least 2. "
                f"{self.expected}"
            )
        n_test = self.cfg.n_test or max(1, round(len(refs) * self.cfg.test_fraction))
        n_test = min(n_test, len(refs) - 1)
        return refs[: len(refs) - n_test], refs[len(refs) - n_test :]

    def image_files(self, refs: Sequence[ImageRef]) -> ImageFiles:
        return ImageFiles(refs, self.cfg.resolution, self.cfg.channels, self.cfg.fit)
