"""``invbench eval-images``: the benchmark's metrics between two folders of PNG images.

Loading rules (anything else is refused with exit 2 and a message naming the files):
- ``*.png`` files directly in each folder, sorted by name; 8-bit grey (L, LA), RGB, RGBA and
  palette images. Alpha is dropped. When either side has a colour image, grey images are
  repeated to RGB so both sides have three channels.
- Every image must have one size: metrics at different resolutions are not comparable, and
  resizing would change the numbers, so mixed sizes are refused rather than resized.
- ``--paired`` matches files by name (both folders must hold the same names) and adds the
  per-image metrics (mse, mae, psnr, ssim, lpips) with bootstrap intervals.

FID / KID use Inception-v3 when its weights are found; otherwise ``--dataset NAME`` selects
that dataset's own trained network (images must then have its channels); without either
they are reported unavailable. SWD needs equal-size sets and uses the first min(N) images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from invbench.device import exact_fp32, select
from invbench.errors import DataError

MODES = {"L": 1, "LA": 1, "RGB": 3, "RGBA": 3, "P": 3}


def load_folder(folder: Path) -> tuple[list[str], list[np.ndarray]]:
    """Names and HxWxC uint8 arrays of the PNG files in ``folder``."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"'{folder}' is not a directory. Pass a folder of PNG images.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise DataError(f"'{folder}' holds no .png files. Save the images as PNG first.")
    names, arrays = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                if im.mode not in MODES:
                    raise DataError(
                        f"{p}: unsupported PNG mode '{im.mode}' (16-bit or other). Convert it to "
                        "8-bit grey or RGB, e.g. with PIL: im.convert('RGB').save(...)."
                    )
                im = im.convert("L" if MODES[im.mode] == 1 else "RGB")
                a = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise DataError(f"{p}: not a readable PNG ({e}).") from e
        arrays.append(a[:, :, None] if a.ndim == 2 else a)
        names.append(p.name)
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
) -> dict[str, Any]:
    """The metrics between two PNG folders, as a record like the runner's."""
    from invbench.config import build, parse_sets
    from invbench.metrics.evaluate import FeatureTrack, reference
    from invbench.metrics.swd import SWDAccumulator, swd
    from invbench.runner import EvalConfig, score_paired

    scoped = parse_sets(sets or [])
    extra = set(scoped) - {"", "eval"}
    if extra:
        raise DataError(f"eval-images takes only eval settings (--set key=value); got {extra}.")
    ev = build(EvalConfig, ("--set", {**scoped.get("", {}), **scoped.get("eval", {})}))
    dev = select(device)
    rnames, rarr = load_folder(real_dir)
    fnames, farr = load_folder(fake_dir)
    channels = max(a.shape[2] for a in rarr + farr)
    real = to_tensor(rarr, channels, str(real_dir), rnames)
    fake = to_tensor(farr, channels, str(fake_dir), fnames)
    if min(len(real), len(fake)) < 2:
        raise DataError(
            f"eval-images compares image sets: {real_dir} holds {len(real)} and {fake_dir} "
            f"{len(fake)} PNG file(s); FID, KID and SWD need at least 2 in each folder."
        )
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(
            f"real images are {tuple(real.shape[2:])}, fake images {tuple(fake.shape[2:])}: "
            "resize one folder to the other's size."
        )
    metrics: dict[str, float | None] = {}
    flavors: dict[str, str] = {}
    ci: dict[str, list[float]] = {}
    unavailable: dict[str, str] = {}
    if paired:
        if rnames != fnames:
            only = sorted(set(rnames) ^ set(fnames))[:5]
            raise DataError(
                f"--paired needs the same file names in both folders; unmatched: {only}. "
                "Rename the files or drop --paired."
            )
        m, ci, fl, un = score_paired(fake, real, ev, dev, seed)
        metrics.update(m)
        flavors.update(fl)
        unavailable.update(un)
    # SWD (ProGAN) on equal-size sets.
    n = min(len(real), len(fake))
    try:
        a, b = SWDAccumulator(real.shape[-1], seed), SWDAccumulator(real.shape[-1], seed)
        if real.shape[-1] != real.shape[-2]:
            raise ValueError("SWD needs square images")
        a.update(real[:n])
        b.update(fake[:n])
        metrics["swd"], levels = swd(a, b)
        flavors["swd"] = f"progan/levels={','.join(map(str, levels))}/N={n}/ref=real"
    except ValueError as e:
        unavailable["swd"] = f"swd unavailable: {e}"
    # FID / KID.
    net = _feature_net(ev, dataset, tuple(real.shape[1:]), dev, unavailable)
    if net is None:
        metrics["fid"] = metrics["kid"] = None
    else:
        ref = reference(net, real, "real", {"folder": _content_hash(real)}, ev.metric_batch)
        track = FeatureTrack("fid", net, ev.fid_small_n, keep_features=True)
        track.update(fake, ev.metric_batch)
        for result in (
            track.fid(ref),
            track.kid(ref, "kid", ev.kid_subsets, ev.kid_subset_size, seed),
        ):
            metrics.update(result[0])
            flavors.update(result[1])
    return {
        "real": str(real_dir),
        "fake": str(fake_dir),
        "n_real": len(real),
        "n_fake": len(fake),
        "paired": paired,
        "metrics": {k: None if v is None else round(v, 6) for k, v in metrics.items()},
        "metric_flavors": flavors,
        "ci": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in ci.items()},
        "unavailable": unavailable,
    }


def _feature_net(
    ev: Any, dataset: str | None, shape: tuple[int, ...], dev: torch.device, un: dict
) -> Any:
    from invbench.metrics.features import DomainNetConfig, domain_network
    from invbench.metrics.weights import INCEPTION, find_weights, missing_message

    if ev.feature_net != "domain":
        path = find_weights(INCEPTION, ev.weights_dir or None)
        if path is not None:
            from invbench.metrics.features import InceptionNet

            return InceptionNet(str(path), dev)
        if ev.feature_net == "inception" or dataset is None:
            msg = missing_message(INCEPTION, ev.weights_dir or None)
            if dataset is None:
                msg += " Or pass --dataset NAME to use that dataset's own trained network."
            un["fid"] = un["kid"] = "fid/kid unavailable: " + msg
            return None
    if dataset is None:
        un["fid"] = un["kid"] = "fid/kid unavailable: feature_net=domain needs --dataset NAME."
        return None
    from invbench.registry import DATASETS

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
