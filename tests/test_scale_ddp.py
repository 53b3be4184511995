"""Data-parallel training under torchrun (gloo, CPU): invbench.distributed and the training scaffold.

The helper tests/scale_ddp.py runs as two torchrun ranks or as one plain process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from invbench import distributed

HELPER = str(Path(__file__).with_name("scale_ddp.py"))


def launch(args: list[str], home: Path, nproc: int) -> subprocess.CompletedProcess:
    """The helper as ``torchrun --standalone`` (a free port of its own) or as one process."""
    env = dict(os.environ, INVBENCH_HOME=str(home), OMP_NUM_THREADS="1")
    head = [sys.executable]
    if nproc > 1:
        head += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return subprocess.run(head + [HELPER, *args], capture_output=True, text=True, env=env,
                          timeout=900)  # fmt: skip


def losses(path: Path) -> dict[int, tuple[float, float]]:
    rows = [json.loads(line) for line in path.with_suffix(".losses.jsonl").read_text().split("\n")
            if line]  # fmt: skip
    return {r["step"]: (r["loss_d"], r["loss_g"]) for r in rows}


def test_shards_partition_the_items():
    for n in (0, 1, 7, 8, 297):
        for w in (1, 2, 3, 5):
            parts = [distributed.shard(n, r, w) for r in range(w)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_rank_seeds_keep_rank_0_and_differ():
    assert distributed.rank_seed(7, 0) == 7  # one process draws what it always drew
    seeds = {distributed.rank_seed(7, r) for r in range(8)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)


def test_two_ranks_take_the_full_batch_gradient_step(tmp_path):
    """One SGD step with gradients averaged over two ranks' halves of a batch equals the step on
    the whole batch in one process (autograd on all 8 samples), from rank 0's weights."""
    out = tmp_path / "after.pt"
    p = launch(["grad", str(out)], tmp_path, nproc=2)
    assert p.returncode == 0, p.stderr[-3000:]
    sys.path.insert(0, str(Path(HELPER).parent))
    try:
        from scale_ddp import grad_problem
    finally:
        sys.path.pop(0)
    net, x, y = grad_problem(seed=0)
    (net(x) - y).pow(2).mean().backward()
    with torch.no_grad():
        expected = {k: v - v.grad for k, v in net.named_parameters()}
    got = torch.load(out, weights_only=True)
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=1e-6, atol=1e-6)


def test_ddp_dcgan_trains_checkpoints_resumes_after_kill_and_matches_one_process(tmp_path):
    """The default dcgan, 40 steps of global batch 32: one process at batch 32 vs two ranks at 16.

    Two ranks checkpoint every 10 steps; rank 1 is killed with SIGKILL after step 25, torchrun
    stops rank 0, and the same command resumes from step 20. Then:
    - the resumed steps 20-24 repeat the killed run's steps 20-24 exactly (every rank's random
      streams came back from the checkpoint) and both ranks end with the same weights;
    - the loss trajectory (the mean over the ranks, i.e. the loss of the global batch) matches
      the one-process run's. The two runs draw different batches (rank 1 has its own seed) and
      normalise BatchNorm over 16 instead of 32 images, so they agree up to sampling noise:
      each 10-step window mean must lie within 4 standard errors of the one-process window
      mean, the error of a difference of two window means being sigma * sqrt(2 / 10), with the
      per-step noise sigma measured from the one-process run's step-to-step differences
      (std(diff) / sqrt(2); the trend over one step is small beside it). A one-process run of
      another seed (other initial weights) is 7-36 such errors away in every window after the
      first (0.10-0.15 in loss_d, 0.36-0.83 in loss_g, measured): the bound does not pass any
      training of the same model.
    """
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    p = launch(["train", str(one)], tmp_path / "home1", nproc=1)
    assert p.returncode == 0, p.stderr[-3000:]

    home2 = tmp_path / "home2"
    p = launch(["train", str(two), "--kill-rank", "1", "--kill-at", "25"], home2, nproc=2)
    assert p.returncode != 0 and not two.exists(), "rank 1 should have been killed"
    assert "exitcode  : -9" in p.stderr  # torchrun saw the SIGKILL
    ckpts = list((home2 / "checkpoints" / "generators").glob("*.pt"))
    assert len(ckpts) == 1 and torch.load(ckpts[0], weights_only=True)["step"] == 20
    killed = losses(two)
    assert sorted(killed) == list(range(25))
    two.with_suffix(".losses.jsonl").unlink()

    p = launch(["train", str(two)], home2, nproc=2)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming train dcgan at step 20/40" in p.stderr
    resumed = losses(two)
    assert sorted(resumed) == list(range(20, 40))
    assert [resumed[s] for s in range(20, 25)] == [killed[s] for s in range(20, 25)]
    digests = json.loads(two.read_text())["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert not list((home2 / "checkpoints" / "generators").glob("*.pt"))  # dropped when done
    assert json.loads(one.read_text())["key"] == json.loads(two.read_text())["key"]

    ref = losses(one)
    a = np.array([ref[s] for s in range(40)])
    b = np.array([killed[s] for s in range(20)] + [resumed[s] for s in range(20, 40)])
    sigma = np.diff(a, axis=0).std(0) / np.sqrt(2)
    tol = 4 * sigma * np.sqrt(2 / 10)
    gap = np.abs((b - a).reshape(4, 10, 2).mean(1))
    assert (gap < tol).all(), f"window gaps {gap.tolist()} vs tolerance {tol.tolist()}"


def test_torchrun_cli_trains_a_generator_data_parallel_and_refuses_other_commands(tmp_path):
    env = dict(os.environ, INVBENCH_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    head += ["-m", "invbench"]
    args = ["train-generator", "-g", "dcgan", "--set", "steps=6", "--set", "batch_size=8"]
    p = subprocess.run(head + args + ["--out", str(tmp_path / "grid"), "-q"], env=env,
                       capture_output=True, text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("dcgan on digits: trained") == 1  # rank 0 alone prints
    assert len(list((tmp_path / "grid").glob("*.png"))) == 1
    (side,) = (tmp_path / "home" / "generators").glob("*.json")
    assert json.loads(side.read_text())["meta"]["train_processes"] == 2
    # A command that would only repeat itself on every process is refused (a run is sharded:
    # tests/test_scale_run.py).
    p = subprocess.run(head + ["ls", "methods"], env=env, capture_output=True, text=True,
                       timeout=900)  # fmt: skip
    assert p.returncode != 0  # each rank exits 2; torchrun reports a failed group as 1
    assert p.stderr.count("'ls' does not run on several processes") == 1


@pytest.mark.parametrize("world, batch", [(2, 33), (3, 32)])
def test_a_batch_the_world_does_not_divide_is_refused(monkeypatch, world, batch):
    from invbench.errors import UsageError
    from invbench.generators.dcgan import DCGAN

    monkeypatch.setattr(distributed, "world_size", lambda: world)
    with pytest.raises(UsageError, match=f"batch_size={batch} does not divide among {world}"):
        distributed.per_rank(DCGAN.Config(batch_size=batch), "batch_size")
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert distributed.per_rank(DCGAN.Config(batch_size=32), "batch_size").batch_size == 16
