"""The protocol as three stages: ``prepare`` -> ``evaluate`` -> ``Record`` (``run`` composes them).

    prepare(spec)        resolve the configuration (defaults <- YAML <- --set), load the data,
                         obtain the generator (zoo, cached) and the fitted inverter (cached)
    evaluate(prepared)   the tracks of InvGAN Table 1, streamed through every registered metric:
                           test      invert the test images (timed: sec_per_image), decode them
                           interp    midpoints of N disjoint test pairs (2N images), decoded
                           rand      random samples of the model
                           rand_rec  the first N random samples inverted and decoded
                         and the metrics that walk the method's generator themselves (ppl)
                         -> Scores (values, flavors, intervals, per-image values, latents)
    make_record(...)     -> Record (invbench.record), written atomically with its per-image CSV,
                         latents (safetensors), a PNG grid and, on request, every reconstruction

The distribution tracks share one N: ``eval.fid_n``, by default the largest every track allows
(half the inverted test images: the midpoints need 2N of them); a track with fewer images uses
them all and its flavor says how many (``N=``). Metric time (features, statistics, distances)
is clocked apart from method time (inverting, decoding) and recorded in the provenance (the
decoding a metric does itself, ppl's, counts as metric time).

Under ``torchrun --nproc-per-node N -m invbench run ...`` (or ``invbench.run`` in a script
torchrun starts) the processes share the evaluation: each inverts and decodes its share of the
test images, interpolation pairs and random draws, in whole batches of ``eval.batch_size``, and
feeds its metrics with them; rank 0 merges the metrics' states (``Metric.states``), computes and
writes the one record (``provenance.world_size``), which every process returns. Whole batches
make what each image gets independent of N (inits are seeded by image content, random draws
come from one seeded stream), so per-image values equal a 1-process run's exactly and merged
sums (FID) differ only by rounding; N-fold parallelism needs N batches per track, hence a
small ``eval.batch_size`` on a small test split.

On CUDA (``--device cuda`` or ``auto``, see ``invbench.device``): timings are synchronised,
a batch that runs out of memory is halved and retried (results do not depend on the batch),
and inversion, synthesis and metrics run in float32 without TF32 so numbers match the CPU's.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as _dt
import functools
import io
import math
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

import invbench
from invbench import artifacts, distributed, preflight
from invbench import config as C
from invbench.artifacts import later
from invbench.config import (
    DIGITS,
    bounded,
    parse_sets,
    profile_dataset_keys,
    profiles_of,
    stable_hash,
)
from invbench.config import resolve as resolve_config
from invbench.data import Splits
from invbench.device import Stopwatch, describe, exact_fp32, run_batched, select
from invbench.errors import UsageError
from invbench.execution import Execution, ExecutionConfig, Precision
from invbench.generators.train import obtain
from invbench.inverter import FitContext, Inverter, Latents
from invbench.metrics import (
    METRICS,
    Batch,
    EvalContext,
    Metric,
    MetricSpec,
    Result,
    Unavailable,
    base_name,
)
from invbench.metrics.base import Factory
from invbench.progress import log
from invbench.record import Record, setting_of
from invbench.registry import DATASETS, GENERATORS, METHODS

# Bump when the protocol changes what a number means (it is part of every record's hash).
# v2: SWD draws each set's patch positions independently (ProGAN); the Table 1 tracks share one
# N; interpolation midpoints come from disjoint test pairs.
SUITE_VERSION = 2
DEFAULT_GENERATOR = "dcgan"


@dataclass
class EvalConfig:
    """How a run is scored. Defaults here are the suite's protocol (every eval knob lives here)."""

    # Test images to invert; 0 = the whole test split.
    n_test: int = bounded(0, ge=0, le=C.MAX_SAMPLES)
    # Which split is inverted: "train" inverts the first n_test training images (memorisation
    # probes, Creswell Table I, ICLR 2020 Fig. 3); "test" is the protocol's default.
    split: Literal["test", "train"] = "test"
    batch_size: int = bounded(512, ge=1, le=C.MAX_BATCH)  # images per ``invert`` call
    # Resamples for the confidence intervals of paired metrics (memory: n_test x bootstrap).
    bootstrap: int = bounded(1000, ge=0, le=100_000)
    grid_images: int = bounded(16, ge=0, le=1024)  # originals / reconstructions in the PNG grid
    tracks: bool = True  # False: the test track's per-image metrics and timings only (fast runs)
    # The one N of InvGAN Table 1's FID tracks (the paper: 500 / 50,000 at two sizes); 0 = the
    # largest the data allows, half the inverted test images (N midpoints need 2N images).
    fid_n: int = bounded(0, ge=0, le=C.MAX_SAMPLES)
    fid_small_n: int = bounded(100, ge=0, le=C.MAX_SAMPLES)  # FIDs at this N too: name@N=<n>
    # Random samples drawn (mode coverage); 0 = the size of the train split.
    n_rand: int = bounded(0, ge=0, le=C.MAX_SAMPLES)
    # torch-fidelity's defaults; the subset size is clipped to the smaller of the two sets.
    kid_subsets: int = bounded(100, ge=1, le=100_000)
    kid_subset_size: int = bounded(1000, ge=2, le=100_000)
    # Latent recovered: all |dz_i| < eps.
    recovery_eps: tuple[float, ...] = bounded((0.01, 0.1, 0.5), gt=0, le=1000)
    feature_net: Literal["auto", "inception", "domain"] = "auto"  # auto: Inception if found
    weights_dir: str = ""  # extra directory searched for pretrained weights ($INVBENCH_WEIGHTS too)
    metric_batch: int = bounded(500, ge=1, le=C.MAX_BATCH)  # images per feature-net / LPIPS call
    feature_epochs: int = bounded(12, ge=1, le=1000)  # epochs of the domain feature net (LeNet)
    metrics: tuple[str, ...] = later((), since=2)  # only these metrics (base names); () = all
    # Pairs of the perceptual path length (Karras et al. 2019), drawn per run from its seed.
    ppl_n: int = later(1000, since=2, **{C.BOUNDS: C.Bounds(ge=1, le=C.MAX_SAMPLES)})
    # Identity of a row (never averaged, never compared across): the numeric precision the
    # method's networks run in (fitting and inverting, through invbench.execution: this field is
    # the one knob, the execution layer reads it; the scored reconstructions are decoded and
    # measured in float32). (The scale profile is the run's: RunSpec.profile.)
    precision: Precision = later("fp32", since=2)

    def validate(self) -> None:
        if self.n_test < 0 or self.batch_size < 1 or self.bootstrap < 0 or self.grid_images < 0:
            raise ValueError("n_test, bootstrap, grid_images must be >= 0 and batch_size >= 1")
        if self.n_test == 1:
            raise ValueError("n_test must be 0 (the whole test split) or >= 2 (FID, KID need 2)")
        if min(self.fid_n, self.fid_small_n, self.n_rand) < 0:
            raise ValueError("fid_n, fid_small_n and n_rand must be >= 0")
        if self.kid_subsets < 1 or self.kid_subset_size < 2 or self.metric_batch < 1:
            raise ValueError("kid_subsets >= 1, kid_subset_size >= 2, metric_batch >= 1")
        if self.feature_epochs < 1:
            raise ValueError("feature_epochs must be >= 1")
        if any(e <= 0 for e in self.recovery_eps):
            raise ValueError("recovery_eps must be positive numbers, e.g. 0.01,0.1")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            known = ", ".join(s.name for s in METRICS.computed())
            raise ValueError(f"metrics: unknown {', '.join(unknown)}; known: {known}")


