"""Sliced Wasserstein distance on Laplacian-pyramid patches: the ProGAN protocol.

Karras et al. 2018 (ProGAN), §5 and ``metrics/sliced_wasserstein.py`` of their release, written
by hand because no maintained library ships it. Per pyramid level from the full resolution
down to 16 x 16: 128 random 7 x 7 neighbourhoods per image (all channels), each descriptor set
normalised per channel by its own mean and std, then the sliced Wasserstein-1 distance over
4 repeats of 128 random unit directions; reported x1e3 and averaged over levels. Images enter
as 8-bit values (0..255) like ProGAN's.

As in ProGAN, each image set draws its *own* neighbourhood positions (the release draws the
real set's, then the fake set's, from one global RNG): two sets are compared as distributions
of patches, never patch for patch, so the SWD of a set with itself is small but not 0.
Randomness is seeded: positions by (seed, set, level, image index), so the value does not
depend on how images are batched; directions by (seed, level), shared by both sets as in
ProGAN's single ``sliced_wasserstein`` call. For 32 x 32 digits the levels are 32 and 16.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.ndimage
import torch

from invbench.metrics.base import (
    Batch,
    EvalContext,
    Fold,
    Metric,
    MetricSpec,
    Result,
    Unavailable,
    register,
)

REAL, FAKE = 0, 1  # the two sets' position streams
FLAVOR = "progan/patches=independent"


@dataclass(frozen=True)
class SWDConfig:
    nhood_size: int = 7
    nhoods_per_image: int = 128
    dir_repeats: int = 4
    dirs_per_repeat: int = 128
    min_resolution: int = 16


# The 5-tap binomial filter of cv2.pyrDown / pyrUp (ProGAN's gaussian_filter).
_G = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float32) / 256.0


def _pyr_down(x: np.ndarray) -> np.ndarray:
    return scipy.ndimage.convolve(x, _G[None, None], mode="mirror")[:, :, ::2, ::2]


def _pyr_up(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    up = np.zeros((n, c, h * 2, w * 2), x.dtype)
    up[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(up, _G[None, None] * 4.0, mode="mirror")


def laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    pyramid = [np.array(x, dtype=np.float32)]  # a copy: levels are edited in place
    for _ in range(1, levels):
        pyramid.append(_pyr_down(pyramid[-1]))
        pyramid[-2] -= _pyr_up(pyramid[-1])
    return pyramid


def pyramid_resolutions(resolution: int, min_resolution: int = 16) -> list[int]:
    out, r = [], resolution
    while r >= min_resolution:
        out.append(r)
        r //= 2
    return out


def _positions(seed: int, stream: int, ids: np.ndarray, k: int, low: int, high: int) -> np.ndarray:
    """``k`` pseudo-random integers in [low, high) per image id, a pure function of
    (seed, stream, image id, j): SplitMix64 (Steele et al. 2014) over a counter, vectorised.
    Batching cannot change them, and no generator object is built per image."""
    m = np.uint64(0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            np.uint64(stream) * np.uint64(0xD1B54A32D192ED03)
        )
        z = z + ids[:, None] * np.uint64(k) + np.arange(k, dtype=np.uint64)[None, :]
        z = (z + np.uint64(0x9E3779B97F4A7C15)) & m
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (low + (z % np.uint64(high - low)).astype(np.int64)).reshape(-1)


class SWDAccumulator:
    """Collects the normalised-later descriptors of one image set, batch by batch. ``role``
    (``REAL`` or ``FAKE``) selects the set's own stream of patch positions under ``seed``."""

    def __init__(
        self, resolution: int, seed: int = 0, role: int = REAL, cfg: SWDConfig | None = None
    ) -> None:
        self.cfg = cfg or SWDConfig()
        self.resolutions = pyramid_resolutions(resolution, self.cfg.min_resolution)
        if not self.resolutions or resolution % (2 ** (len(self.resolutions) - 1)):
            raise ValueError(
                f"SWD needs square images of at least {self.cfg.min_resolution} px whose side "
                f"halves evenly down to {self.cfg.min_resolution}; got {resolution}."
            )
        self.seed, self.role = seed, role
        self.n = 0
        self.desc: list[list[np.ndarray]] = [[] for _ in self.resolutions]

    def update(self, images: torch.Tensor, start: int | None = None) -> None:
        """``images`` in [-1, 1], N x C x H x W; ``start``: the index of the first in its set
        (default: the images seen so far), which seeds its patch positions."""
        u8 = np.rint((images.detach().cpu().double().numpy() + 1) * 127.5).clip(0, 255)
        half = self.cfg.nhood_size // 2
        k = self.cfg.nhoods_per_image
        idx0 = self.n if start is None else start
        for lod, level in enumerate(laplacian_pyramid(u8, len(self.resolutions))):
            n, c, h, w = level.shape
            ids = np.arange(idx0, idx0 + n, dtype=np.uint64)
            stream = 4 * lod + 2 * self.role  # (level, set, axis) -> its own stream
            y = _positions(self.seed, stream, ids, k, half, h - half)
            x = _positions(self.seed, stream + 1, ids, k, half, w - half)
            y, x = y.reshape(-1, 1, 1, 1), x.reshape(-1, 1, 1, 1)
            img = np.repeat(np.arange(n), k)[:, None, None, None]
            ch = np.arange(c)[None, :, None, None]
            d = np.arange(-half, half + 1)
            patches = level[img, ch, y + d[None, None, :, None], x + d[None, None, None, :]]
            self.desc[lod].append(patches.astype(np.float32))
        self.n += len(images)

    def __add__(self, other: SWDAccumulator) -> SWDAccumulator:
        """This set followed by ``other`` (the next process's share of it): descriptors are
        concatenated per level, so the set's normalisation sees them all, in order."""
        if (self.seed, self.role, self.resolutions) != (other.seed, other.role, other.resolutions):
            raise ValueError("only shares of one SWD set (same seed, role, levels) add up")
        both = SWDAccumulator(self.resolutions[0], self.seed, self.role, self.cfg)
        both.n = self.n + other.n
        both.desc = [a + b for a, b in zip(self.desc, other.desc, strict=True)]
        return both

    def descriptors(self) -> list[np.ndarray]:
        """Per level: descriptors normalised per channel over the whole set, flattened."""
        out = []
        for parts in self.desc:
            d = np.concatenate(parts).astype(np.float32)
            d -= d.mean(axis=(0, 2, 3), keepdims=True)
            d /= d.std(axis=(0, 2, 3), keepdims=True)
            out.append(d.reshape(len(d), -1))
        return out


