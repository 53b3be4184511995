"""The protocol runner: one (method, dataset, generator, configuration, seed) -> one result record.

dataset (train / test split, images in [-1, 1])
  -> generator (from the zoo, trained and cached; or owned by the method)
  -> inverter.fit(context)                     cached by content hash
  -> inverter.invert(test images) -> latents   timed: sec_per_image
  -> inverter.decode(latents) -> reconstructions
  -> tracks (InvGAN Table 1): test reconstructions, midpoints of random test pairs, random
     samples and their reconstructions, each streamed through the metrics
  -> metrics -> result record (JSON, written atomically) + PNG grid

Metric time (features, statistics, distances) is clocked apart from method time (inverting
the test set and the random samples) and recorded in the provenance.

On CUDA (``--device cuda`` or ``auto``, see ``invbench.device``): timings are synchronised,
a batch that runs out of memory is halved and retried (results do not depend on the batch),
and inversion, synthesis and metrics run in float32 without TF32 so numbers match the CPU's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import math
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import invbench
from invbench import artifacts
from invbench.config import as_dict, build, config_file, load_yaml, parse_sets, stable_hash
from invbench.data import Splits
from invbench.device import Stopwatch, describe, exact_fp32, run_batched, select
from invbench.errors import UsageError
from invbench.generators.train import obtain
from invbench.inverter import FitContext, Inverter, Latents
from invbench.metrics.cleanfid_ref import reference_for
from invbench.metrics.evaluate import ClassShares, FeatureTrack, reference
from invbench.metrics.features import (
    DomainNet,
    DomainNetConfig,
    check_feature_weights,
    feature_network,
)
from invbench.metrics.identity import load_identity
from invbench.metrics.msssim import FLAVOR as MSSSIM_FLAVOR
from invbench.metrics.msssim import MIN_SIDE as MSSSIM_MIN_SIDE
from invbench.metrics.msssim import ms_ssim
from invbench.metrics.paired import bootstrap_ci, compute_paired
from invbench.metrics.perceptual import Unavailable, load_lpips
from invbench.metrics.swd import SWDAccumulator, swd
from invbench.progress import log
from invbench.registry import DATASETS, GENERATORS, METHODS

SUITE_VERSION = 1  # bump when the protocol changes what a number means
DEFAULT_GENERATOR = "dcgan"


@dataclass
class EvalConfig:
    """How a run is scored. Defaults here are the suite's protocol (every eval knob lives here)."""

    n_test: int = 0  # number of test images to invert; 0 = the whole test split
    # Which split is inverted: "train" inverts the first n_test training images (memorisation
    # probes, Creswell Table I, ICLR 2020 Fig. 3); "test" is the protocol's default.
    split: Literal["test", "train"] = "test"
    batch_size: int = 512  # images per ``invert`` call
    bootstrap: int = 1000  # resamples for the confidence intervals of paired metrics
    grid_images: int = 16  # originals / reconstructions shown in the PNG grid
    # Distribution tracks (InvGAN Table 1): FID vs the train split at two sample sizes; the
    # paper uses 500 / 50,000, digits' test split has 297 images, hence 100 / all.
    tracks: bool = True  # False: paired metrics only (fast smoke runs)
    fid_small_n: int = 100  # the small N; FIDs at it are reported as name@N=<n>
    n_rand: int = 0  # random samples for fid_rand; 0 = the size of the train split
    n_rand_rec: int = 0  # random samples inverted (fid_rand_rec, latent_mse); 0 = n_test
    n_interp: int = 0  # random test pairs interpolated (fid_interp); 0 = n_test
    kid_subsets: int = 100  # torch-fidelity's defaults; the subset size is clipped to
    kid_subset_size: int = 1000  # the smaller of the two sets
    recovery_eps: tuple[float, ...] = (0.01, 0.1, 0.5)  # latent recovered: all |dz_i| < eps
    feature_net: Literal["auto", "inception", "domain"] = "auto"  # auto: Inception if found
    weights_dir: str = ""  # extra directory searched for pretrained weights ($INVBENCH_WEIGHTS too)
    metric_batch: int = 500  # images per feature-network / LPIPS call
    feature_epochs: int = 12  # training epochs of the domain feature network (LeNet)

    def validate(self) -> None:
        if self.n_test < 0 or self.batch_size < 1 or self.bootstrap < 0 or self.grid_images < 0:
            raise ValueError("n_test, bootstrap, grid_images must be >= 0 and batch_size >= 1")
        if self.n_test == 1:
            raise ValueError("n_test must be 0 (the whole test split) or >= 2 (FID, KID need 2)")
        if min(self.fid_small_n, self.n_rand, self.n_rand_rec, self.n_interp) < 0:
            raise ValueError("fid_small_n, n_rand, n_rand_rec, n_interp must be >= 0")
        if self.kid_subsets < 1 or self.kid_subset_size < 2 or self.metric_batch < 1:
            raise ValueError("kid_subsets >= 1, kid_subset_size >= 2, metric_batch >= 1")
        if self.feature_epochs < 1:
            raise ValueError("feature_epochs must be >= 1")
        if any(e <= 0 for e in self.recovery_eps):
            raise ValueError("recovery_eps must be positive numbers, e.g. 0.01,0.1")