@dataclass
class RunSpec:
    method: str
    dataset: str = "digits"
    generator: str | None = None
    sets: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"
    out: Path | None = Path("results")  # None: nothing is written (the Python API's choice)
    save_images: bool = False  # every reconstruction as a PNG beside the record
    # The scale profile (invbench.config: "digits", "paper"); None: the dataset's declared scale.
    profile: str | None = None


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
    #: The profile asked for (``--profile``, else the dataset's scale) and the one the row
    #: carries: ``digits`` when a component that trains has no block of the one asked for.
    requested_profile: str = DIGITS
    profile: str = DIGITS
    profile_note: str = ""  # why the row is at digits scale on a paper-scale request
    # Speed knobs (compile, memory format): not part of the run's identity, so not in config().
    execution_cfg: ExecutionConfig = field(default_factory=ExecutionConfig)

    def config(self) -> dict[str, Any]:
        """The run's identity: every configuration (``later`` fields at their default left
        out, see ``invbench.artifacts.identity``), the seed, the protocol version and, when not
        ``digits``, the profile."""
        gen_cfg = None
        if self.generator_name is not None:
            cls = GENERATORS.get(self.generator_name)
            gen_cfg = artifacts.identity(
                _resolve(
                    cls.Config,
                    "generator",
                    self.generator_name,
                    self.generator_sets,
                    self.requested_profile,
                )  # fmt: skip
            )
        out = {
            "method": {"name": self.spec.method, **artifacts.identity(self.method_cfg)},
            "dataset": {"name": self.spec.dataset, **artifacts.identity(self.dataset_cfg)},
            "generator": None if gen_cfg is None else {"name": self.generator_name, **gen_cfg},
            "eval": artifacts.identity(self.eval_cfg),
            "seed": self.spec.seed,
            "suite_version": SUITE_VERSION,
        }
        if self.profile != DIGITS:  # digits rows keep the identity they had before profiles
            out["profile"] = self.profile
        return out

    def hash(self) -> str:
        return stable_hash(self.config())


def _resolve(
    cls: type,
    kind: str,
    name: str,
    sets: dict[str, str],
    profile: str | None = None,
    pinned: tuple[str, dict[str, Any]] | None = None,
) -> Any:
    """One component through the one resolver (``invbench.config.resolve``)."""
    return resolve_config(cls, kind, name, sets, profile, f"--set ({kind} '{name}')", pinned)


PROFILES = (DIGITS, "paper")  # the scales the shipped configurations declare


def _trains(method_cls: type[Inverter], cfg: Any, seed: int) -> bool:
    """Whether a method trains something with this configuration (read before anything is
    built: ``trains`` may depend on the configuration, e.g. an optimiser started by an
    encoder)."""
    try:
        return bool(method_cls(cfg, None, "cpu", seed).trains)
    except Exception:  # a method that cannot be built without its generator: assume it trains
        return bool(getattr(method_cls, "trains", True))


def _effective_profile(
    requested: str, spec: RunSpec, method_cls: type[Inverter], method_cfg: Any, gen: str | None
) -> tuple[str, str]:
    """The row's profile and, when it falls back to digits, the reason (for the log and the
    record): a component that trains (the method, or a zoo generator) without a block of the
    profile asked for runs at its digits-scale defaults, so the model is a digits-scale one."""
    if requested == DIGITS:
        return DIGITS, ""
    parts = []
    method_lacks = requested not in profiles_of("method", spec.method)
    if method_lacks and _trains(method_cls, method_cfg, spec.seed):
        parts.append(f"method '{spec.method}'")
    trained_gen = gen is not None and not getattr(GENERATORS.get(gen), "pretrained", False)
    if trained_gen and requested not in profiles_of("generator", str(gen)):
        parts.append(f"generator '{gen}'")
    if not parts:
        return requested, ""
    return DIGITS, (
        f"a digits-scale model on {spec.dataset}: {' and '.join(parts)} "
        f"{'have' if len(parts) > 1 else 'has'} no '{requested}' profile and "
        f"{'train' if len(parts) > 1 else 'trains'} at the digits-scale defaults; the row's "
        "profile is 'digits'."
    )


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def check_seed(seed: int) -> None:
    if not 0 <= seed <= C.MAX_SEED:
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


