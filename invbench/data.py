"""The dataset interface: a train / test split of images in [-1, 1], NCHW float32.

Small datasets return ``Splits``: both splits as tensors in memory. Image collections that may
not fit in memory (FFHQ, CelebA, LSUN, a user's folder) return ``LazySplits``: two lists of
image files (or zip members) decoded and resized on demand through a DataLoader (worker
processes; pinned memory when the consumer is on CUDA). Both offer one interface:

    splits.channels, splits.resolution, splits.n_train, splits.n_test
    splits.take("test", n)                       # the first n images as a tensor (0 = all)
    splits.loader("test", batch_size, device, n) # batches in file order, for streaming
    splits.train, splits.test                    # whole splits as tensors (Splits' fields)

``LazySplits.train`` / ``.test`` materialise the split once (cached) and refuse with a
``DataError`` when it would exceed ``max_in_memory_gb``: code that reads whole splits keeps
working on datasets that fit, and says what to stream when they do not.

Training reads the train split through ``splits.train_images()``: the tensor when it fits in
memory, else a ``Streamed`` view that decodes exactly the images a step indexes, through a
DataLoader. Both are indexed the same way (``data[idx]``, ``len(data)``, ``data.to(device)``),
so a training loop gives the same weights from either.

Every image file (datasets, ``eval-images`` folders) is decoded by one reader, ``open_image``:
any format Pillow reads, with symlink loops and decompression bombs refused by name.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.utils.data as tud

from invbench.config import bounded
from invbench.errors import DataError

DATA_ENV = "INVBENCH_DATA"
AUTO_WORKERS_FROM = 512  # below this many images a DataLoader worker costs more than it saves


@dataclass
class Splits:
    """What a dataset plugin returns. Labels are kept for class-aware metrics and probes."""

    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    num_classes: int | None = None
    lazy: ClassVar[bool] = False

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train.shape[-1])

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_test(self) -> int:
        return len(self.test)

    def take(self, split: str, n: int = 0) -> torch.Tensor:
        """The first ``n`` images of ``split`` ("train" or "test"); all of them when n is 0."""
        x = self.train if _split_name(split) == "train" else self.test
        return x if n <= 0 or n >= len(x) else x[:n]

    def loader(
        self, split: str, batch_size: int, device: str | torch.device = "cpu", n: int = 0
    ) -> tud.DataLoader:
        """Batches of the first ``n`` images of ``split`` in order (same API as LazySplits)."""
        return tud.DataLoader(
            _TensorImages(self.take(split, n)), batch_size=batch_size, shuffle=False
        )

    def train_images(self) -> torch.Tensor:
        """The train split for training loops (in memory: the tensor itself)."""
        return self.train

    def validate(self, name: str) -> Splits:
        for split, x in (("train", self.train), ("test", self.test)):
            _check_batch(name, split, x)
        return self


def _split_name(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def _check_batch(name: str, split: str, x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise DataError(
            f"dataset '{name}': {split} split must be N x C x H x H, got {tuple(x.shape)}."
        )
    if len(x) == 0:
        raise DataError(f"dataset '{name}': the {split} split is empty.")
    if not torch.isfinite(x).all():
        raise DataError(f"dataset '{name}': {split} split contains NaN or inf values.")
    if x.min() < -1.0001 or x.max() > 1.0001:
        raise DataError(f"dataset '{name}': {split} images must lie in [-1, 1].")


class _TensorImages(tud.Dataset):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


class Dataset:
    """A dataset plugin: a ``Config`` dataclass and ``load() -> Splits | LazySplits``."""

    name: ClassVar[str]
    Config: ClassVar[type]
    #: The scale profile a run on it uses unless ``--profile`` says otherwise
    #: (``invbench.config``): "digits", or "paper" for the papers' own datasets (FFHQ, LSUN).
    scale: ClassVar[str] = "digits"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def load(self) -> Splits:  # pragma: no cover - interface
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this dataset's content for cache keys."""
        from invbench.config import as_dict

        return {"dataset": self.name, **as_dict(self.cfg)}

    def source(self) -> dict[str, Any]:
        """Where the images come from and at what size (the record's ``data_source``); {} for
        datasets made in memory."""
        return {}

    def train_fingerprint(self) -> dict[str, Any]:
        """What identifies the train split: the cache key of generators and fitted methods.

        Probe datasets that only replace the test split return their base dataset's, so models
        trained on the base are reused.
        """
        return self.fingerprint()