@dataclass
class RunSpec:
    method: str
    dataset: str = "digits"
    generator: str | None = None
    sets: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"
    out: Path = Path("results")


@dataclass
class Resolved:
    """A run with every configuration resolved (defaults <- YAML <- --set)."""

    spec: RunSpec
    method_cls: type[Inverter]
    method_cfg: Any
    dataset_cfg: Any
    generator_name: str | None
    generator_sets: dict[str, str]
    eval_cfg: EvalConfig

    def config(self) -> dict[str, Any]:
        gen_cfg = None
        if self.generator_name is not None:
            cls = GENERATORS.get(self.generator_name)
            gen_cfg = as_dict(
                _resolve(cls.Config, "generator", self.generator_name, self.generator_sets)
            )
        return {
            "method": {"name": self.spec.method, **as_dict(self.method_cfg)},
            "dataset": {"name": self.spec.dataset, **as_dict(self.dataset_cfg)},
            "generator": None if gen_cfg is None else {"name": self.generator_name, **gen_cfg},
            "eval": as_dict(self.eval_cfg),
            "seed": self.spec.seed,
            "suite_version": SUITE_VERSION,
        }

    def hash(self) -> str:
        return stable_hash(self.config())


def _resolve(cls: type, kind: str, name: str, sets: dict[str, str]) -> Any:
    layers = []
    path = config_file(kind, name)
    if path is not None:
        layers.append((str(path), load_yaml(path)))
    if sets:
        layers.append((f"--set ({kind} '{name}')", sets))
    return build(cls, *layers)


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


MAX_SEED = 2**32  # numpy's RandomState and the bootstrap take seeds in [0, 2**32)


def check_seed(seed: int) -> None:
    if not 0 <= seed < MAX_SEED:
        raise UsageError(f"seed {seed} is out of range: use an integer in [0, 2**32).")


def check_out(out: Path | str) -> None:
    """Refuse an output folder that cannot be one before any work is done."""
    path = Path(out)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise UsageError(
                    f"--out {out}: {p} exists and is not a folder. Pick another --out."
                )
            break


