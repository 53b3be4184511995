"""The protocol runner: one (method, dataset, generator, configuration, seed) -> one result record.

dataset (train / test split, images in [-1, 1])
  -> generator (from the zoo, trained and cached; or owned by the method)
  -> inverter.fit(context)                     cached by content hash
  -> inverter.invert(test images) -> latents   timed: sec_per_image
  -> inverter.decode(latents) -> reconstructions
  -> metrics -> result record (JSON, written atomically) + PNG grid
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import invbench
from invbench import artifacts
from invbench.config import as_dict, build, config_file, load_yaml, parse_sets, stable_hash
from invbench.data import Splits
from invbench.errors import UsageError
from invbench.generators.train import obtain
from invbench.inverter import FitContext, Inverter, Latents
from invbench.metrics.paired import bootstrap_ci, compute_paired
from invbench.progress import log
from invbench.registry import DATASETS, GENERATORS, METHODS

SUITE_VERSION = 1  # bump when the protocol changes what a number means
DEFAULT_GENERATOR = "dcgan"


@dataclass
class EvalConfig:
    """How a run is scored. Defaults here are the suite's protocol."""

    n_test: int = 0  # number of test images to invert; 0 = the whole test split
    batch_size: int = 512  # images per ``invert`` call
    bootstrap: int = 1000  # resamples for the confidence intervals of paired metrics
    grid_images: int = 16  # originals / reconstructions shown in the PNG grid

    def validate(self) -> None:
        if self.n_test < 0 or self.batch_size < 1 or self.bootstrap < 0 or self.grid_images < 0:
            raise ValueError("n_test, bootstrap, grid_images must be >= 0 and batch_size >= 1")


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


def resolve(spec: RunSpec) -> Resolved:
    """Resolve every component's configuration and route ``--set`` keys to their owners."""
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
        routed[hits[0]][key] = value
    return Resolved(
        spec=spec,
        method_cls=method_cls,
        method_cfg=_resolve(method_cls.Config, "method", spec.method, routed["method"]),
        dataset_cfg=_resolve(dataset_cls.Config, "dataset", spec.dataset, routed["dataset"]),
        generator_name=gen_name,
        generator_sets=routed.get("generator", {}),
        eval_cfg=_resolve(EvalConfig, "eval", "default", routed["eval"]),
    )


def _git_rev() -> str:
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


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for, but no CUDA device is visible. Use --device cpu."
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UsageError(f"--device must be cpu or cuda[:N], got '{name}'.")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def invert_all(inv: Inverter, images: torch.Tensor, batch_size: int) -> Latents:
    parts = [inv.invert(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return Latents.cat([Latents(p.tensor.detach().cpu(), p.space) for p in parts])


def decode_all(inv: Inverter, latents: Latents, batch_size: int) -> torch.Tensor:
    parts = [
        inv.decode(latents[i : i + batch_size]).cpu() for i in range(0, len(latents), batch_size)
    ]
    return torch.cat(parts)


def fit_cached(
    inv: Inverter, res: Resolved, ctx: FitContext, gen_key: str | None, data_fp: dict[str, Any]
) -> tuple[float, bool]:
    """Run ``fit`` or load its result from the cache; return (fit seconds, came from cache)."""
    if not inv.trains:
        t0 = time.perf_counter()
        inv.fit(ctx)
        return time.perf_counter() - t0, False
    key = stable_hash(
        {
            "method": res.spec.method,
            "config": as_dict(res.method_cfg),
            "generator": gen_key,
            "data": data_fp,
            "seed": res.spec.seed,
            "v": SUITE_VERSION,
        }
    )
    cached = artifacts.load_artifact("inverters", key)
    if cached is not None:
        inv.load_state_dict(cached[0])
        return float(cached[1].get("fit_seconds", 0.0)), True
    t0 = time.perf_counter()
    inv.fit(ctx)
    _sync(ctx.device)
    seconds = time.perf_counter() - t0
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


def run(spec: RunSpec) -> dict[str, Any]:
    """Execute one run and write its record (JSON) and grid (PNG) under ``spec.out``."""
    started = _dt.datetime.now(_dt.UTC)
    t_start = time.perf_counter()
    res = resolve(spec)
    device = _device(spec.device)
    config = res.config()
    chash = stable_hash(config)
    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed % 2**32)

    dataset = DATASETS.get(spec.dataset)(res.dataset_cfg)
    splits: Splits = dataset.load()
    data_fp = dataset.fingerprint()

    generator, gen_info, gen_key = None, None, None
    if res.generator_name is not None:
        generator, gen_info = obtain(
            res.generator_name, splits, data_fp, res.generator_sets, device=device
        )
        gen_key = gen_info["key"]

    inv = res.method_cls(res.method_cfg, generator, device=device, seed=spec.seed)
    ctx = FitContext(splits=splits, dataset=spec.dataset, device=device, seed=spec.seed)
    fit_seconds, fit_cached_flag = fit_cached(inv, res, ctx, gen_key, data_fp)

    test = splits.test
    if res.eval_cfg.n_test:
        test = test[: res.eval_cfg.n_test]
    test_dev = test.to(device)
    log(f"inverting {len(test)} test images with '{spec.method}'")
    inv.warmup(test_dev)
    _sync(device)
    t0 = time.perf_counter()
    latents = invert_all(inv, test_dev, res.eval_cfg.batch_size)
    _sync(device)
    sec_per_image = (time.perf_counter() - t0) / len(test)
    recon = decode_all(inv, latents, res.eval_cfg.batch_size)
    if not torch.isfinite(recon).all():
        raise UsageError(
            f"method '{spec.method}' produced NaN/inf reconstructions; check its settings "
            "(learning rate, steps)."
        )

    per_image = compute_paired(recon, test)
    metrics: dict[str, float] = {k: float(v.mean()) for k, v in per_image.items()}
    ci = {
        k: list(bootstrap_ci(v.numpy(), res.eval_cfg.bootstrap, seed=spec.seed))
        for k, v in per_image.items()
        if res.eval_cfg.bootstrap
    }
    metrics["sec_per_image"] = sec_per_image
    metrics["fit_seconds"] = fit_seconds

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
        "n_test": len(test),
        "metrics": {k: round(v, 6) for k, v in metrics.items()},
        "metric_flavors": {},
        "ci": {k: [round(a, 6), round(b, 6)] for k, (a, b) in ci.items()},
        "config": config,
        "config_hash": chash,
        "seed": spec.seed,
        "grid": f"{name}.png" if k else None,
        "provenance": {
            "invbench": invbench.__version__,
            "git": _git_rev(),
            "torch": torch.__version__,
            "device": device_name(device),
            "threads": torch.get_num_threads(),
            "host_cpus": os.cpu_count(),
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t_start, 2),
            "generator_key": gen_key,
            "generator_train_seconds": gen_info["train_seconds"] if gen_info else None,
            "fit_cached": fit_cached_flag,
            **inv.flavor(),
        },
    }
    artifacts.atomic_write_json(out / f"{name}.json", record)
    return record