# -- image files: listing, decoding, resizing --------------------------------------------------------
def image_extensions() -> tuple[str, ...]:
    """Every file extension Pillow can open here (PNG, JPEG, WebP, BMP, TIFF, GIF, ...)."""
    from PIL import Image

    Image.init()
    return tuple(
        sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)
    )


@dataclass(frozen=True)
class ImageRef:
    """One image: a file on disk, or a ``member`` of the zip archive at ``path``."""

    path: str
    member: str = ""
    name: str = ""  # path relative to the dataset root (for messages and fingerprints)
    size: int = 0  # bytes, for the content fingerprint

    @property
    def where(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


def _file_size(path: str) -> int:
    """``os.stat`` size, with a symlink loop (or a dangling link) named instead of a traceback."""
    try:
        return os.stat(path).st_size
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(
                f"{path}: a symlink loop (the link leads back to itself). Remove the link or "
                "point it at a real image."
            ) from None
        raise DataError(
            f"{path}: cannot read it ({e.strerror}). Remove it or fix the link."
        ) from None


def list_images(root: Path, under: str = "", recursive: bool = True) -> list[ImageRef]:
    """Every image below directory ``root`` (recursively, or only its top level) or inside zip
    ``root``, sorted by path. For a zip, ``under`` keeps only members below that folder."""
    root = Path(root)
    exts = image_extensions()
    if root.is_file() and zipfile.is_zipfile(root):
        with zipfile.ZipFile(root) as zf:
            infos = [
                i
                for i in zf.infolist()
                if not i.is_dir()
                and i.filename.lower().endswith(exts)
                and i.filename.startswith(under)
                and "__MACOSX" not in i.filename
            ]
        return [
            ImageRef(str(root), i.filename, i.filename, i.file_size)
            for i in sorted(infos, key=lambda i: i.filename)
        ]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if not recursive:
            dirnames.clear()
        for f in sorted(filenames):
            if f.lower().endswith(exts) and not f.startswith("."):
                p = os.path.join(dirpath, f)
                out.append(ImageRef(p, "", os.path.relpath(p, root), _file_size(p)))
    out.sort(key=lambda r: r.name)
    return out


_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def _read_bytes(ref: ImageRef) -> bytes:
    if not ref.member:
        _file_size(ref.path)  # a symlink loop is named, not reported as a bare OSError
        with open(ref.path, "rb") as f:
            return f.read()
    key = (os.getpid(), ref.path)  # one handle per process: DataLoader workers must not share
    zf = _ZIPS.get(key)
    if zf is None:
        zf = _ZIPS[key] = zipfile.ZipFile(ref.path)
    return zf.read(ref.member)


def open_image(ref: ImageRef | Path | str) -> Any:
    """The one image reader: a decoded ``PIL.Image`` of any format Pillow reads.

    Refused with a ``DataError`` naming the file (exit 2): a symlink loop, an image above
    Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``; Pillow only warns between
    1x and 2x the limit, here both are refused), and anything Pillow cannot decode.
    """
    from PIL import Image

    if not isinstance(ref, ImageRef):
        ref = ImageRef(str(ref))
    blob = _read_bytes(ref)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(blob))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(
            f"{ref.where}: refused as a possible decompression bomb ({e}). If it is a real "
            "image, downscale it first."
        ) from None
    except Exception as e:  # PIL raises many types for truncated / foreign files
        raise DataError(
            f"cannot decode image {ref.where} ({e}). Remove or replace the file."
        ) from None
    return img


Fit = Literal["crop", "pad"]