def resolve(spec: RunSpec) -> Resolved:
    """Resolve every component's configuration and route ``--set`` keys to their owners."""
    check_seed(spec.seed)
    method_cls = METHODS.get(spec.method)
    dataset_cls = DATASETS.get(spec.dataset)
    gen_name = None if method_cls.owns_generator else (spec.generator or DEFAULT_GENERATOR)
    if method_cls.owns_generator and spec.generator:
        raise UsageError(
            f"method '{spec.method}' trains its own generator; drop --generator {spec.generator}."
        )
    gen_cls = GENERATORS.get(gen_name) if gen_name else None
    scoped = parse_sets(spec.sets)
    # An unprefixed key goes to the first component that declares it, in this order.
    owners: dict[str, type] = {"method": method_cls.Config, "eval": EvalConfig}
    owners["dataset"] = dataset_cls.Config
    if gen_cls is not None:
        owners["generator"] = gen_cls.Config
    routed: dict[str, dict[str, str]] = {k: dict(scoped.get(k, {})) for k in owners}
    for scope in scoped:
        if scope and scope not in owners:
            raise UsageError(
                f"--set {scope}.…: unknown scope '{scope}'. Use one of {', '.join(owners)} "
                "(or no prefix)."
            )
    for key, value in scoped.get("", {}).items():
        hits = [name for name, cls in owners.items() if key in _fields(cls)]
        if not hits:
            valid = "; ".join(f"{n}: {', '.join(sorted(_fields(c)))}" for n, c in owners.items())
            raise UsageError(f"--set {key}=…: unknown key '{key}'. Valid keys — {valid}.")
        if key in scoped.get(hits[0], {}) and scoped[hits[0]][key] != value:
            raise UsageError(
                f"--set {key}={value} and --set {hits[0]}.{key}={scoped[hits[0]][key]} set the "
                "same key twice; keep one."
            )
        routed[hits[0]][key] = value
    method_cfg = _resolve(method_cls.Config, "method", spec.method, routed["method"])
    space = getattr(method_cfg, "space", None)
    if gen_cls is not None and space is not None:
        gen_cls.check_space(space)  # before the generator trains, not after
    return Resolved(
        spec=spec,
        method_cls=method_cls,
        method_cfg=method_cfg,
        dataset_cfg=_resolve(dataset_cls.Config, "dataset", spec.dataset, routed["dataset"]),
        generator_name=gen_name,
        generator_sets=routed.get("generator", {}),
        eval_cfg=_resolve(EvalConfig, "eval", "default", routed["eval"]),
    )


