"""``invbench eval-images``: the benchmark's metrics between two folders of images.

Loading rules (anything else is refused with exit 2 and a message naming the files):
- The image files directly in each folder (any format Pillow reads: PNG, JPEG, WebP, BMP,
  TIFF, ...), sorted by name, read by the suite's one reader (``invbench.data.open_image``:
  symlink loops and decompression bombs are refused). 8-bit grey and colour modes are
  accepted (alpha is dropped, palettes and CMYK become RGB); 16-bit and float images are
  refused rather than silently clipped. When either side has a colour image, grey images are
  repeated to RGB so both sides have three channels.
- Every image must have one size: metrics at different resolutions are not comparable, and
  resizing would change the numbers, so mixed sizes are refused rather than resized.
- ``--paired`` matches files by name (both folders must hold the same names) and adds every
  registered per-image metric (mse, mae, psnr, ssim, lpips, ...) with bootstrap intervals, and
  the per-image values (``--per-image FILE.csv``, and ``per_image`` in ``--json``).

The metrics are the registered ones, fed as one track whose images are the fake folder and whose
targets are the real folder: FID / KID (named ``fid`` / ``kid`` here: one folder against another,
no track of the protocol) use Inception-v3 when its weights are found, otherwise ``--dataset
NAME`` selects that dataset's own trained network; without either they are reported unavailable.
SWD needs equal-size sets and uses the first min(N) images of each.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invbench.device import exact_fp32, select
from invbench.errors import DataError

GREY = {"1", "L", "LA"}
COLOUR = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}


def load_folder(folder: Path) -> tuple[list[str], list[np.ndarray]]:
    """Names and H x W x C uint8 arrays of the images directly in ``folder``."""
    from invbench.data import image_extensions, list_images, open_image

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"'{folder}' is not a directory. Pass a folder of images.")
    refs = list_images(folder, recursive=False)
    if not refs:
        exts = ", ".join(e for e in image_extensions() if e in (".png", ".jpg", ".webp", ".bmp"))
        raise DataError(f"'{folder}' holds no image files ({exts}, ...). Save the images first.")
    names, arrays = [], []
    for ref in refs:
        with open_image(ref) as im:
            if im.mode not in GREY | COLOUR:
                raise DataError(
                    f"{ref.path}: unsupported image mode '{im.mode}' (16-bit or float). Convert "
                    "it to 8-bit grey or RGB, e.g. with PIL: im.convert('RGB').save(...)."
                )
            a = np.asarray(im.convert("L" if im.mode in GREY else "RGB"), dtype=np.uint8)
        arrays.append(a[:, :, None] if a.ndim == 2 else a)
        names.append(Path(ref.name).name)
    return names, arrays


def to_tensor(
    arrays: list[np.ndarray], channels: int, where: str, names: list[str]
) -> torch.Tensor:
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        first = {}
        for n, a in zip(names, arrays, strict=True):
            first.setdefault(a.shape[:2], n)
        listed = ", ".join(f"{n} is {h}x{w}" for (h, w), n in first.items())
        raise DataError(
            f"{where}: images have different sizes ({listed}). Metrics are only comparable at "
            "one resolution; resize all images to one size first."
        )
    x = np.stack([np.repeat(a, channels // a.shape[2], axis=2) for a in arrays])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1


def _content_hash(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]


@exact_fp32()  # float32 without TF32, as in the runner (invbench.device's precision policy)
def evaluate_folders(
    real_dir: Path,
    fake_dir: Path,
    paired: bool = False,
    dataset: str | None = None,
    sets: list[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
    per_image: Path | None = None,
) -> dict[str, Any]:
    """The metrics between two image folders, as a record-like dict (and ``per_image`` CSV)."""
    from invbench import artifacts, preflight
    from invbench.config import build, parse_sets
    from invbench.metrics import METRICS, Batch, EvalContext, Result
    from invbench.metrics.reference import reference
    from invbench.runner import EvalConfig, instantiate, per_image_csv

    scoped = parse_sets(sets or [])
    extra = set(scoped) - {"", "eval"}
    if extra:
        raise DataError(f"eval-images takes only eval settings (--set key=value); got {extra}.")
    if per_image is not None and not paired:
        raise DataError("--per-image needs --paired (per-image values compare files by name).")
    ev = build(EvalConfig, ("--set", {**scoped.get("", {}), **scoped.get("eval", {})}))
    dev = select(device)
    # Before any image is read: the cache (reference statistics, the domain network) and the
    # per-image CSV's folder take what this writes.
    preflight.check_cache()
    if per_image is not None:
        preflight.check_output_file(per_image, "--per-image")
    rnames, rarr = load_folder(real_dir)
    fnames, farr = load_folder(fake_dir)
    channels = max(a.shape[2] for a in rarr + farr)
    real = to_tensor(rarr, channels, str(real_dir), rnames)
    fake = to_tensor(farr, channels, str(fake_dir), fnames)
    if min(len(real), len(fake)) < 2:
        raise DataError(
            f"eval-images compares image sets: {real_dir} holds {len(real)} and {fake_dir} "
            f"{len(fake)} image(s); FID, KID and SWD need at least 2 in each folder."
        )
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(
            f"real images are {tuple(real.shape[2:])}, fake images {tuple(fake.shape[2:])}: "
            "resize one folder to the other's size."
        )
    if paired and rnames != fnames:
        only = sorted(set(rnames) ^ set(fnames))[:5]
        raise DataError(
            f"--paired needs the same file names in both folders; unmatched: {only}. "
            "Rename the files or drop --paired."
        )

    def ref(net: Any) -> Any:
        return reference(net, real, "real", {"folder": _content_hash(real)}, ev.metric_batch)

    ctx = EvalContext(
        ev, dev, seed, resolution=real.shape[-1] if real.shape[-1] == real.shape[-2] else 0,
        channels=real.shape[1], targets="real", feature_net=lambda: _feature_net(ev, dataset, tuple(real.shape[1:]), dev),
        reference=ref,
    )  # fmt: skip
    specs = [s for s in METRICS.computed() if paired and s.needs == "paired"]
    specs.append(METRICS.get("swd"))
    made, result = instantiate(specs, ctx)
    for m in made:
        n = len(fake) if m.spec.needs == "paired" else min(len(real), len(fake))
        m.update(Batch(fake[:n], real[:n]))
    for name, base in (("fid", "fid_test_rec"), ("kid", "kid_test_rec")):
        spec = dataclasses.replace(METRICS.get(base), name=name, meaning=f"{name} of fake vs real")
        got, missing = instantiate([spec], ctx, METRICS.factory(base))
        result.merge(missing)
        for m in got:
            m.update(Batch(fake))
            made.append(m)
    out = Result()
    out.merge(result)
    for m in made:
        out.merge(m.compute())
    if per_image is not None:
        artifacts.atomic_write_text(per_image, per_image_csv(fnames, out.per_image))
    rows = [
        {"id": name, **{k: round(float(v[i]), 8) for k, v in out.per_image.items()}}
        for i, name in enumerate(fnames)
    ] if out.per_image else []  # fmt: skip
    return {
        "real": str(real_dir),
        "fake": str(fake_dir),
        "n_real": len(real),
        "n_fake": len(fake),
        "paired": paired,
        "metrics": {k: None if v is None else round(v, 6) for k, v in out.values.items()},
        "metric_flavors": out.flavors,
        "ci": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in out.ci.items()},
        "unavailable": out.unavailable,
        "per_image": rows,
    }


def _feature_net(ev: Any, dataset: str | None, shape: tuple[int, ...], dev: torch.device) -> Any:
    """Inception-v3 when found; else the ``--dataset`` network; else ``Unavailable``."""
    from invbench.metrics import Unavailable
    from invbench.metrics.features import DomainNetConfig, InceptionNet, domain_network
    from invbench.metrics.weights import INCEPTION, find_weights, missing_message
    from invbench.registry import DATASETS

    if ev.feature_net != "domain":
        path = find_weights(INCEPTION, ev.weights_dir or None)
        if path is not None:
            return InceptionNet(str(path), dev)
        if ev.feature_net == "inception" or dataset is None:
            msg = missing_message(INCEPTION, ev.weights_dir or None)
            if dataset is None:
                msg += " Or pass --dataset NAME to use that dataset's own trained network."
            raise Unavailable(msg)
    if dataset is None:
        raise Unavailable("feature_net=domain needs --dataset NAME.")
    ds = DATASETS.get(dataset)(DATASETS.get(dataset).Config())
    splits = ds.load()
    want = (splits.channels, splits.resolution, splits.resolution)
    if tuple(shape) != want:
        raise DataError(
            f"the '{dataset}' feature network takes images of shape {want} (C, H, W); the "
            f"folders hold {tuple(shape)}. Convert them (channels, size) or drop --dataset."
        )
    return domain_network(
        splits, ds.train_fingerprint(), dev, DomainNetConfig(epochs=ev.feature_epochs)
    )
