"""Speed of batched latent optimisation on the embedded default (creswell, digits, dcgan).

Reports, as the median of ``--repeats`` runs:

- seconds per image of a full ``creswell`` inversion at batch 1 and at batch ``--batch``
  (default 256), and their ratio (target: batched >= 20x faster per image);
- the framework's overhead: a full ``creswell`` inversion of the batch divided by a bare loop
  of the same number of generator forward+backward passes on the same tensors (target < 1.25).

    python bench/inversion_bench.py [--steps N] [--repeats R] [--device cpu|cuda] [--json]

Timing is synchronised on CUDA. The generator is the suite's default dcgan, trained once and
cached under INVBENCH_HOME like any run. Per-step work is constant, so ``--steps`` below the
paper's 300 shortens the bench without changing the per-step ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from invbench import progress
from invbench.config import resolve
from invbench.generators.train import obtain
from invbench.latent_opt import pixel_loss
from invbench.registry import DATASETS, METHODS


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall-clock seconds of ``fn`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bare_loop(gen: torch.nn.Module, z0: torch.Tensor, x: torch.Tensor, steps: int, loss: str):
    """The floor: ``steps`` generator forward+backward passes on the same tensors, no optimiser."""
    z = z0.clone().requires_grad_(True)
    for _ in range(steps):
        z.grad = None
        pixel_loss(gen.synthesize(z), x, loss).sum().backward()
    return z.grad


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="optimisation steps (paper: 300)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    progress.set_quiet(True)
    device = torch.device(args.device)

    ds_cls = DATASETS.get("digits")
    ds = ds_cls(ds_cls.Config())
    splits = ds.load()
    gen, _ = obtain("dcgan", splits, ds.fingerprint(), device=device)
    cls = METHODS.get("creswell")
    cfg = resolve(cls.Config, "method", "creswell", {"steps": str(args.steps)})
    inv = cls(cfg, gen, device=device, seed=0)
    x_all = splits.train[: args.batch].to(device)  # the test split has fewer than 256 images
    x1 = x_all[:1]

    inv.invert(x_all[:8])  # warm-up: allocator, kernels, lazy initialisation
    t1 = timed(lambda: inv.invert(x1), device, args.repeats)
    tb = timed(lambda: inv.invert(x_all), device, args.repeats)
    z0 = inv.initial_latents(x_all, 0)
    t_bare = timed(lambda: bare_loop(gen, z0, x_all, args.steps, cfg.loss), device, args.repeats)
    out = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "batch": args.batch,
        "sec_per_image_batch1": t1,
        "sec_per_image_batched": tb / args.batch,
        "speedup_per_image": t1 / (tb / args.batch),
        "creswell_seconds": tb,
        "bare_loop_seconds": t_bare,
        "overhead_ratio": tb / t_bare,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"device {out['device']}, {out['threads']} thread(s), {args.steps} steps, "
            f"median of {args.repeats}"
        )
        print(f"  sec/image at batch 1      {t1:.4f}")
        print(f"  sec/image at batch {args.batch:<6d} {tb / args.batch:.5f}")
        print(f"  speed-up per image        {out['speedup_per_image']:.1f}x   (target >= 20x)")
        print(
            f"  creswell / bare loop      {out['overhead_ratio']:.3f}   (target < 1.25; "
            f"{tb:.2f}s vs {t_bare:.2f}s)"
        )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