@functools.cache
def _git_rev() -> str:
    """The checkout's commit, asked once per process: records written while the checkout moves
    under a running suite name the code the process loaded, not the new HEAD."""
    try:
        root = Path(invbench.__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def invert_all(inv: Inverter, images: torch.Tensor, batch_size: int) -> tuple[Latents, int]:
    """Invert in batches of ``batch_size``, halved on CUDA out-of-memory (see ``run_batched``);
    return the latents (on the CPU) and the batch size that fitted."""

    def invert(x: torch.Tensor) -> Latents:
        lat = inv.invert(x)
        return Latents(lat.tensor.detach().cpu(), lat.space)

    parts, fitted = run_batched(invert, images, batch_size, inv.device, "inversion batch")
    return Latents.cat(parts), fitted


def decode_all(inv: Inverter, latents: Latents, batch_size: int) -> torch.Tensor:
    """Decode in batches of ``batch_size`` (halved on CUDA out-of-memory), on the CPU."""

    def decode(t: torch.Tensor) -> torch.Tensor:
        return inv.decode(Latents(t, latents.space)).cpu()

    parts, _ = run_batched(decode, latents.tensor, batch_size, inv.device, "decoding batch")
    return torch.cat(parts)


def fit_cached(
    inv: Inverter, res: Resolved, ctx: FitContext, gen_key: str | None, data_fp: dict[str, Any]
) -> tuple[float, bool]:
    """Run ``fit`` or load its result from the cache; return (fit seconds, came from cache)."""
    if not inv.trains:
        with Stopwatch(ctx.device) as sw:
            inv.fit(ctx)
        return sw.seconds, False
    payload = {
        "method": res.spec.method,
        "config": as_dict(res.method_cfg),
        "generator": gen_key,
        "data": data_fp,
        "seed": res.spec.seed,
        "v": SUITE_VERSION,
    }
    if inv.train_version:  # only when set, so the keys of unversioned methods stay as they were
        payload["train_version"] = inv.train_version
    key = stable_hash(payload)
    cached = artifacts.load_artifact("inverters", key)
    if cached is not None:
        inv.load_state_dict(cached[0])
        return float(cached[1].get("fit_seconds", 0.0)), True
    with Stopwatch(ctx.device) as sw:
        inv.fit(ctx)
    seconds = sw.seconds
    artifacts.save_artifact(
        "inverters", key, inv.state_dict(), {"method": res.spec.method, "fit_seconds": seconds}
    )
    return seconds, False


def save_grid(path: Path, originals: torch.Tensor, recons: torch.Tensor) -> None:
    """Originals (top row) above their reconstructions (bottom row), upscaled for viewing."""
    from torchvision.utils import make_grid, save_image

    n = len(originals)
    both = torch.cat([originals, recons]).clamp(-1, 1) * 0.5 + 0.5
    if both.shape[-1] < 64:
        both = torch.nn.functional.interpolate(
            both, scale_factor=64 // both.shape[-1], mode="nearest"
        )
    grid = make_grid(both, nrow=n, padding=2, pad_value=1.0)
    with artifacts.atomic_path(path) as tmp:
        save_image(grid, tmp, format="png")


def record_name(res: Resolved, config_hash: str) -> str:
    gen = res.generator_name or "own"
    return f"{res.spec.method}__{res.spec.dataset}__{gen}__s{res.spec.seed}__{config_hash}"


class _Clock:
    """Wall-clock seconds spent inside metric code (features, statistics, distances)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0


def _in_batches(fn: Any, recon: torch.Tensor, test: torch.Tensor, ev: EvalConfig) -> torch.Tensor:
    """A per-image network metric over ``eval.metric_batch`` images at a time."""
    mb = ev.metric_batch
    return torch.cat([fn(recon[i : i + mb], test[i : i + mb]) for i in range(0, len(test), mb)])


@exact_fp32()
def score_paired(
    recon: torch.Tensor, test: torch.Tensor, ev: EvalConfig, device: torch.device, seed: int
) -> tuple[dict[str, float | None], dict[str, list[float]], dict[str, str], dict[str, str]]:
    """Per-image metrics (+ LPIPS when its AlexNet is found), their means and bootstrap CIs."""
    per_image = compute_paired(recon, test)
    flavors: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    try:
        lp = load_lpips(device, ev.weights_dir or None)
        per_image["lpips"], flavors["lpips"] = _in_batches(lp, recon, test, ev), lp.flavor
    except Unavailable as e:
        unavailable["lpips"] = str(e)
        log(str(e))
    # The face-inversion protocol (issue #20): MS-SSIM, and ArcFace identity when available.
    if min(test.shape[-2:]) >= MSSSIM_MIN_SIDE:
        per_image["ms_ssim"], flavors["ms_ssim"] = ms_ssim(recon, test), MSSSIM_FLAVOR
    else:
        unavailable["ms_ssim"] = (
            f"ms_ssim unavailable: its five scales need images of at least {MSSSIM_MIN_SIDE}x"
            f"{MSSSIM_MIN_SIDE} pixels; these are {tuple(test.shape[-2:])}."
        )
    try:
        idn = load_identity(device, ev.weights_dir or None, tuple(test.shape[1:]))
        per_image["id_sim"], flavors["id_sim"] = _in_batches(idn, recon, test, ev), idn.flavor
    except Unavailable as e:
        unavailable["id_sim"] = str(e)
    metrics: dict[str, float | None] = {k: float(v.mean()) for k, v in per_image.items()}
    for name in ("lpips", "id_sim", "ms_ssim"):
        if name in unavailable:
            metrics[name] = None
    ci = {}
    if ev.bootstrap:
        ci = {
            k: list(bootstrap_ci(v.numpy(), ev.bootstrap, seed=seed)) for k, v in per_image.items()
        }
    return metrics, ci, flavors, unavailable


@exact_fp32()
def score_tracks(
    inv: Inverter,
    ev: EvalConfig,
    splits: Splits,
    data_fp: dict[str, Any],
    test: torch.Tensor,
    recon: torch.Tensor,
    latents: Latents,
    device: torch.device,
    seed: int,
    clock: _Clock,
    batch: int,
) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """The InvGAN tracks (random samples, their reconstructions, test reconstructions, test
    interpolations) scored by FID at two N, plus KID, SWD and latent recovery.

    Image generation and the inversion of random samples are method time, not metric time:
    only feature extraction, statistics and distances run under ``clock``. Samples are drawn
    ``ev.batch_size`` at a time (what they are depends on it); ``batch``, the size that fitted
    the test split's inversion, bounds every decode and inversion (what they give does not).
    """
    metrics: dict[str, float] = {}
    flavors: dict[str, str] = {}
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    domain_cfg = DomainNetConfig(epochs=ev.feature_epochs)
    net = feature_network(
        splits, data_fp, ev.feature_net, ev.weights_dir or None, device, domain_cfg
    )
    # A lazy (paper-scale) train split streams through its DataLoader; in memory it is one tensor.
    train = splits.loader("train", ev.metric_batch, device) if splits.lazy else splits.train
    ref = reference(net, train, "train", data_fp, ev.metric_batch)
    info["metric_setup_seconds"] = round(time.perf_counter() - t0, 3)  # cached after a first run
    info["feature_net"] = net.flavor
    info["feature_net_test_accuracy"] = getattr(net, "test_accuracy", None)
    small, mb = ev.fid_small_n, ev.metric_batch

    def add(result: tuple[dict[str, float], dict[str, str]]) -> None:
        metrics.update(result[0])
        flavors.update(result[1])

    # Test reconstructions (TsRecFID), KID, and SWD against the originals (LIA Tables 3-5).
    with clock():
        test_rec = FeatureTrack("fid_test_rec", net, small, keep_features=True)
        test_rec.update(recon, mb)
        add(test_rec.fid(ref))
        if net.flavor == "inception-v3":  # the dataset's published statistics (issue #20)
            try:
                published = reference_for(str(data_fp.get("dataset")), test.shape[-1])
                if published is not None:
                    m, f = test_rec.fid(published)
                    name = "fid_test_rec_cleanfid"
                    add(({name: m["fid_test_rec"]}, {name: f["fid_test_rec"]}))
            except Unavailable as e:
                info.setdefault("unavailable", {})["fid_test_rec_cleanfid"] = str(e)
        add(test_rec.kid(ref, "kid_test_rec", ev.kid_subsets, ev.kid_subset_size, seed))
        try:
            real, fake = SWDAccumulator(test.shape[-1], seed), SWDAccumulator(test.shape[-1], seed)
            real.update(test)
            fake.update(recon)
            metrics["swd"], levels = swd(real, fake)
            res = ",".join(str(r) for r in levels)
            flavors["swd"] = f"progan/levels={res}/N={len(test)}/ref={ev.split}"
        except ValueError as e:
            info.setdefault("unavailable", {})["swd"] = f"swd unavailable: {e}"

    t_tracks = time.perf_counter()
    # Midpoints of random test pairs (IntTsFID): pair perm[k] with perm[k-1], never itself.
    g = torch.Generator().manual_seed(seed)
    n_pairs = min(ev.n_interp or len(latents), len(latents))
    if len(latents) >= 2:
        perm = torch.randperm(len(latents), generator=g)
        a, b = perm[:n_pairs], perm.roll(1)[:n_pairs]
        mid = Latents((latents.tensor[a] + latents.tensor[b]) / 2, latents.space)
        interp = FeatureTrack("fid_interp", net, small)
        for i in range(0, n_pairs, ev.batch_size):
            imgs = decode_all(inv, mid[i : i + ev.batch_size], batch)
            with clock():
                interp.update(imgs, mb)
        with clock():
            add(interp.fid(ref))

    # Random samples (RandFID) and their reconstructions (RandRecFID, latent recovery).
    n_rand = ev.n_rand or splits.n_train
    n_rec = ev.n_rand_rec or len(test)
    rand = FeatureTrack("fid_rand", net, small)
    rand_rec = FeatureTrack("fid_rand_rec", net, small)
    classes = ClassShares(net) if isinstance(net, DomainNet) else None
    lat_mse: list[torch.Tensor] = []
    lat_max: list[torch.Tensor] = []
    t_invert = 0.0
    while rand.n < n_rand or rand_rec.n < n_rec:
        lat = inv.sample(ev.batch_size, generator=g)
        imgs = decode_all(inv, lat, batch)
        with clock():
            if classes is not None:
                classes.update(imgs[: max(0, n_rand - rand.n)], mb)
            rand.update(imgs[: max(0, n_rand - rand.n)], mb)
        k = min(len(imgs), n_rec - rand_rec.n)
        if k <= 0:
            continue
        with Stopwatch(device) as sw:
            found, _ = invert_all(inv, imgs[:k].to(device), batch)
        t_invert += sw.seconds
        rec = decode_all(inv, found, batch)
        with clock():
            rand_rec.update(rec, mb)
        true = lat.tensor[:k].detach().cpu().double()
        est = found.tensor.detach().cpu().double()
        if found.space == lat.space and est.shape == true.shape:
            lat_mse.append((est - true).pow(2).flatten(1).mean(1))
            lat_max.append((est - true).abs().flatten(1).amax(1))
    with clock():
        add(rand.fid(ref))
        add(rand_rec.fid(ref))
        if classes is not None:
            add(classes.result())
    if lat_mse:
        mse_all, max_all = torch.cat(lat_mse), torch.cat(lat_max)
        metrics["latent_mse"] = float(mse_all.mean())
        flavors["latent_mse"] = f"space={latents.space}/N={len(mse_all)}"
        for eps in ev.recovery_eps:
            name = f"recovery@{eps:g}"
            metrics[name] = float((max_all < eps).double().mean())
            flavors[name] = f"all |z_i - z*_i| < {eps:g}/space={latents.space}/N={len(mse_all)}"
    else:
        info.setdefault("unavailable", {})["latent_mse"] = (
            f"latent_mse unavailable: '{type(inv).__name__}' inverts into a different latent "
            "space than it samples from, so the true latent of a random sample is unknown there."
        )
    info["rand_rec_invert_seconds"] = round(t_invert, 3)
    info["track_seconds"] = round(time.perf_counter() - t_tracks, 3)
    return metrics, flavors, info


def run(spec: RunSpec) -> dict[str, Any]:
    """Execute one run and write its record (JSON) and grid (PNG) under ``spec.out``."""
    started = _dt.datetime.now(_dt.UTC)
    t_start = time.perf_counter()
    _git_rev()  # the commit of the code this process runs, asked before the long work
    device = select(spec.device)
    res = resolve(spec)
    check_out(spec.out)
    check_feature_weights(res.eval_cfg.feature_net, res.eval_cfg.weights_dir or None)
    config = res.config()
    chash = stable_hash(config)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed % 2**32)

    dataset = DATASETS.get(spec.dataset)(res.dataset_cfg)
    splits: Splits = dataset.load()
    # Models (generator, fitted inverter, feature network) are keyed by the train split only, so
    # probe datasets that replace the test split reuse what was trained on their base dataset.
    data_fp = dataset.train_fingerprint()

    generator, gen_info, gen_key = None, None, None
    if res.generator_name is not None:
        generator, gen_info = obtain(
            res.generator_name, splits, data_fp, res.generator_sets, device=device
        )
        gen_key = gen_info["key"]

    inv = res.method_cls(res.method_cfg, generator, device=device, seed=spec.seed)
    ctx = FitContext(splits, spec.dataset, device, spec.seed, extra={"dataset_fp": data_fp})
    fit_seconds, fit_cached_flag = fit_cached(inv, res, ctx, gen_key, data_fp)

    # Only the images evaluated are read (a lazy split is never materialised whole); split=train
    # takes as many train images as the test split has, unless eval.n_test says otherwise.
    n_eval = res.eval_cfg.n_test or (splits.n_test if res.eval_cfg.split == "train" else 0)
    test = splits.take(res.eval_cfg.split, n_eval)
    test_dev = test.to(device)
    log(f"inverting {len(test)} test images with '{spec.method}'")
    with exact_fp32():  # like the metrics: float32 without TF32 (invbench.device)
        run_batched(inv.warmup, test_dev[:2], 2, device, "warm-up batch")
        if device.type == "cuda":  # cuBLAS / cuDNN set-up too, even where warmup() is empty
            run_batched(inv.invert, test_dev[:2], 2, device, "warm-up batch")
        with Stopwatch(device) as sw:  # synchronised on CUDA; warm-up excluded
            latents, batch = invert_all(inv, test_dev, res.eval_cfg.batch_size)
        sec_per_image = sw.seconds / len(test)
        recon = decode_all(inv, latents, batch)
    if not torch.isfinite(recon).all():
        raise UsageError(
            f"method '{spec.method}' produced NaN/inf reconstructions; check its settings "
            "(learning rate, steps)."
        )

    clock = _Clock()
    with clock():
        metrics, ci, flavors, unavailable = score_paired(
            recon, test, res.eval_cfg, device, spec.seed
        )
    metrics["sec_per_image"] = sec_per_image
    metrics["fit_seconds"] = fit_seconds
    if gen_info and gen_info.get("train_seconds"):  # a trained zoo generator, when it trained
        metrics["gen_train_seconds"] = gen_info["train_seconds"]
    track_info: dict[str, Any] = {}
    if res.eval_cfg.tracks:
        m, f, track_info = score_tracks(
            inv,
            res.eval_cfg,
            splits,
            data_fp,
            test,
            recon,
            latents,
            device,
            spec.seed,
            clock,
            batch,
        )
        metrics.update(m)
        flavors.update(f)
        unavailable.update(track_info.pop("unavailable", {}))
    for name, value in list(metrics.items()):
        if value is not None and not math.isfinite(value):
            metrics[name] = None
            unavailable[name] = f"{name} is not finite (the method produced NaN/inf images)."

    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    name = record_name(res, chash)
    k = min(res.eval_cfg.grid_images, len(test))
    if k:
        save_grid(out / f"{name}.png", test[:k], recon[:k])
    record = {
        "method": spec.method,
        "dataset": spec.dataset,
        "generator": res.generator_name or "own",
        "space": latents.space,
        "split": res.eval_cfg.split,
        "n_test": len(test),
        "metrics": {k: None if v is None else round(v, 6) for k, v in metrics.items()},
        "metric_flavors": flavors,
        "unavailable": unavailable,
        "ci": {k: [round(a, 6), round(b, 6)] for k, (a, b) in ci.items()},
        "config": config,
        "config_hash": chash,
        "seed": spec.seed,
        "grid": f"{name}.png" if k else None,
        "provenance": {
            "invbench": invbench.__version__,
            "git": _git_rev(),
            "torch": torch.__version__,
            **describe(device),  # "device": its name (+ memory, capability, CUDA on a GPU)
            "threads": torch.get_num_threads(),
            "host_cpus": os.cpu_count(),
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t_start, 2),
            "generator_key": gen_key,
            "generator_sha256": gen_info.get("checkpoint_sha256") if gen_info else None,
            "generator_train_seconds": gen_info["train_seconds"] if gen_info else None,
            "generator_train_threads": gen_info.get("train_threads") if gen_info else None,
            "fit_cached": fit_cached_flag,
            "invert_seconds": round(sec_per_image * len(test), 3),
            "invert_batch_size": batch,  # eval.batch_size, or what fitted in device memory
            "metric_seconds": round(clock.seconds, 3),
            **track_info,
            **inv.flavor(),
        },
    }
    artifacts.atomic_write_json(out / f"{name}.json", record)
    return record
