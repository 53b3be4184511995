"""Cost of the metric suite, and memory of the streaming FID.

1. Metric cost vs inversion time on the embedded default (creswell on digits): ``--runs``
   full runs of ``invbench.runner.run`` after one warm-up run (which trains and caches the
   generator, the feature network and the reference statistics); medians of the recorded
   test-inversion seconds, random-sample inversion seconds and metric seconds, plus a
   per-metric breakdown (median of ``--repeats``) on the same data.
2. Peak memory of the streaming FID (feature network + float64 running sums, images generated
   batch by batch) at N = 1,000 and N = 20,000, each in a fresh process: the process's peak
   RSS and its growth over the state after two batches (``resource``), and the peak of
   Python/numpy allocations during streaming (``tracemalloc``; torch's own allocations are
   invisible to it, hence RSS).

    OMP_NUM_THREADS=1 INVBENCH_HOME=/tmp/bench .venv/bin/python bench/metrics_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch


def _digits():
    from invbench.registry import DATASETS

    cls = DATASETS.get("digits")
    ds = cls(cls.Config())
    return ds, ds.load()


def memory_child(n: int, batch: int) -> dict:
    """Stream ``n`` noisy digits through the feature network into RunningStats."""
    from invbench.metrics.distribution import RunningStats, frechet_distance
    from invbench.metrics.features import domain_network
    from invbench.metrics.reference import reference

    ds, splits = _digits()
    net = domain_network(splits, ds.fingerprint())
    ref = reference(net, splits.train, "train", ds.fingerprint())
    g = torch.Generator().manual_seed(0)
    stats = RunningStats()

    def step(k: int) -> None:
        idx = torch.randint(len(splits.train), (k,), generator=g)
        imgs = (splits.train[idx] + 0.1 * torch.randn(k, 1, 32, 32, generator=g)).clamp(-1, 1)
        stats.update(net.features(imgs))

    step(batch)  # the first batches: allocator pools and lazy state are set up now
    step(batch)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    while stats.n < n:
        step(min(batch, n - stats.n))
    fid = frechet_distance(stats.mean(), stats.cov(), ref.mu, ref.sigma)
    _, traced_peak = tracemalloc.get_traced_memory()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n": stats.n,
        "fid": round(fid, 4),
        "rss_after_two_batches_mib": round(base / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_growth_mib": round((peak - base) / 1024, 2),
        "tracemalloc_peak_mib": round(traced_peak / 2**20, 3),
    }


def memory(batch: int) -> list[dict]:
    out = []
    for n in (1_000, 20_000):
        cmd = [sys.executable, __file__, "--memory-child", str(n), "--batch", str(batch)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def breakdown(repeats: int, recon: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """Seconds per group of registered metrics on (reconstructions, originals) of the default
    run, each group built, fed and computed as the runner does (features extracted once per
    batch and shared by FID and KID)."""
    from invbench.metrics import METRICS, Batch, EvalContext
    from invbench.metrics.features import domain_network
    from invbench.metrics.reference import reference
    from invbench.runner import EvalConfig

    ds, splits = _digits()
    net = domain_network(splits, ds.fingerprint())
    ref = reference(net, splits.train, "train", ds.fingerprint())

    def scores(names: list[str]) -> None:
        ctx = EvalContext(
            EvalConfig(), torch.device("cpu"), 0, resolution=test.shape[-1],
            fid_n={"test": len(test) // 2}, feature_net=lambda: net, reference=lambda n: ref,
        )  # fmt: skip
        made = [METRICS.factory(n)(METRICS.get(n), ctx) for n in names]
        for m in made:
            m.update(Batch(recon, test))
        for m in made:
            m.compute()

    groups = {
        "paired+bootstrap": ["mse", "mae", "psnr", "ssim"],
        "fid_test_rec+kid": ["fid_test_rec", "kid_test_rec"],
        "one_fid_track": ["fid_test_rec"],  # as each of rand / rand_rec / interp costs
        "swd": ["swd"],
    }
    return {
        name: round(_median_time(lambda names=names: scores(names), repeats), 4)
        for name, names in groups.items()
    }


def cost(runs: int, repeats: int, warmup: bool = True) -> dict:
    from invbench import progress
    from invbench.runner import RunSpec, run

    progress.set_quiet(True)
    out = Path(tempfile.mkdtemp(prefix="metrics_bench_"))
    if warmup:  # fills the caches (generator, feature network, reference statistics)
        run(RunSpec(method="creswell", dataset="digits", out=out))
    recs = [run(RunSpec(method="creswell", dataset="digits", out=out)) for _ in range(runs)]
    prov = [r["provenance"] for r in recs]
    med = {
        k: statistics.median(p[k] for p in prov)
        for k in ("invert_seconds", "rand_rec_invert_seconds", "metric_seconds", "track_seconds")
    }
    med["metric_share_of_test_inversion"] = round(med["metric_seconds"] / med["invert_seconds"], 4)
    med["metric_share_of_all_inversion"] = round(
        med["metric_seconds"] / (med["invert_seconds"] + med["rand_rec_invert_seconds"]), 4
    )
    med["runs"] = runs
    med["metrics"] = recs[-1]["metrics"]
    med["metric_flavors"] = recs[-1]["metric_flavors"]
    # Per-metric breakdown on the default run's test images (reconstruction = test + noise).
    _, splits = _digits()
    g = torch.Generator().manual_seed(0)
    test = splits.test
    recon = (test + 0.2 * torch.randn(test.shape, generator=g)).clamp(-1, 1)
    med["breakdown_seconds"] = breakdown(repeats, recon, test)
    return med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="timed full runs (after one warm-up)")
    p.add_argument("--repeats", type=int, default=5, help="repeats of the per-metric breakdown")
    p.add_argument("--batch", type=int, default=500, help="images per feature batch (memory)")
    p.add_argument("--skip-cost", action="store_true", help="only the memory measurement")
    p.add_argument("--no-warmup", action="store_true", help="caches are warm: skip the warm-up run")
    p.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.batch)))
        return
    report = {"threads": torch.get_num_threads(), "memory": memory(args.batch)}
    if not args.skip_cost:
        report["cost"] = cost(args.runs, args.repeats, not args.no_warmup)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
