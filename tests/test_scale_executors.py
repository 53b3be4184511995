"""Suite grids on executors (invbench.executors): a local pool, Ray, submitit and a real Slurm.

Each executor runs the same tiny suite into its own results folder, sharing one cache (so the
generator trains once); its table must be the serial run's, character for character. Every
worker runs single-threaded, so the numbers are bit-identical wherever a cell runs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from invbench import executors, suites
from invbench.errors import UsageError

CLI = [sys.executable, "-m", "invbench.cli"]
SETS = '"steps=4", "generator.steps=30", "eval.n_test=8", "eval.bootstrap=20", "eval.tracks=false"'
SUITE = f"""
description: "executor test suite"
seeds: [0]
runs:
  - {{label: "bce", method: creswell, generator: dcgan, sets: [{SETS}]}}
  - {{label: "l2", method: creswell, generator: dcgan, sets: [{SETS}, "loss=l2"]}}
table:
  metrics: [mse, mae, psnr, ssim]
"""
METRICS = "mse,mae,psnr,ssim"


def cli(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    full = dict(os.environ, INVBENCH_HOME=str(home), OMP_NUM_THREADS="1", **env)
    return subprocess.run(CLI + args, capture_output=True, text=True, env=full, timeout=900)


def table(suite: Path, results: Path, home: Path) -> str:
    """The CSV table's label and METRICS columns as printed (the CSV keeps every metric, timings
    too, which differ from run to run)."""
    p = cli(["table", "--suite", str(suite), "--results", str(results), "--format", "csv",
             "--metrics", METRICS], home)  # fmt: skip
    assert p.returncode == 0, p.stderr
    rows = list(csv.reader(io.StringIO(p.stdout)))
    keep = [i for i, c in enumerate(rows[0]) if c in ("label", *METRICS.split(","))]
    return "".join(",".join(r[i] for i in keep) + "\n" for r in rows)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The suite, its serial table (the reference) and the cache every executor shares: this
    module's own, so its generator is trained here, single-threaded. (The session's cache may
    hold the same generator trained in process by another test at two threads, which on some
    CPUs is not bit-identical to one thread; seen on an AVX-512 machine.) In-process runs read
    INVBENCH_HOME, so it points at this cache while the module runs."""
    root = tmp_path_factory.mktemp("grid")
    suite = root / "grid.yaml"
    suite.write_text(SUITE)
    home = root / "home"
    old = os.environ["INVBENCH_HOME"]
    os.environ["INVBENCH_HOME"] = str(home)
    try:
        p = cli(["suite", "run", str(suite), "--results", str(root / "serial"), "--quiet"], home)
        assert p.returncode == 0, p.stderr
        ref = table(suite, root / "serial", home)
        assert ref.count("\n") >= 3 and "l2" in ref and "bce" in ref
        yield root, suite, home, ref
    finally:
        os.environ["INVBENCH_HOME"] = old


def in_process(suite: Path, results: Path, executor: str, **res) -> tuple[int, int]:
    """The driver in this process (Ray's and submitit's clients live here)."""
    return suites.run_suite(suites.load(str(suite)), results, executor=executor, resources=res)


def test_local_pool_trains_the_shared_generator_once_and_gives_the_serial_table(grid, tmp_path):
    """Both cells need the same zoo generator and two workers start on an empty cache: one
    trains it, the other waits on its lock (or finds it done) and loads it. The table is the
    serial run's, whose generator was trained alone in another cache; a second run skips both
    cells."""
    root, suite, _home, ref = grid
    home, results = tmp_path / "empty-home", tmp_path / "res"
    args = ["suite", "run", str(suite), "--results", str(results), "--executor", "local:2"]
    p = cli(args, home)
    assert p.returncode == 0, p.stderr
    assert "local pool: 2 workers x 1 thread(s)" in p.stderr
    logs = [q.read_text() for q in (results / "logs").glob("*.log")]
    assert len(logs) == 2 and all("[invbench] cell " in t for t in logs)
    assert sum("training generator 'dcgan'" in t for t in logs) == 1, logs
    assert len(list((home / "generators").glob("*.safetensors"))) == 1
    assert table(suite, results, home) == ref
    p = cli(args, home)  # idempotent: every cell is found done
    assert p.returncode == 0 and "0 cells run, 2 were already done" in p.stderr


def test_ray_gives_the_serial_table(grid):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install .[ray])")
    root, suite, home, ref = grid
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ran, done = in_process(suite, root / "ray", "ray")
    finally:
        ray.shutdown()
    assert (ran, done) == (2, 0)
    assert table(suite, root / "ray", home) == ref


def test_submitit_local_gives_the_serial_table(grid):
    pytest.importorskip(
        "submitit", reason="the slurm extra is not installed (pip install .[slurm])"
    )
    root, suite, home, ref = grid
    ran, done = in_process(suite, root / "submitit", "slurm:local")
    assert (ran, done) == (2, 0)
    assert table(suite, root / "submitit", home) == ref


