"""Mode coverage of a method-owned GAN over seeds: the class shares of its random samples.

For each seed it trains the method's generator (``lia`` / ``lia-mlp`` / ``lia-stylegan``:
stage 1 only, the decoder GAN of §5.1; ``invgan``: the whole model, whose generator is trained
jointly), or with ``--generator NAME`` a zoo generator (``dcgan``: the suites' baselines, its
``generator.seed`` set to the seed; cached in INVBENCH_HOME like the runner's), with the
configuration as the runner resolves it (defaults <- YAML <- --set),
draws ``--n`` random samples, labels them with the dataset's domain classifier (the runner's
``class_share_min`` / ``class_share_max`` metric) and prints one JSON line per seed:

    python bench/coverage.py --method lia --seeds 0 1 2 3 4 5 [--set key=value ...]
    python bench/coverage.py --generator dcgan --seeds 0 1 2 --set batch_size=32 --set ema=0

The zoo's bar is every class between 4% and 20% of the samples (10 classes: 10% is balanced).
Each seed trains from scratch (checkpoints are dropped; use a fresh INVBENCH_HOME). Run it at
OMP_NUM_THREADS=1, in the background, beside other jobs. With ``--grid DIR`` it writes a PNG of
64 samples per seed.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

import torch

from invbench import artifacts
from invbench.config import resolve
from invbench.errors import UsageError
from invbench.generators.train import obtain
from invbench.inverter import FitContext
from invbench.metrics import METRICS, Batch, EvalContext
from invbench.metrics.features import domain_network
from invbench.registry import DATASETS, GENERATORS, METHODS
from invbench.runner import EvalConfig

LOW, HIGH = 0.04, 0.20  # the zoo's coverage bar


@functools.cache
def _digits() -> tuple:
    """The digits splits and the domain classifier that labels samples (loaded once per process,
    not once per seed)."""
    dataset = DATASETS.get("digits")
    ds = dataset(dataset.Config())
    splits = ds.load()
    return splits, ds.train_fingerprint(), domain_network(splits, ds.train_fingerprint())


def generator_coverage(name: str, seed: int, sets: dict[str, str], n: int, grid: str) -> dict:
    """A zoo generator as a suite's `generator:` row trains it, seeded by ``seed``."""
    splits, fingerprint, net = _digits()
    t0 = time.perf_counter()
    gen, _ = obtain(name, splits, fingerprint, {**sets, "seed": str(seed)})
    seconds = time.perf_counter() - t0
    g = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        images = gen.synthesize(gen.sample_z(n, generator=g))
    return _shares(f"generator:{name}", seed, sets, images, net, grid, seconds)


def coverage(method: str, seed: int, sets: dict[str, str], n: int, grid: str) -> dict:
    splits, _, net = _digits()
    cls = METHODS.get(method)
    cfg = resolve(cls.Config, "method", method, sets)
    inv = cls(cfg, None, "cpu", seed)
    ctx = FitContext(splits, "digits", torch.device("cpu"), seed)
    t0 = time.perf_counter()
    if hasattr(inv, "train_decoder"):  # LIA: stage 1 only, the GAN whose coverage is asked
        inv.build(splits.channels, splits.resolution)
        key = f"coverage-{method}-{seed}"
        inv.train_decoder(ctx, key)
        artifacts.drop_checkpoint("lia", key)
        inv.generator.eval()
    else:
        inv.fit(ctx)
    seconds = time.perf_counter() - t0
    g = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        lat = inv.sample(n, generator=g)
        images = inv.decode(lat)
    return _shares(method, seed, sets, images, net, grid, seconds)


def _shares(
    method: str,
    seed: int,
    sets: dict[str, str],
    images: torch.Tensor,
    net: torch.nn.Module,
    grid: str,
    seconds: float,
) -> dict:
    n = len(images)
    # The runner's own metric (class_share_min / max), fed the samples as its rand track.
    spec = METRICS.get("class_share_min")
    make = METRICS.factory(spec.name)
    assert make is not None
    shares = make(spec, EvalContext(EvalConfig(), torch.device("cpu"), classifier=lambda: net))
    shares.update(Batch(images))
    frac = (shares.counts.double() / n).tolist()  # type: ignore[attr-defined]
    if grid:
        from torchvision.utils import save_image

        name = method.replace(":", "-")
        save_image(images[:64] * 0.5 + 0.5, f"{grid}/{name}-seed{seed}.png", nrow=8)
    return {
        "method": method,
        "seed": seed,
        "sets": sets,
        "min": round(min(frac), 3),
        "max": round(max(frac), 3),
        "covered": min(frac) >= LOW and max(frac) <= HIGH,
        "shares": [round(f, 3) for f in frac],
        "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    methods = ["lia", "lia-mlp", "lia-stylegan", "invgan"]
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--method", choices=methods)
    who.add_argument("--generator", help="a zoo generator (e.g. dcgan), seeded by each seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--grid", default="", help="folder for a PNG of samples per seed")
    args = p.parse_args(argv)
    if bad := [s for s in args.set if "=" not in s]:
        p.error(f"--set takes KEY=VALUE, got {bad[0]!r}")  # exit 2
    sets = dict(s.split("=", 1) for s in args.set)
    try:  # names and --set values, before anything trains
        if args.generator:
            resolve(GENERATORS.get(args.generator).Config, "generator", args.generator, sets)
        else:
            resolve(METHODS.get(args.method).Config, "method", args.method, sets)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for seed in args.seeds:
        if args.generator:
            row = generator_coverage(args.generator, seed, sets, args.n, args.grid)
        else:
            row = coverage(args.method, seed, sets, args.n, args.grid)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
