"""One run on two processes: ``torchrun --nproc-per-node 2 -m invbench run`` (gloo, CPU), and the
same through the Python API in a script torchrun starts, against the same run as one process.

What is independent of the code under test: a 1-process run is the reference (each image's
inversion does not depend on how the images are shared out, so per-image values must be equal
bit for bit; merged float64 sums may differ by rounding only), and "rank 1 writes nothing" is
checked by the interpreter itself: a ``sitecustomize`` installs an audit hook (PEP 578) in every
process of rank > 0 that refuses, and reports, any file opened for writing, created, renamed or
removed under the run's folders (the cache and the outputs). invbench writes every file through
``artifacts.atomic_path`` (``mkstemp``, then ``os.replace``), so writers in C++ (safetensors,
torch.save) are seen too; the hook itself is checked to refuse a write in a 2-rank world.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invbench.metrics import METRICS

TINY = {
    "generator.steps": 30,
    "generator.batch_size": 32,
    "method.steps": 3,
    "eval.n_test": 16,
    # 4 images per batch: 4 test batches, 2 interpolation batches (8 pairs), 4 random draws
    # (16 samples), the first 2 inverted (N = 8): every track is shared by both processes, and
    # rank 1 inverts one draw and decodes the two that are not inverted.
    "eval.batch_size": 4,
    "eval.n_rand": 16,
    "eval.fid_small_n": 4,
    "eval.bootstrap": 20,
    "eval.kid_subsets": 5,
    "eval.feature_epochs": 1,
    "eval.grid_images": 4,
}
SETS = [f"--set={k}={v}" for k, v in TINY.items()]

WATCH = """
import os, sys
if os.environ.get("RANK", "0") != "0":
    _roots = [os.path.realpath(p) for p in os.environ["SCALE_TEST_WATCH"].split(os.pathsep)]
    _write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _changes = {"os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.truncate", "os.link",
                "os.symlink", "os.chmod", "os.utime"}

    def _watched(p):
        if not isinstance(p, (str, os.PathLike)):
            return False
        p = os.path.realpath(os.fspath(p))
        return any(p == r or p.startswith(r + os.sep) for r in _roots)

    def _hook(event, args):
        hit = None
        if event == "open" and isinstance(args[2], int) and args[2] & _write:
            hit = args[0]
        elif event in _changes:
            hit = next((a for a in args[:2] if _watched(a)), None)
        if hit is not None and _watched(hit):
            sys.__stderr__.write(f"RANK{os.environ['RANK']}-WROTE {event} {hit}\\n")
            raise PermissionError(f"rank {os.environ['RANK']} may not write {hit}")

    sys.addaudithook(_hook)