def test_a_failing_cell_is_retried_once_then_reported_with_its_log(grid, tmp_path):
    root, _suite, home, _ref = grid
    bad = tmp_path / "bad.yaml"
    # A weight file whose SHA-256 is wrong stops the run (at run time: resolving passes).
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"not inception")
    bad.write_text(SUITE.replace('"loss=l2"', f'"loss=l2", "eval.weights_dir={weights}"'))
    results = tmp_path / "res"
    p = cli(["suite", "run", str(bad), "--results", str(results), "--executor", "local:2"], home)
    assert p.returncode == 1, p.stderr
    assert "1 cell(s) failed twice on --executor local:2 (1 ran, 0 were done)" in p.stderr
    assert "retrying 1 failed cell(s) once" in p.stderr
    assert "Traceback" not in p.stderr.split("invbench: error:")[0].split("FAILED")[0]
    logs = [q for q in (results / "logs").glob("*.log") if "inception" in q.read_text().lower()]
    assert len(logs) == 1
    for log in logs:
        assert f"log: {log}" in p.stderr
        assert log.read_text().count("[invbench] cell l2") == 2  # the first try and the retry
    assert len(list(results.glob("*.json"))) == 1  # the good cell is in the store


@pytest.mark.parametrize(
    "executor, message",
    [
        ("locale:2", "unknown executor 'locale'. Did you mean 'local'?"),
        ("local:0", "N must be an integer in [1, 1024]"),
        ("slurm:gpu", "use slurm (a Slurm cluster) or slurm:local"),
    ],
)
def test_bad_executor_exits_2_before_any_work(grid, tmp_path, executor, message):
    root, suite, home, _ = grid
    p = cli(["suite", "run", str(suite), "--results", str(tmp_path / "r"), "--executor", executor],
            home)  # fmt: skip
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


def test_bad_resources_exit_2_naming_the_key(grid, tmp_path):
    root, _suite, home, _ = grid
    bad = tmp_path / "bad.yaml"
    bad.write_text(SUITE + "resources: {cpus: 0}\n")
    p = cli(["suite", "run", str(bad), "--results", str(tmp_path / "r")], home)
    assert p.returncode == 2 and "resources: cpus must be an integer >= 1, got 0" in p.stderr
    with pytest.raises(UsageError, match="unknown key 'gpu'"):
        executors.resources({"gpu": 1})
    with pytest.raises(UsageError, match="time_min must lie in"):
        executors.resources({"time_min": 10}, {"time_min": 0})
    assert executors.resources({"cpus": 2, "partition": "a"}, {"partition": "b"}) == (
        executors.Resources(cpus=2, partition="b")
    )


def test_slurm_without_sbatch_exits_2(grid, tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    root, suite, home, _ = grid
    p = cli(["suite", "run", str(suite), "--results", str(tmp_path / "r"), "--executor", "slurm"],
            home, PATH=str(tmp_path))  # fmt: skip
    assert p.returncode == 2 and "'sbatch' is not on PATH" in p.stderr


# -- a real single-node Slurm cluster (Debian's slurm-wlm), started for this module ------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """slurmctld + slurmd on localhost with their own munged, ports and state: nothing of a
    system Slurm is touched. Skips, saying why, where the daemons cannot run."""
    missing = [n for n in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if not _sbin(n)]
    if missing:
        pytest.skip(f"REAL SLURM NOT TESTED: {', '.join(missing)} not installed (make slurm)")
    if os.geteuid() != 0:
        pytest.skip("REAL SLURM NOT TESTED: slurmd must run as root to start jobs")
    if not Path("/etc/munge/munge.key").is_file():
        pytest.skip("REAL SLURM NOT TESTED: no /etc/munge/munge.key (reinstall munge)")
    d = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname()
    sock = d / "munge.sock"
    subprocess.run([_sbin("munged"), f"--socket={sock}", f"--pid-file={d}/munged.pid",
                    f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed", "--force"],
                   check=True, timeout=30)  # fmt: skip
    conf = d / "slurm.conf"
    conf.write_text(
        f"""ClusterName=invbenchtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = dict(os.environ, SLURM_CONF=str(conf))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)  # sbatch / squeue in this process (submitit) read it
    pids = []
    try:
        subprocess.run([_sbin("slurmctld"), "-f", str(conf)], env=env, check=True, timeout=60)
        subprocess.run([_sbin("slurmd"), "-f", str(conf)], env=env, check=True, timeout=60)
        pids = [d / "slurmd.pid", d / "slurmctld.pid"]
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                 text=True, timeout=30)  # fmt: skip
            state = out.stdout.strip()
            if state == "idle":
                break
            time.sleep(1)
        else:
            logs = "".join(p.read_text()[-800:] for p in d.glob("slurm*.log"))
            pytest.skip(f"REAL SLURM NOT TESTED: the node did not come up ({state!r}):\n{logs}")
        yield d
    finally:
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, capture_output=True)
        for p in [*pids, d / "munged.pid"]:
            if p.is_file():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(p.read_text().split()[0]), 15)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def test_real_slurm_gives_the_serial_table(grid, slurm):
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    root, suite, home, ref = grid
    ran, done = in_process(suite, root / "slurm", "slurm", partition="test", time_min=10)
    assert (ran, done) == (2, 0)
    assert table(suite, root / "slurm", home) == ref
    # Every cell ran as a task of one Slurm array (its job id in the log's first line).
    outs = list((root / "slurm" / "logs" / "submitit").glob("*_0_log.out"))
    assert outs, "no Slurm array task output found"