def check_precision(method: str, cls: type[Inverter], precision: str) -> None:
    """Refuse a precision the method does not run in: its record would claim one it never used."""
    if precision not in cls.precisions:
        able = sorted(name for name, c in METHODS.items() if precision in c.precisions)
        raise UsageError(
            f"method '{method}' runs its networks in {', '.join(cls.precisions)} only, not "
            f"precision={precision} (they do not go through invbench.execution). Drop the "
            f"--set, or use a method that does: {', '.join(able)}."
        )


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
    requested = spec.profile or str(getattr(dataset_cls, "scale", DIGITS))
    if requested not in PROFILES:
        raise UsageError(
            f"--profile {requested}: unknown scale profile; use one of {', '.join(PROFILES)}."
        )
    scoped = parse_sets(spec.sets)
    # An unprefixed key goes to the first component that declares it, in this order.
    owners: dict[str, type] = {"method": method_cls.Config, "eval": EvalConfig}
    owners["dataset"] = dataset_cls.Config
    if gen_cls is not None:
        owners["generator"] = gen_cls.Config
    owners["execution"] = ExecutionConfig
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
    method_cfg = _resolve(method_cls.Config, "method", spec.method, routed["method"], requested)
    space = getattr(method_cfg, "space", None)
    if gen_cls is not None and space is not None:
        gen_cls.check_space(space)  # before the generator trains, not after
    # The dataset settings the method's profile pins (the paper's resolution), below --set.
    pinned = (
        f"method '{spec.method}' profile {requested}",
        profile_dataset_keys("method", spec.method, requested),
    )
    profile, note = _effective_profile(requested, spec, method_cls, method_cfg, gen_name)
    return Resolved(
        spec=spec,
        method_cls=method_cls,
        method_cfg=method_cfg,
        dataset_cfg=_resolve(
            dataset_cls.Config, "dataset", spec.dataset, routed["dataset"], requested, pinned
        ),
        generator_name=gen_name,
        generator_sets=routed.get("generator", {}),
        eval_cfg=_resolve(EvalConfig, "eval", "default", routed["eval"]),
        requested_profile=requested,
        profile=profile,
        profile_note=note,
        execution_cfg=_resolve(ExecutionConfig, "execution", "default", routed["execution"]),
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


# -- stage 1: prepare --------------------------------------------------------------------------------
@dataclass
class Prepared:
    """A run ready to be scored: resolved configuration, data, generator, fitted inverter."""

    spec: RunSpec
    resolved: Resolved
    device: torch.device
    splits: Splits
    data_fp: dict[str, Any]  # the train split's fingerprint: the key of what trains on it
    inverter: Inverter
    generator_info: dict[str, Any] | None
    fit_seconds: float
    fit_cached: bool
    started: _dt.datetime
    t_start: float
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)  # network_summary
    data_source: dict[str, Any] = field(default_factory=dict)  # Dataset.source
    # The cache key of the model the run inverts: the zoo generator, or what a method that owns
    # its generator trained. Rows whose records share it per seed are paired in claim verdicts
    # (invbench.suites): the model's own seed-to-seed spread cancels in their differences.
    model_key: str | None = None

    @property
    def eval_cfg(self) -> EvalConfig:
        return self.resolved.eval_cfg

    @property
    def generator(self) -> str | None:
        return self.resolved.generator_name

    @property
    def config_hash(self) -> str:
        return self.resolved.hash()