def sliced_wasserstein(
    a: np.ndarray, b: np.ndarray, repeats: int, dirs: int, seed: int | list[int]
) -> float:
    """Mean over repeats of the mean |sorted projection difference| over random directions."""
    assert a.shape == b.shape, "both descriptor sets need the same size"
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(repeats):
        v = rng.standard_normal((a.shape[1], dirs))
        v = (v / np.sqrt((v**2).sum(0, keepdims=True))).astype(np.float32)
        # Projections as (direction, descriptor) rows: sorting contiguous rows is faster.
        pa, pb = v.T @ a.T, v.T @ b.T
        pa.sort(axis=1)  # in place: no copy of the (directions x descriptors) matrix
        pb.sort(axis=1)
        results.append(np.abs(pa - pb).mean())
    return float(np.mean(results))


def swd(real: SWDAccumulator, fake: SWDAccumulator) -> tuple[float, dict[int, float]]:
    """SWD x1e3 averaged over levels, and the per-level values (keyed by resolution)."""
    if real.n != fake.n:
        raise ValueError(f"SWD compares equal-size sets; got {real.n} and {fake.n} images")
    if real.role == fake.role:
        raise ValueError("the two sets of an SWD must draw their own patch positions (roles)")
    cfg = real.cfg
    per_level = {}
    for lod, (da, db) in enumerate(zip(real.descriptors(), fake.descriptors(), strict=True)):
        seed = [real.seed, 2, lod]  # directions: apart from both sets' position streams
        d = sliced_wasserstein(da, db, cfg.dir_repeats, cfg.dirs_per_repeat, seed)
        per_level[real.resolutions[lod]] = d * 1e3
    return float(np.mean(list(per_level.values()))), per_level


class SWD(Metric):
    """SWD between a track's targets (the originals) and its images, each set with its own
    patch positions; flavor ``progan/patches=independent/levels=32,16/N=297/ref=test``."""

    states: ClassVar[dict[str, Fold]] = {"real": operator.add, "fake": operator.add}

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        super().__init__(spec, ctx)
        try:
            self.real = SWDAccumulator(ctx.resolution, ctx.seed, REAL)
            self.fake = SWDAccumulator(ctx.resolution, ctx.seed, FAKE)
        except ValueError as e:
            raise Unavailable(f"swd unavailable: {e}") from None

    def update(self, batch: Batch) -> None:
        assert batch.targets is not None
        self.real.update(batch.targets, batch.start)
        self.fake.update(batch.images, batch.start)

    def compute(self) -> Result:
        value, levels = swd(self.real, self.fake)
        res = ",".join(str(r) for r in levels)
        flavor = f"{FLAVOR}/levels={res}/N={self.real.n}/ref={self.ctx.targets}"
        return Result(values={self.spec.name: value}, flavors={self.spec.name: flavor})


register(
    MetricSpec(
        "swd",
        "sliced Wasserstein distance on Laplacian-pyramid patches (ProGAN), x1e3, mean over "
        "levels, test reconstructions vs originals",
        fmt="{:.2f}",
        group="Distribution",
        needs="distribution",
        track="test",
        flavor="progan/patches=independent/levels/N/reference split",
    ),
    SWD,
)
