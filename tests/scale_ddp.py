"""Test helper: data-parallel steps run alone or as one rank of a torchrun world.

    [torchrun --nproc-per-node 2] scale_ddp.py train OUT --steps S --batch B [--ckpt-every K]
        [--kill-rank R --kill-at STEP]
    [torchrun --nproc-per-node 2] scale_ddp.py grad OUT

``train`` trains the default dcgan on digits through ``obtain`` (the zoo's path). Rank 0 appends
each step's losses (averaged over the ranks, as ``TrainingLoop.losses`` has them) to
OUT.losses.jsonl as it goes, and at the end writes OUT: the SHA-256 of the trained weights as
each rank holds them. ``--kill-rank`` ends that rank with SIGKILL after step ``--kill-at``, as a
crashed node would (torchrun then stops the others); the same command run again resumes.

``grad`` takes one SGD step (lr 1) of a small network on the ranks' shards of 8 fixed samples,
rank 1 starting from other weights, and writes the weights after the step (rank 0) to OUT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
from pathlib import Path

import torch
from torch import nn

from invbench import distributed
from invbench.generators import train
from invbench.registry import DATASETS


def digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def grad_problem(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small conv net (no BatchNorm: its loss is a mean over independent samples) and data."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randn(8, 3, generator=g)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(144, 3))
    return net, x, y


def grad(out: Path) -> None:
    net, x, y = grad_problem(seed=distributed.rank())  # rank 1 starts elsewhere: broadcast
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    distributed.data_parallel([net], [opt])
    part = distributed.shard(len(x))
    loss = (net(x[part.start : part.stop]) - y[part.start : part.stop]).pow(2).mean()
    loss.backward()
    opt.step()
    if distributed.is_main():
        torch.save(net.state_dict(), out)


def train_dcgan(out: Path, args: argparse.Namespace) -> None:
    log = out.with_suffix(".losses.jsonl")
    report = train.TrainingLoop.report

    def recording(self, step, *a, **kw):  # observe the averaged losses the loop computes
        report(self, step, *a, **kw)
        if distributed.is_main():
            with open(log, "a") as f:
                f.write(json.dumps({"step": step, **self.losses}) + "\n")

    train.TrainingLoop.report = recording

    def kill(done: int) -> None:
        if distributed.rank() == args.kill_rank and done == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    ds = DATASETS.get("digits")(DATASETS.get("digits").Config())
    sets = {"steps": str(args.steps), "batch_size": str(args.batch)}
    sets["ckpt_every"] = str(args.ckpt_every)
    gen, info = train.obtain("dcgan", ds.load(), ds.train_fingerprint(), sets, on_step=kill)
    ranks = distributed.gather_objects(digest(gen))
    if distributed.is_main():
        out.write_text(json.dumps({"rank_digests": ranks, "key": info["key"]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "grad"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ckpt-every", type=int, default=10)
    ap.add_argument("--kill-rank", type=int, default=-1)
    ap.add_argument("--kill-at", type=int, default=-1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    distributed.init()
    try:
        if args.mode == "grad":
            grad(args.out)
        else:
            train_dcgan(args.out, args)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