def fit_cached(inv: Inverter, ctx: FitContext) -> tuple[float, bool]:
    """Run ``fit``, or load what it trains from the cache; return (fit seconds, from cache)."""
    if not inv.trains:
        with Stopwatch(ctx.device) as sw:
            inv.fit(ctx)
        return sw.seconds, False

    def build(key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        with Stopwatch(ctx.device) as sw:
            inv.fit(ctx)
        return inv.state_dict(), {"method": inv.name, "fit_seconds": sw.seconds}

    # parallel: under torchrun every rank fits together (data-parallel training, rank 0 stores)
    art = artifacts.cached("inverters", inv.fit_payload(ctx), build, parallel=True)
    if not art.built:
        inv.load_state_dict(art.tensors)
    return float(art.meta.get("fit_seconds", 0.0)), not art.built


def prepare(spec: RunSpec) -> Prepared:
    """Stage 1: everything before scoring, with every check that can fail done first."""
    from invbench.metrics.features import check_feature_network, check_feature_weights

    started = _dt.datetime.now(_dt.UTC)
    t_start = time.perf_counter()
    distributed.init()  # under torchrun: join the other processes (a no-op otherwise)
    _git_rev()  # the commit of the code this process runs, asked before the long work
    device = select(spec.device)
    res = resolve(spec)
    if res.profile_note:
        log(res.profile_note)
    elif res.profile != DIGITS:
        log(f"scale profile '{res.profile}' ({spec.dataset})")
    # The method's networks run under the run's precision (eval.precision) and speed knobs; a
    # precision the method or this device cannot run (tf32 on the CPU) is refused before any work.
    check_precision(spec.method, res.method_cls, res.eval_cfg.precision)
    execution = Execution(res.execution_cfg, device, res.eval_cfg.precision)
    if distributed.is_distributed():
        check_shardable(selected_metrics(res.eval_cfg))
    if spec.out is not None:
        check_out(spec.out)
    preflight.check_run(spec.out)  # cache and --out writable, with room, before any work
    check_feature_weights(res.eval_cfg.feature_net, res.eval_cfg.weights_dir or None)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed % 2**32)

    dataset = DATASETS.get(spec.dataset)(res.dataset_cfg)
    splits: Splits = dataset.load()
    data_source = dataset.source()  # logs an upscaled read
    # Every network the configuration needs, before anything trains (issue #19).
    has_labels = splits.train_labels is not None and bool(splits.num_classes)
    if any(s.needs == "distribution" for s in selected_metrics(res.eval_cfg)):
        ev = res.eval_cfg
        check_feature_network(ev.feature_net, ev.weights_dir or None, has_labels, spec.dataset)
    res.method_cls.preflight(res.method_cfg, has_labels)
    # Models (generator, fitted inverter, feature network) are keyed by the train split only, so
    # probe datasets that replace the test split reuse what was trained on their base dataset.
    data_fp = dataset.train_fingerprint()

    generator, gen_info = None, None
    if res.generator_name is not None:
        # A zoo generator is the model under study, shared by every execution policy: it trains
        # as the zoo trains it (fp32, eager), so no knob of a run changes the model it inverts.
        with exact_fp32():  # on CUDA too: no TF32 convolutions (PyTorch's cuDNN default)
            generator, gen_info = obtain(
                res.generator_name, splits, data_fp, res.generator_sets, device,
                res.requested_profile,
            )  # fmt: skip
    inv = res.method_cls(res.method_cfg, generator, device=device, seed=spec.seed)
    inv.execution = execution
    gen_key = gen_info["key"] if gen_info else None
    ctx = FitContext(splits, spec.dataset, device, spec.seed, {"dataset_fp": data_fp}, gen_key)
    with execution.matmul_mode():  # a method trains in the run's precision (TF32 only if asked)
        fit_seconds, from_cache = fit_cached(inv, ctx)
    nets = network_summary({**({"generator": generator} if generator else {}), **inv.networks()})
    for name, d in nets.items():
        widths = f" (widths {d['widths']})" if "widths" in d else ""
        log(f"{spec.method}: {name} {d['parameters']:,} parameters{widths}")
    model_key = gen_key or (inv.fit_key(ctx) if inv.trains else None)
    return Prepared(
        spec, res, device, splits, data_fp, inv, gen_info, fit_seconds, from_cache, started,
        t_start, nets, data_source, model_key,
    )  # fmt: skip


def network_summary(nets: dict[str, torch.nn.Module]) -> dict[str, dict[str, Any]]:
    """Parameter count of each network, and its widths when it declares them (a ``widths``
    attribute on the module or a submodule: feature maps per resolution, or per stage)."""
    out: dict[str, dict[str, Any]] = {}
    for name, net in nets.items():
        entry: dict[str, Any] = {"parameters": sum(p.numel() for p in net.parameters())}
        widths = next((m.widths for m in net.modules() if hasattr(m, "widths")), None)
        if widths:
            entry["widths"] = dict(widths) if isinstance(widths, dict) else list(widths)
        out[name] = entry
    return out


def load_method(
    method: str,
    dataset: str = "digits",
    generator: str | None = None,
    sets: Sequence[str] = (),
    seed: int = 0,
    device: str = "cpu",
) -> Inverter:
    """A fitted inverter, as ``invbench run`` would score it (trained once, then cached)."""
    spec = RunSpec(method, dataset, generator, list(sets), seed, device, out=None)
    return prepare(spec).inverter


# -- stage 2: evaluate -------------------------------------------------------------------------------
@dataclass
class Scores:
    """What ``evaluate`` measured: every metric's result, and what the outputs are made of."""

    result: Result
    test: torch.Tensor  # the inverted images (test split, or train for memorisation probes)
    recon: torch.Tensor
    latents: Latents
    info: dict[str, Any]  # provenance: clocks, batch sizes, feature network


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


def selected_metrics(ev: EvalConfig, names: Sequence[str] | None = None) -> list[MetricSpec]:
    """The registered metrics this evaluation computes: ``names`` (or ``eval.metrics``, or all);
    with ``eval.tracks`` off, only the test track's per-image metrics (paired, and latents such
    as ``typical_share``) and timings: no FID, no random samples, no classifier, no walk through
    the generator."""
    wanted = {base_name(n) for n in names or ev.metrics}
    specs = [s for s in METRICS.computed() if not wanted or s.name in wanted]
    if not ev.tracks:
        per_image = ("paired", "latents")
        specs = [
            s for s in specs if s.needs == "timing" or (s.needs in per_image and s.track == "test")
        ]
    return specs


class _Tracks:
    """The metric instances grouped by the track they read; feeds a batch to each in turn."""

    def __init__(self, metrics: list[Metric], clock: _Clock, chunk: int) -> None:
        self.by_track: dict[str, list[Metric]] = {}
        for m in metrics:
            self.by_track.setdefault(str(m.spec.track), []).append(m)
        self.clock, self.chunk = clock, chunk

    def wants(self, track: str) -> bool:
        return bool(self.by_track.get(track))

    def feed(self, track: str, batch: Batch) -> None:
        for i in range(0, len(batch.images), self.chunk):
            part = Batch(
                batch.images[i : i + self.chunk],
                None if batch.targets is None else batch.targets[i : i + self.chunk],
                None if batch.latents is None else batch.latents[i : i + self.chunk],
                None if batch.true_latents is None else batch.true_latents[i : i + self.chunk],
                batch.space,
                batch.start + i,
            )
            with self.clock():
                for m in self.by_track.get(track, []):
                    m.update(part)