"""

API_SCRIPT = """
import json, sys
import invbench
from invbench import distributed
rec = invbench.run("creswell", "digits", sets=json.loads(sys.argv[1]), out=sys.argv[2])
print("RECORD", json.dumps(rec.to_dict(), sort_keys=True), flush=True)
"""


def _env(tmp_path: Path, home: Path, watched: list[Path]) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(WATCH)
    return dict(
        os.environ,
        INVBENCH_HOME=str(home),
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        SCALE_TEST_WATCH=os.pathsep.join(str(p) for p in watched),
    )


def _torchrun(
    args: list[str], env: dict[str, str], logs: Path, timeout: int = 900
) -> subprocess.CompletedProcess:
    # --log-dir / --redirects: each rank's stdout in a file of its own, opened by the launcher.
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    head += ["--log-dir", str(logs), "--redirects", "1"]
    return subprocess.run(head + args, env=env, capture_output=True, text=True, timeout=timeout)


def _rank_stdout(logs: Path, rank: int) -> str:
    (path,) = logs.glob(f"**/{rank}/stdout.log")
    return path.read_text()


def _record(out: Path) -> dict:
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


def _assert_same_numbers(got: dict, want: dict) -> None:
    """Per-image metrics (and their bootstrap intervals) exactly; distribution metrics (FID,
    KID, SWD...) within 1e-6 relative, or one unit of the record's 6th decimal, to which the
    record rounds; the wall-clock costs are not compared."""
    assert set(got["metrics"]) == set(want["metrics"]) >= {"mse", "ssim", "fid_test_rec", "swd"}
    for name, value in want["metrics"].items():
        spec = METRICS.get(name)
        if spec.needs == "timing":
            continue
        if spec.needs == "paired" or value is None:  # one value per image, averaged
            assert got["metrics"][name] == value, name
        else:
            assert math.isclose(got["metrics"][name], value, rel_tol=1e-6, abs_tol=1e-6), name
    assert got["ci"] == want["ci"]
    for key in ("metric_flavors", "unavailable", "config_hash", "setting", "n_test", "space"):
        assert got[key] == want[key], key


def test_two_process_run_equals_one_process_run_and_rank_0_alone_writes(tmp_path):
    home, work = tmp_path / "home", tmp_path / "w"
    work.mkdir()
    env = _env(tmp_path, home, [home, work])

    # Two processes first, on an empty cache: the generator is trained data-parallel and the
    # feature network and reference statistics built by rank 0 through the shared cache.
    two, logs = work / "two", tmp_path / "logs"
    p = _torchrun(["-m", "invbench", "run", "--method", "creswell", "--dataset", "digits",
                   *SETS, "--out", str(two), "--json"], env, logs)  # fmt: skip
    assert p.returncode == 0, p.stderr[-4000:]
    assert "-WROTE" not in p.stderr
    # the record, per-image CSV, latents, grid, interpolation strip and best / worst images
    assert sorted(f.suffix for f in two.iterdir()) == [
        ".csv", ".json", ".png", ".png", ".png", ".safetensors"
    ]  # fmt: skip
    rec2 = _record(two)
    assert rec2["provenance"]["world_size"] == 2
    assert json.loads(_rank_stdout(logs, 0)) == rec2  # rank 0 prints the record,
    assert _rank_stdout(logs, 1) == ""  # the other rank nothing

    # The same through the Python API in a script torchrun starts: every process returns the
    # record rank 0 wrote.
    (tmp_path / "api.py").write_text(API_SCRIPT)
    api, logs = work / "api", tmp_path / "logs_api"
    p = _torchrun([str(tmp_path / "api.py"), json.dumps(TINY), str(api)], env, logs)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "-WROTE" not in p.stderr
    returned = [
        json.loads(_rank_stdout(logs, r).split("RECORD ", 1)[1]) for r in range(2)
    ]  # fmt: skip
    assert returned[0] == returned[1] == _record(api)
    assert returned[0]["provenance"]["world_size"] == 2
    _assert_same_numbers(returned[0], rec2)

    # One process: loads what the two built, evaluates alone.
    one = work / "one"
    p = subprocess.run([sys.executable, "-m", "invbench", "run", "--method", "creswell",
                        "--dataset", "digits", *SETS, "--out", str(one), "-q"], env=env,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr[-4000:]
    rec1 = _record(one)
    assert rec1["provenance"]["world_size"] == 1
    _assert_same_numbers(rec2, rec1)
    # Per image: the scores, the latents and the grid of originals / reconstructions.
    # (the grid, interpolation strip and best / worst images: the PNGs, by name)
    for suffix in (".per_image.csv", ".png"):
        a, b = sorted(one.glob(f"*{suffix}")), sorted(two.glob(f"*{suffix}"))
        assert [f.name for f in a] == [f.name for f in b] and a, suffix
        for fa, fb in zip(a, b, strict=True):
            assert fa.read_bytes() == fb.read_bytes(), fa.name
    rows = list(csv.DictReader(next(one.glob("*.per_image.csv")).open()))
    assert len(rows) == TINY["eval.n_test"]
    from safetensors.torch import load_file

    (a,), (b,) = one.glob("*.safetensors"), two.glob("*.safetensors")
    assert load_file(a)["latents"].equal(load_file(b)["latents"])


def test_the_watch_refuses_a_write_by_rank_1_only(tmp_path):
    """The audit hook above catches what it must: rank 1's write, not rank 0's."""
    work = tmp_path / "w"
    work.mkdir()
    script = tmp_path / "write.py"
    script.write_text(
        "import os, pathlib\n"
        "from invbench.artifacts import atomic_write_text\n"
        "r = os.environ['RANK']\n"
        "try:\n"
        f"    atomic_write_text(pathlib.Path({str(work)!r}) / ('f' + r), r)\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    p = _torchrun([str(script)], _env(tmp_path, tmp_path / "home", [work]), tmp_path / "logs")
    assert p.returncode == 0, p.stderr[-4000:]
    assert [f.name for f in work.iterdir()] == ["f0"]
    assert "RANK1-WROTE open" in p.stderr and _rank_stdout(tmp_path / "logs", 1) == "refused\n"


def test_every_metric_merges_and_one_that_does_not_is_refused_before_a_sharded_run():
    from invbench.errors import UsageError
    from invbench.metrics.base import Metric, MetricSpec
    from invbench.runner import check_shardable

    check_shardable(METRICS.computed())  # every built-in metric declares how its state merges

    class Kept(Metric):  # keeps state in update, says nothing of how it merges
        def update(self, batch) -> None:
            self.seen = len(batch.images)

    spec = METRICS.register(MetricSpec("kept_state_probe", "a probe", needs="paired"), Kept)
    try:
        with pytest.raises(UsageError, match="kept_state_probe keep state"):
            check_shardable([spec])
    finally:
        METRICS.unregister("kept_state_probe")


CACHE_SCRIPT = """
import torch
from invbench import artifacts, distributed
distributed.init()
rank, built = distributed.rank(), []

