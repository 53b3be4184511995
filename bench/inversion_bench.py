"""Speed of inversion and training on the embedded default (creswell, digits, dcgan), per policy.

Side by side in one process, with the same weights and inputs, for each execution policy of
``invbench.execution`` — ``eager`` (fp32, today's path), ``compiled`` (fp32, torch.compile) and
``bf16`` (bfloat16 networks, compiled, channels-last) — reports the median of ``--repeats``:

- latent optimisation (a full ``creswell`` inversion): ms per image per step at batch 1 and at
  ``--batch`` (default 256), the achieved GFLOP/s (FLOPs of one step counted with
  ``torch.utils.flop_counter``) and its fraction of this machine's matmul peak measured here in
  the same precision, the speed-up over eager, the compile time (apart), and the test mse of the
  batch (decoded in fp32) with its relative difference to eager's;
- one training step of the default generator (``invbench.generators.train.GanStep``): ms per
  step, GFLOP/s, fraction of peak, speed-up;
- the framework's overhead: an eager ``creswell`` inversion divided by a bare loop of the same
  number of generator forward+backward passes on the same tensors (target < 1.25).

    python bench/inversion_bench.py [--steps N] [--batch B] [--repeats R]
        [--policies eager,compiled,bf16] [--device cpu|cuda] [--threads T] [--json]

Ratios measured in one process are robust to the load of a shared machine; absolute times are
not (the load average is printed). Timing is synchronised on CUDA (that path is untested on a
GPU). The generator is the suite's default dcgan, trained once and cached under INVBENCH_HOME
like any run; the compile cache lives there too. Per-step work is constant, so ``--steps``
below the paper's 300 shortens the bench without changing per-step ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from invbench import progress
from invbench.config import resolve
from invbench.device import sync
from invbench.execution import (
    Execution,
    ExecutionConfig,
    Precision,
    cpu_bf16_support,
    cpu_has_native_bf16,
)
from invbench.generators.train import GanStep, build_generator, obtain
from invbench.latent_opt import pixel_loss
from invbench.registry import DATASETS, GENERATORS, METHODS

# name: (precision, as a run's eval.precision sets it; the execution layer's speed knobs)
POLICIES: dict[str, tuple[Precision, ExecutionConfig]] = {
    "eager": ("fp32", ExecutionConfig()),
    "compiled": ("fp32", ExecutionConfig(compile=True)),
    "bf16": ("bf16", ExecutionConfig(compile=True, channels_last="on")),
}


def policy(name: str, device: torch.device) -> Execution:
    precision, cfg = POLICIES[name]
    return Execution(cfg, device, precision)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall-clock seconds of ``fn`` over ``repeats`` runs (synchronised on CUDA)."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """GFLOP/s of a square matmul in ``dtype``: the best of ``repeats`` timed batches of
    about 0.2 s, at n = 1024 (512 where one product takes over 0.2 s: emulated bfloat16)."""
    for n in (1024, 512):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        single = time.perf_counter() - t0
        if single < 0.2:
            break
    inner = max(1, min(50, int(0.2 / max(single, 1e-6))))
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b)
        sync(device)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2 * n**3 / best / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul / convolution FLOPs (forward and backward) of one call of ``fn``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bare_loop(gen: torch.nn.Module, z0: torch.Tensor, x: torch.Tensor, steps: int, loss: str):
    """The floor: ``steps`` generator forward+backward passes on the same tensors, no optimiser."""
    z = z0.clone().requires_grad_(True)
    for _ in range(steps):
        z.grad = None
        pixel_loss(gen.synthesize(z), x, loss).sum().backward()
    return z.grad


def one_step_flops(gen: Any, z0: torch.Tensor, x: torch.Tensor, loss: str) -> int:
    return count_flops(lambda: bare_loop(gen, z0, x, 1, loss))


def bench_inversion(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    ds_cls = DATASETS.get("digits")
    ds = ds_cls(ds_cls.Config())
    splits = ds.load()
    gen, _ = obtain("dcgan", splits, ds.fingerprint(), device=device)
    cls = METHODS.get("creswell")
    cfg = resolve(cls.Config, "method", "creswell", {"steps": str(args.steps)})
    x_all = splits.train[: args.batch].to(device)  # the test split has fewer than 256 images
    batches = {"batch1": x_all[:1], f"batch{args.batch}": x_all}
    flops = {
        k: one_step_flops(gen, torch.zeros(len(x), gen.z_dim, device=device), x, cfg.loss)
        for k, x in batches.items()
    }
    out: dict[str, Any] = {"flops_per_step": flops}
    for name in args.policies:
        inv = cls(cfg, gen, device=device, seed=0)
        inv.execution = ex = policy(name, device)
        row: dict[str, Any] = {"compiled": ex.compiled, "fallbacks": ex.fallbacks}
        for key, x in batches.items():
            t0 = time.perf_counter()
            with ex.matmul_mode():
                inv.warmup(x)  # compiles: a one-step optimisation of (at most) two images
            row[f"compile_seconds_{key}"] = time.perf_counter() - t0
            with ex.matmul_mode():
                t = timed(lambda x=x, inv=inv: inv.invert(x), device, args.repeats)
            per_step = t / args.steps
            row[f"ms_per_image_step_{key}"] = 1e3 * per_step / len(x)
            row[f"gflops_{key}"] = flops[key] / per_step / 1e9
        with ex.matmul_mode():
            z = inv.invert(x_all).tensor
        with torch.no_grad():
            row["mse"] = float((gen.synthesize(z) - x_all).pow(2).mean())  # decoded in fp32
        out[name] = row
    z0 = cls(cfg, gen, device=device, seed=0).initial_latents(x_all, 0)
    eager = cls(cfg, gen, device=device, seed=0)
    tb = timed(lambda: eager.invert(x_all), device, args.repeats)
    t_bare = timed(lambda: bare_loop(gen, z0, x_all, args.steps, cfg.loss), device, args.repeats)
    out["overhead"] = {"creswell_seconds": tb, "bare_loop_seconds": t_bare, "ratio": tb / t_bare}
    return out


def bench_training(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One ``GanStep`` of the default dcgan (fresh weights: a step's cost does not depend on
    them) per policy."""
    ds_cls = DATASETS.get("digits")
    splits = ds_cls(ds_cls.Config()).load()
    gcfg = resolve(GENERATORS.get("dcgan").Config, "generator", "dcgan")
    out: dict[str, Any] = {"batch": gcfg.batch_size}
    for name in args.policies:
        gen = build_generator("dcgan", gcfg, splits.channels, splits.resolution)
        ex = policy(name, device)
        step = GanStep(gen, splits.train, device, ex)
        if name == args.policies[0]:
            out["flops_per_step"] = count_flops(lambda step=step: step(0))
        t0 = time.perf_counter()
        with ex.matmul_mode():
            step(0)
            step(1)
        warm = time.perf_counter() - t0

        def steps(step: GanStep = step) -> None:
            for i in range(args.train_steps):
                step(i)

        with ex.matmul_mode():
            t = timed(steps, device, args.repeats) / args.train_steps
        out[name] = {
            "ms_per_step": 1e3 * t,
            "gflops": out["flops_per_step"] / t / 1e9,
            "compile_seconds": warm,  # two steps, the first of which compiles
            "compiled": ex.compiled,
            "fallbacks": ex.fallbacks,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="optimisation steps (paper: 300)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=5, help="GAN steps per timed repeat")
    ap.add_argument(
        "--policies", default="eager,compiled,bf16", help="subset of " + ",".join(POLICIES)
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in args.policies if p not in POLICIES]
    if unknown or not args.policies or args.policies[0] != "eager":
        ap.error(f"--policies: a comma list starting with eager, of {', '.join(POLICIES)}")
    torch.set_num_threads(args.threads)
    progress.set_quiet(True)
    device = torch.device(args.device)

    out: dict[str, Any] = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu_native_bf16": device.type == "cpu" and cpu_has_native_bf16(),
        "cpu_bf16": cpu_bf16_support() if device.type == "cpu" else None,
        "steps": args.steps,
        "batch": args.batch,
        "repeats": args.repeats,
        "policies": {
            p: {"precision": POLICIES[p][0], **vars(POLICIES[p][1])} for p in args.policies
        },
        "peak_gflops": {
            "fp32": matmul_peak(torch.float32, device, args.repeats),
            "bf16": matmul_peak(torch.bfloat16, device, args.repeats),
        },
    }
    out["inversion"] = bench_inversion(args, device)
    out["training"] = bench_training(args, device)
    inv, train, peak = out["inversion"], out["training"], out["peak_gflops"]
    big = f"batch{args.batch}"
    for p in args.policies:
        prec = "bf16" if POLICIES[p][0] == "bf16" else "fp32"
        for key in ("batch1", big):
            inv[p][f"speedup_{key}"] = (
                inv["eager"][f"ms_per_image_step_{key}"] / inv[p][f"ms_per_image_step_{key}"]
            )
            inv[p][f"peak_fraction_{key}"] = inv[p][f"gflops_{key}"] / peak[prec]
        inv[p]["mse_rel_diff"] = abs(inv[p]["mse"] - inv["eager"]["mse"]) / inv["eager"]["mse"]
        train[p]["speedup"] = train["eager"]["ms_per_step"] / train[p]["ms_per_step"]
        train[p]["peak_fraction"] = train[p]["gflops"] / peak[prec]
    if args.json:
        print(json.dumps(out))
    else:
        report(out, args)
    return out


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    inv, train, peak = out["inversion"], out["training"], out["peak_gflops"]
    big = f"batch{args.batch}"
    print(
        f"device {out['device']}, {out['threads']} thread(s), load average {out['load_average']}, "
        f"median of {args.repeats}; matmul peak here: fp32 {peak['fp32']:.0f} GFLOP/s, "
        f"bf16 {peak['bf16']:.0f} GFLOP/s"
    )
    if out["cpu_bf16"]:
        print(f"CPU bfloat16 support: {out['cpu_bf16']}")
    print(f"\nlatent optimisation (creswell, {args.steps} steps): ms per image per step")
    print(
        f"  {'policy':<9} {'batch 1':>8} {'x eager':>7} {'batch ' + str(args.batch):>10} "
        f"{'x eager':>7} {'GFLOP/s':>8} {'of peak':>7} {'compile s':>9} {'mse':>9} {'vs eager':>9}"
    )
    for p in args.policies:
        r = inv[p]
        print(
            f"  {p:<9} {r['ms_per_image_step_batch1']:8.3f} {r['speedup_batch1']:6.2f}x "
            f"{r[f'ms_per_image_step_{big}']:10.4f} {r[f'speedup_{big}']:6.2f}x "
            f"{r[f'gflops_{big}']:8.1f} {100 * r[f'peak_fraction_{big}']:6.1f}% "
            f"{r[f'compile_seconds_{big}']:9.1f} {r['mse']:9.6f} {100 * r['mse_rel_diff']:8.3f}%"
        )
        for f in r["fallbacks"]:
            print(f"      ran eagerly: {f}")
    print(f"\none training step of the default dcgan (batch {train['batch']}, D + G updates)")
    print(f"  {'policy':<9} {'ms/step':>8} {'x eager':>7} {'GFLOP/s':>8} {'of peak':>7}")
    for p in args.policies:
        r = train[p]
        print(
            f"  {p:<9} {r['ms_per_step']:8.1f} {r['speedup']:6.2f}x {r['gflops']:8.1f} "
            f"{100 * r['peak_fraction']:6.1f}%"
        )
    o = inv["overhead"]
    print(
        f"\ncreswell / bare loop (eager, batch {args.batch}): {o['ratio']:.3f} (target < 1.25; "
        f"{o['creswell_seconds']:.2f}s vs {o['bare_loop_seconds']:.2f}s)"
    )
    print(
        "targets (issue 21): compiled >= 1.4x eager with identical mse; bf16 >= 2.2x with mse "
        "within 2% of eager's"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