def _eval_context(
    prep: Prepared, n_test: int, resolution: int, n_rand: int, labels: torch.Tensor | None
) -> EvalContext:
    from invbench.metrics.features import DomainNetConfig, domain_network, feature_network
    from invbench.metrics.reference import reference

    ev, splits, fp, dev = prep.eval_cfg, prep.splits, prep.data_fp, prep.device
    n = ev.fid_n or n_test // 2  # the one N of the Table 1 tracks
    fid_n = {"test": min(n, n_test), "interp": min(n, n_test // 2), "rand": min(n, n_rand)}
    fid_n["rand_rec"] = n
    domain_cfg = DomainNetConfig(epochs=ev.feature_epochs)

    def net() -> Any:
        return feature_network(splits, fp, ev.feature_net, ev.weights_dir or None, dev, domain_cfg)

    def ref(feature_net: Any) -> Any:
        # A lazy (paper-scale) train split streams through its DataLoader.
        train = splits.loader("train", ev.metric_batch, dev) if splits.lazy else splits.train
        return reference(feature_net, train, "train", fp, ev.metric_batch)

    def classifier() -> Any:
        if splits.train_labels is None or not splits.num_classes:
            raise Unavailable(f"dataset '{prep.spec.dataset}' has no class labels")
        return domain_network(splits, fp, dev, domain_cfg)

    return EvalContext(
        ev, dev, prep.spec.seed, resolution=resolution, channels=splits.channels,
        dataset=str(fp.get("dataset", prep.spec.dataset)), targets=ev.split, fid_n=fid_n,
        feature_net=net, reference=ref, classifier=classifier, labels=labels,
        model=prep.inverter, prior=getattr(prep.inverter.generator, "prior", ""),
    )  # fmt: skip


def instantiate(
    specs: list[MetricSpec], ctx: EvalContext, factory: Factory | None = None
) -> tuple[list[Metric], Result]:
    """Build each metric (with its registered code, or ``factory``); one that cannot run here
    is reported unavailable (null + why)."""
    made, result = [], Result()
    for spec in specs:
        make = factory or METRICS.factory(spec.name)
        assert make is not None, f"metric {spec.name} has no code"
        try:
            made.append(make(spec, ctx))
        except Unavailable as e:
            msg = str(e) if str(e).startswith(spec.name) else f"{spec.name} unavailable: {e}"
            result.values[spec.name] = None
            result.unavailable[spec.name] = msg
            log(msg)
    return made, result


def evaluate(prep: Prepared, metrics: Sequence[str] | None = None) -> Scores:
    """Stage 2: invert the test images (timed), build the tracks, stream them through the
    metrics (``metrics``: only these names; default ``eval.metrics``, else all)."""
    with exact_fp32():  # float32 without TF32 for inversion, synthesis and metrics
        return _evaluate(prep, metrics)


def _evaluate(prep: Prepared, names: Sequence[str] | None) -> Scores:
    ev, inv, device, seed = prep.eval_cfg, prep.inverter, prep.device, prep.spec.seed
    specs = selected_metrics(ev, names)
    if distributed.is_distributed():
        check_shardable(specs)  # before the inversion
    # Only the images evaluated are read (a lazy split is never materialised whole); split=train
    # takes as many train images as the test split has, unless eval.n_test says otherwise.
    n_eval = ev.n_test or (prep.splits.n_test if ev.split == "train" else 0)
    test = prep.splits.take(ev.split, n_eval)
    # This process's share of the test images: whole batches (see the module docstring).
    mine = distributed.shard_batches(len(test), ev.batch_size)
    batches, world = -(-len(test) // ev.batch_size), distributed.world_size()
    on = f" on {world} processes" if world > 1 else ""
    log(f"inverting {len(test)} {ev.split} images with '{prep.spec.method}'{on}")
    if batches < world:
        log(f"only {batches} batch(es) of eval.batch_size={ev.batch_size} for {world} processes: "
            "some have no test image to invert. For N-fold parallelism set eval.batch_size to at "
            f"most {max(1, len(test) // world)} (--set eval.batch_size=...).")  # fmt: skip
    first = test[:2].to(device)
    own, own_recon, batch = None, torch.zeros(0, *test.shape[1:]), ev.batch_size
    # The method's networks under the run's execution policy (TF32 only for precision=tf32).
    with inv.execution.matmul_mode():
        with inv.execution.compiling():  # compilation happens here, timed apart
            run_batched(inv.warmup, first, 2, device, "warm-up batch")
            if device.type == "cuda":  # cuBLAS / cuDNN set-up too, even where warmup() is empty
                run_batched(inv.invert, first, 2, device, "warm-up batch")
        with Stopwatch(device) as sw:  # synchronised on CUDA; warm-up excluded
            if len(mine):
                own, batch = invert_all(inv, test[mine.start : mine.stop].to(device), batch)
    if own is not None:
        own_recon = decode_all(inv, own, batch)
    latents, recon = _gather_latents(own), distributed.gather_cat(own_recon)
    invert_seconds = max(distributed.gather_objects(sw.seconds))  # the slowest process's
    if not torch.isfinite(recon).all():
        raise UsageError(
            f"method '{prep.spec.method}' produced NaN/inf reconstructions; check its settings "
            "(learning rate, steps)."
        )
    n_rand = ev.n_rand or prep.splits.n_train
    labels = prep.splits.train_labels if ev.split == "train" else prep.splits.test_labels
    labels = None if labels is None else labels[: len(test)]
    ctx = _eval_context(prep, len(test), int(test.shape[-1]), n_rand, labels)
    ctx.timings.update(
        invert_seconds=invert_seconds, n_test=len(test), fit_seconds=prep.fit_seconds
    )
    if prep.generator_info and prep.generator_info.get("train_seconds"):
        ctx.timings["gen_train_seconds"] = prep.generator_info["train_seconds"]

    clock = _Clock()
    t0 = time.perf_counter()
    with clock():
        made, result = instantiate(specs, ctx)
    info: dict[str, Any] = {"metric_setup_seconds": round(time.perf_counter() - t0, 3)}
    tracks = _Tracks(made, clock, ev.metric_batch)
    assert own is None or len(own) == len(mine)
    for i in range(mine.start, mine.stop, ev.batch_size):  # fed a batch at a time, as inverted
        j, k = i - mine.start, min(i + ev.batch_size, mine.stop) - mine.start
        assert own is not None
        part = Batch(own_recon[j:k], test[i : i + k - j], own.tensor[j:k], None, own.space, i)
        tracks.feed("test", part)

    t_tracks = time.perf_counter()
    if tracks.wants("interp") and ctx.fid_n["interp"] >= 1:
        pairs = ctx.fid_n["interp"]
        a, b = disjoint_pairs(len(latents), pairs, seed)
        mid = Latents((latents.tensor[a] + latents.tensor[b]) / 2, latents.space)
        share = distributed.shard_batches(pairs, ev.batch_size)
        for i in range(share.start, share.stop, ev.batch_size):
            tracks.feed(
                "interp", Batch(decode_all(inv, mid[i : i + ev.batch_size], batch), start=i)
            )
    info["rand_rec_invert_seconds"] = _random_tracks(prep, tracks, ctx, n_rand, batch)
    info["track_seconds"] = round(time.perf_counter() - t_tracks, 3)

    with clock():
        if distributed.is_distributed():
            ctx.prepare_compute()  # on every process, before rank 0 alone computes
            _merge_states(made)
        if distributed.is_main():
            for m in made:
                result.merge(m.compute())
    result = distributed.broadcast_object(result)  # every process returns rank 0's scores
    for name, value in list(result.values.items()):
        if value is not None and not math.isfinite(value):
            result.values[name] = None
            result.unavailable[name] = f"{name} is not finite (the method produced NaN/inf images)."
    info.update(invert_seconds=round(invert_seconds, 3), invert_batch_size=batch)
    info["metric_seconds"] = round(clock.seconds, 3)
    net = ctx.made("net")
    if net is not None:
        info["feature_net"] = net.flavor
        info["feature_net_test_accuracy"] = getattr(net, "test_accuracy", None)
    return Scores(result, test, recon, latents, distributed.broadcast_object(info))


def check_shardable(specs: Sequence[MetricSpec]) -> None:
    """Refuse, before any work, a sharded evaluation of metrics whose state does not say how
    the processes' shares merge (``Metric.states``)."""
    bad = []
    for spec in specs:
        make = METRICS.factory(spec.name)
        if isinstance(make, type) and issubclass(make, Metric) and not make.mergeable():
            bad.append(spec.name)
    if bad:
        raise UsageError(
            f"metric(s) {', '.join(bad)} keep state without declaring how several processes' "
            "states merge (Metric.states), so this run cannot be sharded under torchrun. Run it "
            "as one process, or leave them out (--set eval.metrics=...)."
        )


def _gather_latents(own: Latents | None) -> Latents:
    """Every process's latents of the test images, in rank order (that is, in test order)."""
    if not distributed.is_distributed():
        assert own is not None
        return own
    mine = None if own is None else (own.tensor.detach().cpu(), own.space)
    parts = [p for p in distributed.gather_objects(mine) if p is not None]
    return Latents(torch.cat([t for t, _ in parts]), parts[0][1])


def _merge_states(made: list[Metric]) -> None:
    """Turn rank 0's metrics into those of the whole tracks: every process's states, gathered
    in rank order, merged (``Metric.merge``)."""
    states = distributed.gather_to_main({m.spec.name: m.state() for m in made})
    if states is None:  # not rank 0
        return
    names = [sorted(s) for s in states]
    if any(n != names[0] for n in names):
        raise RuntimeError(
            f"the processes built different metrics ({names}); a weight file seen by some "
            "processes only? Give every process the same files (eval.weights_dir)."
        )
    for m in made:
        m.merge([s[m.spec.name] for s in states])


def disjoint_pairs(n: int, pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """IntTsFID's pairs (InvGAN Table 1): ``pairs`` pairs of 2 * ``pairs`` distinct test images
    out of ``n``, drawn from ``seed``: no image is in two pairs."""
    if 2 * pairs > n:
        raise ValueError(f"{pairs} disjoint pairs need {2 * pairs} images; there are {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:pairs], perm[pairs : 2 * pairs]


def _random_tracks(
    prep: Prepared, tracks: _Tracks, ctx: EvalContext, n_rand: int, batch: int
) -> float:
    """RandFID and mode coverage on ``n_rand`` random samples; RandRecFID and latent recovery on
    the first N of them, inverted. Samples are drawn ``eval.batch_size`` at a time (what they
    are depends on it); ``batch``, the size that fitted the test inversion, bounds decoding and
    inversion (what they give does not). A sharded evaluation gives each process a contiguous run
    of whole draws: it draws every earlier one too (drawing latents is cheap; one generator
    makes them in order), but decodes and inverts its own alone. The draws whose samples are
    inverted (the first N), the costly part, are shared out evenly; the last process also takes
    the draws that are only decoded. Returns the seconds spent inverting them (the slowest
    process's)."""
    inv, ev = prep.inverter, prep.eval_cfg
    want_rand = n_rand if tracks.wants("rand") else 0
    want_rec = ctx.fid_n["rand_rec"] if tracks.wants("rand_rec") else 0
    draws = -(-max(want_rand, want_rec) // ev.batch_size)
    inverted = -(-want_rec // ev.batch_size)
    world = distributed.world_size()
    if inverted >= world:
        mine = distributed.shard(inverted)
        if distributed.rank() == world - 1:  # the last process decodes the rest too
            mine = range(mine.start, draws)
    else:
        mine = distributed.shard(draws)
    g = torch.Generator().manual_seed(prep.spec.seed)
    seconds = 0.0
    for j in range(mine.stop):
        lat = inv.sample(ev.batch_size, generator=g)
        if j < mine.start:
            continue
        start = j * ev.batch_size  # of this draw's first sample, in both tracks
        imgs = decode_all(inv, lat, batch)
        true = lat.tensor.detach().cpu()
        k = min(len(imgs), want_rand - start)
        if k > 0:
            tracks.feed(
                "rand", Batch(imgs[:k], true_latents=true[:k], space=lat.space, start=start)
            )
        k = min(len(imgs), want_rec - start)
        if k <= 0:
            continue
        with Stopwatch(prep.device) as sw, inv.execution.matmul_mode():
            found, _ = invert_all(inv, imgs[:k].to(prep.device), batch)
        seconds += sw.seconds
        rec = decode_all(inv, found, batch)
        tracks.feed(
            "rand_rec", Batch(rec, imgs[:k], found.tensor, true[:k], found.space, start=start)
        )
    return round(max(distributed.gather_objects(seconds)), 3)


# -- stage 3: the record and its files ----------------------------------------------------------------
def record_name(res: Resolved, config_hash: str) -> str:
    gen = res.generator_name or "own"
    return f"{res.spec.method}__{res.spec.dataset}__{gen}__s{res.spec.seed}__{config_hash}"


def where_measured(prep: Prepared) -> dict[str, Any]:
    """The provenance every record starts with (a run's, an editing score's): the code, torch,
    the device, threads, and the keys of the models it used."""
    gen_info = prep.generator_info
    return {
        "invbench": invbench.__version__,
        "git": _git_rev(),
        "torch": torch.__version__,
        **describe(prep.device),  # "device": its name (+ memory, capability, CUDA on a GPU)
        "threads": torch.get_num_threads(),  # per process
        "generator_key": gen_info["key"] if gen_info else None,
        "model_key": prep.model_key,  # pairs rows over seeds (invbench.suites)
    }


def make_record(prep: Prepared, scores: Scores) -> Record:
    """Stage 3: the typed record of a prepared, evaluated run (nothing written yet)."""
    res, ev, inv = prep.resolved, prep.eval_cfg, prep.inverter
    config = res.config()
    gen_info = prep.generator_info
    r = scores.result
    flavors = dict(r.flavors)
    flavors.update({f"method.{k}": str(v) for k, v in inv.flavor().items()})
    provenance = {
        **where_measured(prep),
        "world_size": distributed.world_size(),  # processes that evaluated it (torchrun)
        "host_cpus": os.cpu_count(),
        "started": prep.started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - prep.t_start, 2),
        "generator_sha256": gen_info.get("checkpoint_sha256") if gen_info else None,
        "generator_train_seconds": gen_info["train_seconds"] if gen_info else None,
        "generator_train_threads": gen_info.get("train_threads") if gen_info else None,
        "fit_cached": prep.fit_cached,
        **({"profile_note": res.profile_note} if res.profile_note else {}),
        "networks": prep.networks,
        **({"data_source": prep.data_source} if prep.data_source else {}),
        "execution": inv.execution.describe(),
        **scores.info,
        **inv.flavor(),  # also in metric_flavors (method.<key>)
        **inv.diagnostics(),
    }
    return Record(
        method=prep.spec.method,
        dataset=prep.spec.dataset,
        generator=res.generator_name or "own",
        space=scores.latents.space,
        seed=prep.spec.seed,
        metrics={k: None if v is None else round(v, 6) for k, v in r.values.items()},
        config=config,
        config_hash=stable_hash(config),
        setting=setting_of(config),
        split=ev.split,
        n_test=len(scores.test),
        precision=ev.precision,
        profile=res.profile,
        metric_flavors=flavors,
        unavailable=dict(r.unavailable),
        ci={k: [round(a, 6), round(b, 6)] for k, (a, b) in r.ci.items()},
        provenance=provenance,
    )


def save_grid(
    path: Path, originals: torch.Tensor, recons: torch.Tensor, ids: Sequence[str], title: str
) -> None:
    """Originals (top row) above their reconstructions (bottom row), each column its image id."""
    from invbench.plots import save_image_table

    save_image_table(
        path, torch.stack([originals, recons]), row_labels=["original", "reconstruction"],
        col_labels=list(ids), title=title,
    )  # fmt: skip


# The interpolation strip: t along the line between two test codes (the midpoint, t = 0.5, is
# what IntTsFID scores), for the first pairs of the same disjoint pairs.
INTERP_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
INTERP_PAIRS = 4
EXTREMES = 4  # best and worst reconstructions shown by the first per-image metric


def save_interpolation(path: Path, prep: Prepared, scores: Scores, batch: int, title: str) -> bool:
    """Rows: disjoint test pairs (a, b); columns: a, decode((1 - t) z_a + t z_b) per step, b.
    False (nothing written) when there are fewer than two test images."""
    from invbench.plots import save_image_table

    pairs = min(INTERP_PAIRS, len(scores.latents) // 2)
    if pairs < 1:
        return False
    a, b = disjoint_pairs(len(scores.latents), pairs, prep.spec.seed)
    za, zb = scores.latents.tensor[a], scores.latents.tensor[b]
    with exact_fp32():
        steps = [
            decode_all(prep.inverter, Latents((1 - t) * za + t * zb, scores.latents.space), batch)
            for t in INTERP_STEPS
        ]
    tiles = torch.stack([scores.test[a].cpu(), *(x.cpu() for x in steps), scores.test[b].cpu()], 1)
    cols = ["image a", *(f"t = {t:g}" for t in INTERP_STEPS), "image b"]
    save_image_table(path, tiles, col_labels=cols, title=title,
                     row_labels=[f"pair {i + 1}" for i in range(pairs)])  # fmt: skip
    return True


def save_extremes(path: Path, scores: Scores, ids: Sequence[str], metric: str, title: str) -> None:
    """The ``EXTREMES`` worst and best reconstructions by ``metric`` (its direction from the
    registry), originals above reconstructions, each column its rank, id and value."""
    from invbench.plots import save_image_table

    v = scores.result.per_image[metric].detach().cpu().double()
    k = min(EXTREMES, len(v) // 2) or 1
    order = torch.argsort(v, descending=not METRICS.get(metric).higher_better)  # best first
    picks = [("worst", i) for i in order.flip(0)[:k]] + [("best", i) for i in order[:k]]
    idx = torch.stack([i for _, i in picks])
    tiles = torch.stack([scores.test[idx].cpu(), scores.recon[idx].cpu()])
    fmt = METRICS.get(metric).format
    cols = [f"{kind}\n{ids[int(i)]}\n{metric} {fmt(float(v[i]))}" for kind, i in picks]
    save_image_table(path, tiles, row_labels=["original", "reconstruction"], col_labels=cols,
                     title=title)  # fmt: skip


def per_image_csv(ids: Sequence[str], per_image: dict[str, torch.Tensor]) -> str:
    """One row per image: its id, then each paired metric (mse, mae, psnr, ssim, lpips, ...)."""
    names = [s.name for s in METRICS.specs() if s.name in per_image]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", *names])
    for i, image_id in enumerate(ids):
        w.writerow([image_id, *(f"{float(per_image[n][i]):.8g}" for n in names)])
    return buf.getvalue()


def save_images(folder: Path, ids: Sequence[str], images: torch.Tensor) -> None:
    """Each image as ``<id>.png`` (8-bit; grey or RGB) in ``folder``, written atomically."""
    from PIL import Image

    u8 = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for image_id, a in zip(ids, u8, strict=True):
        img = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
        with artifacts.atomic_path(folder / f"{image_id}.png") as tmp:
            img.save(tmp, format="png")


def write_outputs(prep: Prepared, scores: Scores, record: Record) -> Record:
    """Beside the record: per-image scores (CSV), the latents (safetensors), the PNG grid and,
    with ``save_images``, every reconstruction. The record is written last: a cell is done only
    when its record exists, so a killed run is recomputed, never half-counted."""
    from safetensors.torch import save_file

    assert prep.spec.out is not None
    out = Path(prep.spec.out)
    out.mkdir(parents=True, exist_ok=True)
    name = record_name(prep.resolved, record.config_hash)
    ids = [f"{record.split}{i:05d}" for i in range(len(scores.test))]
    files: dict[str, str] = {}
    if scores.result.per_image:
        artifacts.atomic_write_text(
            out / f"{name}.per_image.csv", per_image_csv(ids, scores.result.per_image)
        )
        files["per_image"] = f"{name}.per_image.csv"
    with artifacts.atomic_path(out / f"{name}.latents.safetensors") as tmp:
        meta = {"space": scores.latents.space, "split": record.split, "ids": f"{ids[0]}..{ids[-1]}"}
        save_file({"latents": scores.latents.tensor.contiguous()}, str(tmp), metadata=meta)
    files["latents"] = f"{name}.latents.safetensors"
    title = (f"{record.method} on {record.dataset} ({record.generator}), space {record.space}, "
             f"seed {record.seed}")  # fmt: skip
    k = min(prep.eval_cfg.grid_images, len(scores.test))
    if k:  # eval.grid_images = 0: no PNG at all (grid, interpolation strip, best / worst)
        save_grid(out / f"{name}.png", scores.test[:k], scores.recon[:k], ids[:k], title)
        files["grid"] = f"{name}.png"
        batch = int(scores.info.get("invert_batch_size") or prep.eval_cfg.batch_size)
        if save_interpolation(out / f"{name}.interp.png", prep, scores, batch, title):
            files["interp"] = f"{name}.interp.png"
        ranked = [s.name for s in METRICS.specs() if s.name in scores.result.per_image]
        if ranked and len(scores.test) >= 2:
            save_extremes(out / f"{name}.extremes.png", scores, ids, ranked[0], title)
            files["extremes"] = f"{name}.extremes.png"
    if prep.spec.save_images:
        save_images(out / f"{name}.images", ids, scores.recon)
        files["images"] = f"{name}.images"
    record = dataclasses.replace(record, files=files)
    record.write(out / f"{name}.json")
    return record


def run(spec: RunSpec) -> Record:
    """Prepare, evaluate, and (unless ``spec.out`` is None) write the record and its files.
    Under torchrun rank 0 alone writes, and every process returns its record."""
    prep = prepare(spec)
    scores = evaluate(prep)
    record = make_record(prep, scores)
    if spec.out is not None and distributed.is_main():
        record = write_outputs(prep, scores, record)
    return distributed.broadcast_object(record)