def build(key):
    built.append(key)
    return {"w": torch.arange(3.0) + 10 * len(built)}, {"by": rank}

a = artifacts.cached("probe", {"p": 1}, build)  # a miss: rank 0 builds, rank 1 receives
b = artifacts.cached("probe", {"p": 1}, build)  # a hit: rank 0 loads, rank 1 receives

def fail(key):
    raise ValueError("no such data")

try:
    artifacts.cached("probe", {"p": 2}, fail)
    failed = "no error"
except Exception as e:  # a caller that goes on after a failed build must not hang
    failed = type(e).__name__
distributed.barrier()
print(a.built, b.built, len(built), a.tensors["w"].tolist() == b.tensors["w"].tolist() == [10.0, 11.0, 12.0], a.meta, failed)
"""


def test_cached_under_torchrun_rank_0_builds_once_and_shares_its_result_or_its_error(tmp_path):
    """Core's ``cached()`` in a 2-rank world: rank 0 alone builds (and writes, under its lock),
    rank 1 gets the same tensors; a build that fails on rank 0 raises on both ranks rather than
    leaving rank 1 in a collective (the subprocess timeout would catch a hang)."""
    (tmp_path / "cache.py").write_text(CACHE_SCRIPT)
    home, logs = tmp_path / "home", tmp_path / "logs"
    env = _env(tmp_path, home, [home])
    p = _torchrun([str(tmp_path / "cache.py")], env, logs, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "-WROTE" not in p.stderr
    assert _rank_stdout(logs, 0) == "True False 1 True {'by': 0} ValueError\n"
    assert _rank_stdout(logs, 1) == "True False 0 True {'by': 0} ValueError\n"
    assert len(list((home / "probe").glob("*.safetensors"))) == 1


LEAVE_SCRIPT = """
import atexit
import torch.distributed as dist
from invbench import distributed
distributed.init()
distributed.barrier()
atexit._run_exitfuncs()  # what the interpreter runs at exit, here where its effect can be seen
print(dist.is_initialized())
"""


def test_a_process_that_never_calls_shutdown_leaves_the_group_at_exit(tmp_path):
    """A script (or a Python API caller) under torchrun that never calls ``shutdown()``: its
    exit handlers leave the process group, so gloo's threads are joined before interpreter
    teardown (left running, they aborted rank 1 with SIGABRT in about 1 run of 15)."""
    logs = _two_ranks_run(tmp_path, "leave.py", LEAVE_SCRIPT)
    assert _rank_stdout(logs, 0) == _rank_stdout(logs, 1) == "False\n"


def _two_ranks_run(tmp_path: Path, name: str, script: str) -> Path:
    """``script`` under torchrun on two ranks, which must exit 0; the folder of their logs."""
    (tmp_path / name).write_text(script)
    logs = tmp_path / "logs"
    env = _env(tmp_path, tmp_path / "home", [tmp_path / "home"])
    p = _torchrun([str(tmp_path / name)], env, logs, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    return logs


THREADS_SCRIPT = """
import os
import torch
from invbench import distributed
distributed.init()
net = torch.nn.Linear(3, 3)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
distributed.data_parallel([net], [opt])
net(torch.ones(2, 3)).sum().backward()
opt.step()  # the first optimiser step imports torch._dynamo
distributed.shutdown()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(sorted(n for n in names if "gloo" in n))
"""


def test_shutdown_after_a_data_parallel_step_joins_gloos_threads(tmp_path):
    """After shutdown() no gloo thread is left (read from /proc): a group kept alive past it
    (torch._dynamo, first imported by an optimiser step, held a reference) let a worker thread
    release a finished all_reduce during interpreter teardown and abort the rank (SIGABRT in
    4 of 20 runs of the gradient test; this test printed the three threads on every run)."""
    logs = _two_ranks_run(tmp_path, "threads.py", THREADS_SCRIPT)
    assert _rank_stdout(logs, 0) == _rank_stdout(logs, 1) == "[]\n"
