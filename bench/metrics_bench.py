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
    from invbench.metrics.evaluate import reference
    from invbench.metrics.features import domain_network

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
    """Seconds per metric on (reconstructions, originals) of the default run."""
    from invbench.metrics.evaluate import FeatureTrack, reference
    from invbench.metrics.features import domain_network
    from invbench.metrics.paired import bootstrap_ci, compute_paired
    from invbench.metrics.swd import SWDAccumulator, swd

    ds, splits = _digits()
    net = domain_network(splits, ds.fingerprint())
    ref = reference(net, splits.train, "train", ds.fingerprint())

    def paired() -> None:
        for v in compute_paired(recon, test).values():
            bootstrap_ci(v.numpy(), 1000)

    def fid_kid() -> None:
        t = FeatureTrack("fid", net, 100, keep_features=True)
        t.update(recon)
        t.fid(ref)
        t.kid(ref, "kid", 100, 1000, 0)

    def fid_only() -> None:  # one more FID track, as each of rand / rand_rec / interp costs
        t = FeatureTrack("fid", net, 100)
        t.update(recon)
        t.fid(ref)

    def swd_() -> None:
        a, b = SWDAccumulator(32, 0), SWDAccumulator(32, 0)
        a.update(test)
        b.update(recon)
        swd(a, b)

    return {
        name: round(_median_time(fn, repeats), 4)
        for name, fn in (
            ("paired+bootstrap", paired),
            ("fid_test_rec+kid", fid_kid),
            ("one_fid_track", fid_only),
            ("swd", swd_),
        )
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
