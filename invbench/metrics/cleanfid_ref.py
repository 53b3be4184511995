"""FID against a dataset's published statistics: clean-fid's precomputed FFHQ statistics.

The face-inversion protocol compares reconstructions with the whole dataset's Inception
statistics rather than with a train split the suite extracted itself. clean-fid (Parmar et al.
2022) publishes them as ``{name}_{mode}_{split}_{res}.npz`` (``mu``, ``sigma``) and keeps them in
its package's ``stats`` folder once downloaded; invbench reads that file offline, with
``np.load(allow_pickle=False)``, and never downloads it (the message names the URL).

The mode is ``legacy_tensorflow``: statistics of the 2015-12-05 TF Inception-v3 with TF's own
bilinear resize to 299, which is what invbench's Inception features are (torch-fidelity's
TF-exact port, ``invbench.metrics.features.InceptionNet``). clean-fid's ``clean`` mode resizes
with PIL bicubic instead; its statistics would not match these features. The split is
``trainval70k`` (all 70,000 FFHQ images), the resolution the dataset's (256 or 1024).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from invbench.metrics.base import Batch, EvalContext, MetricSpec, Result, Unavailable, register
from invbench.metrics.distribution import FID
from invbench.metrics.reference import Reference

URL = "https://www.cs.cmu.edu/~clean-fid/stats/"
MODE, SPLIT = "legacy_tensorflow", "trainval70k"
#: invbench dataset -> (clean-fid name, resolutions clean-fid publishes)
DATASETS = {"ffhq": ("ffhq", (256, 1024))}


def stats_dir() -> Path:
    """clean-fid's own statistics folder (where its API keeps downloaded files)."""
    import cleanfid

    return Path(os.path.dirname(cleanfid.__file__)) / "stats"


def stats_file(name: str, res: int) -> str:
    return f"{name}_{MODE}_{SPLIT}_{res}.npz".lower()  # clean-fid's naming rule


def reference_for(dataset: str, resolution: int) -> Reference | None:
    """clean-fid's statistics for ``dataset`` at ``resolution``; None when clean-fid publishes
    none for it; ``Unavailable`` (naming the file and its URL) when they exist but are absent."""
    if dataset not in DATASETS:
        return None
    name, resolutions = DATASETS[dataset]
    if resolution not in resolutions:
        raise Unavailable(
            f"fid_test_rec_cleanfid unavailable: clean-fid publishes {dataset} statistics at "
            f"{' and '.join(map(str, resolutions))} px, the run is at {resolution} px."
        )
    path = stats_dir() / stats_file(name, resolution)
    if not path.is_file():
        raise Unavailable(
            f"fid_test_rec_cleanfid unavailable: {path.name} not found in {path.parent}. "
            f"Download {URL}{path.name} there (clean-fid's statistics folder)."
        )
    with np.load(path, allow_pickle=False) as stats:
        mu, sigma = np.asarray(stats["mu"], np.float64), np.asarray(stats["sigma"], np.float64)
    if mu.shape != (2048,) or sigma.shape != (2048, 2048):
        raise Unavailable(f"fid_test_rec_cleanfid unavailable: {path} is not Inception statistics.")
    split = f"clean-fid:{name}/{MODE}/{SPLIT}/{resolution}"
    return Reference(mu, sigma, np.zeros((0, 2048)), 70_000, split)


class CleanFID(FID):
    """``fid_test_rec_cleanfid``: the test track's FID against the dataset's published
    statistics, with Inception features only (they are those statistics' features); it reports
    nothing for datasets clean-fid publishes nothing for, or with another feature network."""

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        self.n = 0  # every test image: not a Table 1 track, the published protocol's own FID
        self.published: Reference | None = None
        if self.net.flavor == "inception-v3":
            self.published = reference_for(ctx.dataset, ctx.resolution)

    def reference(self) -> Reference:
        assert self.published is not None
        return self.published

    def update(self, batch: Batch) -> None:
        if self.published is not None:
            super().update(batch)

    def compute(self) -> Result:
        return Result() if self.published is None else super().compute()


register(
    MetricSpec(
        "fid_test_rec_cleanfid",
        "FID of test reconstructions vs clean-fid's published dataset statistics",
        fmt="{:.2f}",
        group="Distribution",
        needs="distribution",
        track="test",
        flavor="inception-v3/N/clean-fid:DATASET/legacy_tensorflow/trainval70k/RESOLUTION",
    ),
    CleanFID,
)