def load_image(ref: ImageRef, resolution: int, channels: int, fit: Fit = "crop", crop: int = 0):
    """Decode, square (centre ``crop`` / largest centred square, or pad), resize; [-1, 1] CHW."""
    import numpy as np
    from PIL import Image

    img = open_image(ref).convert("RGB" if channels == 3 else "L")
    w, h = img.size
    if crop:
        c = min(crop, w, h)
        img = img.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c))
    elif fit == "crop" and w != h:
        c = min(w, h)
        img = img.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c))
    elif fit == "pad" and w != h:  # letterbox: keep the aspect ratio, pad with black
        c = max(w, h)
        canvas = Image.new(img.mode, (c, c))
        canvas.paste(img, ((c - w) // 2, (c - h) // 2))
        img = canvas
    if img.size != (resolution, resolution):
        # Lanczos, as NVIDIA's dataset_tool resizes FFHQ / LSUN for StyleGAN2.
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    t = torch.from_numpy(a.copy())
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


class ImageFiles(tud.Dataset):
    """A list of image files decoded lazily to C x R x R tensors in [-1, 1]."""

    def __init__(
        self,
        refs: Sequence[ImageRef],
        resolution: int,
        channels: int = 3,
        fit: Fit = "crop",
        crop: int = 0,
    ) -> None:
        self.refs = list(refs)
        self.resolution, self.channels, self.fit, self.crop = resolution, channels, fit, crop

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_image(self.refs[i], self.resolution, self.channels, self.fit, self.crop)


@dataclass
class LazySplits:
    """Train / test image lists read through a DataLoader; the streaming twin of ``Splits``."""

    train_set: ImageFiles
    test_set: ImageFiles
    workers: int = -1  # -1: min(8, CPUs) for AUTO_WORKERS_FROM images or more, else 0
    max_in_memory_gb: float = 4.0
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    num_classes: int | None = None
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    lazy: ClassVar[bool] = True

    @property
    def channels(self) -> int:
        return self.train_set.channels

    @property
    def resolution(self) -> int:
        return self.train_set.resolution

    @property
    def n_train(self) -> int:
        return len(self.train_set)

    @property
    def n_test(self) -> int:
        return len(self.test_set)

    def _set(self, split: str) -> ImageFiles:
        return self.train_set if _split_name(split) == "train" else self.test_set

    def loader(
        self,
        split: str,
        batch_size: int,
        device: str | torch.device = "cpu",
        n: int = 0,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> tud.DataLoader:
        """Batches of ``split`` (its first ``n`` images when n > 0), decoded by workers."""
        ds: tud.Dataset = self._set(split)
        if 0 < n < len(ds):  # type: ignore[arg-type]
            ds = tud.Subset(ds, range(n))
        size = len(ds)  # type: ignore[arg-type]
        workers = self.workers
        if workers < 0:
            workers = min(8, os.cpu_count() or 1) if size >= AUTO_WORKERS_FROM else 0
        return tud.DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=workers,
            pin_memory=torch.device(device).type == "cuda",
            persistent_workers=False,
        )

    def bytes_needed(self, split: str, n: int = 0) -> int:
        count = len(self._set(split))
        count = min(n, count) if n > 0 else count
        return count * self.channels * self.resolution**2 * 4

    def take(self, split: str, n: int = 0) -> torch.Tensor:
        """The first ``n`` images of ``split`` as one tensor (all when n is 0), memory-checked."""
        count = len(self._set(split))
        if split in self._cache and (n <= 0 or n >= count):
            return self._cache[split]
        need = self.bytes_needed(split, n)
        if need > self.max_in_memory_gb * 2**30:
            raise DataError(
                f"the {split} split ({count} images at {self.resolution}x{self.resolution}) "
                f"needs {need / 2**30:.1f} GiB as one tensor, more than max_in_memory_gb="
                f"{self.max_in_memory_gb}. Use fewer images (e.g. --set eval.n_test=1000), "
                "a lower resolution, or raise --set dataset.max_in_memory_gb=...; code that "
                "reads whole splits should stream them with splits.loader(split, batch_size)."
            )
        x = torch.cat(list(self.loader(split, 64, n=n)))
        if n <= 0 or n >= count:
            self._cache[split] = x
        return x

    def train_images(self) -> torch.Tensor | Streamed:
        """The train split for training loops: one tensor when it fits in ``max_in_memory_gb``,
        else a ``Streamed`` view decoding the images each step indexes."""
        if self.bytes_needed("train") <= self.max_in_memory_gb * 2**30:
            return self.take("train")
        return Streamed(self.train_set, self.workers)

    @property
    def train(self) -> torch.Tensor:
        return self.take("train")

    @property
    def test(self) -> torch.Tensor:
        return self.take("test")

    def validate(self, name: str) -> LazySplits:
        """Check both splits are non-empty and that their first image decodes to the contract."""
        for split, ds in (("train", self.train_set), ("test", self.test_set)):
            if len(ds) == 0:
                raise DataError(f"dataset '{name}': the {split} split has no images.")
            _check_batch(name, split, ds[0][None])
        return self


class Streamed:
    """A split too large for memory, indexed like the tensor it stands for.

    ``data[idx]`` (an index tensor, a slice or an int) decodes exactly those images, in that
    order, through a DataLoader (``workers`` processes for large batches) and returns them on
    ``device``; ``len(data)``, ``data.shape`` and ``data.to(device)`` behave as for a tensor. A
    training loop that draws its indices from its own generator thus sees the same images, and
    trains the same weights, as from the in-memory split.
    """

    def __init__(self, images: ImageFiles, workers: int = -1, device: str | torch.device = "cpu"):
        self.images, self.workers, self.device = images, workers, torch.device(device)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> torch.Size:
        r = self.images.resolution
        return torch.Size((len(self.images), self.images.channels, r, r))

    def to(self, device: str | torch.device, *args: Any, **kwargs: Any) -> Streamed:
        return Streamed(self.images, self.workers, device)

    def __getitem__(self, idx: torch.Tensor | slice | int) -> torch.Tensor:
        if isinstance(idx, int):
            return self[[idx]][0]
        if isinstance(idx, slice):
            order = list(range(len(self)))[idx]
        else:
            order = torch.as_tensor(idx).cpu().reshape(-1).tolist()
        workers = self.workers
        if workers < 0:
            workers = min(8, os.cpu_count() or 1) if len(order) >= AUTO_WORKERS_FROM else 0
        per_worker = -(-len(order) // max(1, workers))  # one chunk per worker decodes in parallel
        loader = tud.DataLoader(
            tud.Subset(self.images, order), batch_size=max(1, per_worker), num_workers=workers
        )
        out = torch.cat(list(loader)) if order else torch.empty(0, *self.shape[1:])
        return out.to(self.device)


# -- file-based dataset plugins ---------------------------------------------------------------------
@dataclass
class FileDataConfig:
    """Options every image-file dataset shares (defaults in one place)."""

    root: str = ""  # "" = $INVBENCH_DATA/<dataset name>
    resolution: int = bounded(64, ge=8, le=4096)
    fit: Fit = "crop"  # non-square images: centre-crop to a square, or pad (letterbox)
    workers: int = bounded(-1, ge=-1, le=1024)  # DataLoader workers; -1 = automatic
    max_in_memory_gb: float = bounded(4.0, gt=0, le=1e5)  # largest split materialised as one tensor

    def validate(self) -> None:
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError("resolution must be a power of two >= 8")
        if self.workers < -1:
            raise ValueError("workers must be >= 0, or -1 for automatic")
        if self.max_in_memory_gb <= 0:
            raise ValueError("max_in_memory_gb must be positive")


def data_root(name: str, root: str, expected: str) -> Path:
    """The dataset's root directory (or zip): ``root`` if given, else $INVBENCH_DATA/<name>."""
    if root:
        path = Path(root).expanduser()
        how = "--set root"
    elif os.environ.get(DATA_ENV):
        path = Path(os.environ[DATA_ENV]).expanduser() / name
        how = f"${DATA_ENV}/{name}"
    else:
        raise DataError(
            f"dataset '{name}': no data root. Pass --set root=/path/to/{name}, or set "
            f"{DATA_ENV}=/data so that /data/{name} holds it. {expected}"
        )
    if not path.exists():
        raise DataError(f"dataset '{name}': root {path} (from {how}) does not exist. {expected}")
    return path


def split_counts(total: int, n_train: int, n_test: int) -> tuple[int, int]:
    """(train, test) sizes: the paper's when there are enough files, else scaled to ``total``.

    A partial or miniature copy keeps the paper's test fraction n_test / (n_train + n_test)
    (at least one test image, at least one train image); the test images are always the last.
    """
    if total >= n_train + n_test:
        return n_train, n_test
    if total < 2:
        return total, 0
    test = min(total - 1, max(1, round(total * n_test / (n_train + n_test))))
    return total - test, test


def refs_fingerprint(refs: Sequence[ImageRef]) -> str:
    """A content key from relative names and sizes: cheap (no decoding), moves with the data."""
    h = hashlib.sha256()
    for r in refs:
        h.update(f"{r.name}\0{r.size}\n".encode())
    return h.hexdigest()[:16]


class FileDataset(Dataset):
    """Base of image-file datasets: subclasses return their (train, test) image lists."""

    expected: ClassVar[str] = ""  # the on-disk layout, quoted in every "not found" message
    source_folder: str = ""  # set by ``refs`` where it picks one of several layouts

    def root(self) -> Path:
        return data_root(self.name, self.cfg.root, self.expected)

    def refs(self) -> tuple[list[ImageRef], list[ImageRef]]:  # pragma: no cover - interface
        raise NotImplementedError

    def _refs(self) -> tuple[list[ImageRef], list[ImageRef]]:
        if not hasattr(self, "_refs_cache"):
            self._refs_cache = self.refs()
        return self._refs_cache

    def image_files(self, refs: Sequence[ImageRef]) -> ImageFiles:
        crop = int(getattr(self.cfg, "crop", 0))
        return ImageFiles(refs, self.cfg.resolution, 3, self.cfg.fit, crop)

    def load(self) -> LazySplits:  # type: ignore[override]
        train, test = self._refs()
        return LazySplits(
            self.image_files(train),
            self.image_files(test),
            workers=self.cfg.workers,
            max_in_memory_gb=self.cfg.max_in_memory_gb,
        ).validate(self.name)

    def source(self) -> dict[str, Any]:
        """The folder (or zip) the images were read from and the side of the squares they give
        before resizing (the smallest of the first few); ``upscaled`` when the requested
        resolution is above it, which is said in the log too: no silent upscaling."""
        from PIL import Image

        train, test = self._refs()
        refs = (train + test)[:8]
        folder = self.source_folder  # the layout a subclass chose (e.g. FFHQ's thumbnails)
        if not folder:
            dirs = {r.path if r.member else os.path.dirname(r.path) for r in train + test}
            folder = os.path.commonpath(sorted(dirs)) if dirs else ""
        crop, sides = int(getattr(self.cfg, "crop", 0)), []
        for r in refs:
            with Image.open(io.BytesIO(_read_bytes(r))) as img:  # the header only
                w, h = img.size
            side = min(crop, w, h) if crop else max(w, h) if self.cfg.fit == "pad" else min(w, h)
            sides.append(side)
        native = min(sides) if sides else 0
        out = {"folder": folder, "native_resolution": native, "resolution": self.cfg.resolution}
        out["upscaled"] = bool(native and native < self.cfg.resolution)
        if out["upscaled"]:
            from invbench.progress import log

            log(
                f"dataset '{self.name}': the images in {folder} are {native}x{native}; read at "
                f"{self.cfg.resolution}x{self.cfg.resolution} they are upscaled (no detail is "
                f"added). Use --set dataset.resolution={native} or a source of larger images."
            )
        return out

    def fingerprint(self) -> dict[str, Any]:
        from invbench.config import as_dict

        cfg = as_dict(self.cfg)
        for k in ("root", "workers", "max_in_memory_gb"):  # where / how, not what
            cfg.pop(k, None)
        train, test = self._refs()
        return {
            "dataset": self.name,
            **cfg,
            "files": refs_fingerprint(train) + refs_fingerprint(test),
            "n": [len(train), len(test)],
        }


NUMBERED = re.compile(r"(\d+)\.(png|jpe?g|webp)$", re.IGNORECASE)
