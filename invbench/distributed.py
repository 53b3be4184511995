"""Ranks, worlds and the few collectives invbench needs under ``torchrun``.

``torchrun --nproc-per-node N -m invbench ...`` starts N processes with ``RANK``, ``WORLD_SIZE``
and ``MASTER_ADDR`` in their environment; ``init()`` joins them into one process group (gloo for
CPU tensors, NCCL for CUDA ones). Outside torchrun — or with one process — every helper here is
the identity: one process is a world of size 1 and rank 0, and nothing changes.

Two consumers:

- Training (``generators/train.py``'s ``Checkpointer`` / ``TrainingLoop``, which every trainer
  of the benchmark shares): each rank draws its own batches from its own seed (``rank_seed``),
  of size ``batch_size / world`` (``per_rank``), and the gradients are averaged over the ranks
  before every optimiser step (``data_parallel``) — data parallelism as StyleGAN3's training
  loop does it, one flat ``all_reduce`` per step. ``DistributedDataParallel``'s wrapper is not
  used: it supports neither ``torch.autograd.grad`` with ``create_graph`` (the R1 and WGAN-GP
  penalties take the gradient of D's output with respect to its input, then backpropagate
  through it; PyTorch's DDP notes say it does not work with ``autograd.grad``) nor modules
  called through methods other than ``forward`` (``gen.synthesize``, ``gen.training_forward``):
  its reducer is armed in ``forward`` only.
- Evaluation (the runner): shards of the test images, random samples and interpolation pairs,
  and the gathers of per-image results and metric states (``shard``, ``gather_cat``).

BatchNorm statistics stay per rank during training (each rank normalises its own share of the
batch, as DDP does without ``SyncBatchNorm``, which runs on GPUs only) and are averaged over the
ranks whenever a model is saved or handed on (``average_buffers``), so every rank holds the
same model.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import importlib
import os
import pickle
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from invbench.errors import UsageError

# How long a rank waits in a collective. The other ranks wait in a broadcast while rank 0 builds
# a cache entry alone (a feature network, reference statistics) or waits on another process's
# build lock (artifacts.cached), which at paper scale can outlast gloo's 30-minute default. A
# rank that dies does not leave the others waiting that long: torchrun stops the whole group.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=24)


def init() -> bool:
    """Join the process group torchrun describes in the environment (a no-op without one, or
    when it is already joined); return whether this process is one of several."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        # torch._dynamo imported after the group exists keeps a reference to it (torch 2.14.1;
        # the first optimiser step imports it), so destroy_process_group() left gloo's worker
        # threads running into interpreter teardown, where one releasing a finished all_reduce
        # needs the GIL and aborts the process (SIGABRT, "terminate called without an active
        # exception": 4 of 20 two-rank runs of tests/scale_ddp.py grad). Imported first, it
        # holds nothing and shutdown() joins the threads.
        importlib.import_module("torch._dynamo")

        # One backend per device type: gloo moves CPU tensors, NCCL CUDA ones.
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
        # A process that ends without leaving the group (a Python API caller, a script) could
        # die at exit: gloo's threads still running at interpreter teardown call std::terminate
        # (SIGABRT, "terminate called without an active exception"; seen on rank 1 in 2 of 30
        # runs of the torchrun cache test). Leaving it at exit joins them; shutdown() twice is
        # harmless.
        atexit.register(shutdown)
    return is_distributed()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def rank_seed(seed: int, rank_: int | None = None) -> int:
    """The seed of ``rank_`` (default: this process) derived from the run's ``seed``.

    Rank 0 keeps ``seed`` (so one process draws exactly what it always drew); rank r > 0 draws
    from numpy's ``SeedSequence([seed, r])``, the standard way to spawn independent streams.
    """
    r = rank() if rank_ is None else rank_
    if r == 0:
        return seed
    return int(np.random.SeedSequence([seed, r]).generate_state(1, dtype=np.uint64)[0] >> 1)


def per_rank(cfg: Any, *fields: str) -> Any:
    """``cfg`` with each batch-size field divided by the world size: the global batch of the
    configuration is shared out, so a 2-process run with batch B trains as one process with B.
    A batch the world does not divide is refused before training."""
    n = world_size()
    if n == 1:
        return cfg
    changes = {}
    for name in fields:
        value = getattr(cfg, name)
        if value % n:
            raise UsageError(
                f"{name}={value} does not divide among {n} processes; set {name} to a multiple "
                f"of {n} (--set {name}=...) or change --nproc-per-node."
            )
        changes[name] = value // n
    return dataclasses.replace(cfg, **changes)


# -- training: parameters, gradients, buffers ---------------------------------------------------


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace each gradient by its mean over the ranks, in one flat ``all_reduce``.

    Every rank runs the same code, so the same parameters have gradients everywhere; that is
    checked (a mismatch would otherwise pair the wrong numbers, or hang).
    """
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    count = torch.tensor([len(grads), -len(grads)], dtype=torch.int64)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    if int(count[0]) != -int(count[1]):
        raise RuntimeError(
            "ranks reached an optimiser step with gradients for different parameters "
            f"({-int(count[1])} to {int(count[0])}); data-parallel training needs the same "
            "code path on every rank."
        )
    if not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _average_before_step(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    average_gradients(p for group in opt.param_groups for p in group["params"])


def data_parallel(modules: Iterable[nn.Module], opts: Iterable[torch.optim.Optimizer]) -> None:
    """Make a training data-parallel: the same starting weights on every rank (rank 0's), and
    gradients averaged over the ranks before every step of each optimiser (a pre-step hook, so
    the training step itself is unchanged). Idempotent; a no-op in a world of one."""
    if not is_distributed():
        return
    for m in modules:
        broadcast_module(m)
    for opt in opts:
        if not getattr(opt, "_invbench_data_parallel", False):
            opt.register_step_pre_hook(_average_before_step)
            opt._invbench_data_parallel = True  # type: ignore[attr-defined]


def average_buffers(*modules: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, so every
    rank holds the same model; integer buffers (batch counters) are equal already."""
    if not is_distributed():
        return
    with torch.no_grad():
        for m in modules:
            for b in m.buffers():
                if b.is_floating_point():
                    dist.all_reduce(b)
                    b /= world_size()


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (a NaN anywhere makes the mean NaN everywhere, so a
    divergence guard that reads the mean stops every rank at the same step)."""
    if not is_distributed() or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    t /= world_size()
    return dict(zip(values, t.tolist(), strict=True))


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src)
    return box[0]


def on_main(fn: Callable[[], Any]) -> Any:
    """``fn()`` run by rank 0 alone, its result handed to every rank; if it raises, every rank
    raises (rank 0 its own exception, the others a copy), so no rank is left waiting in a
    collective for a result that will never come."""
    if not is_distributed():
        return fn()
    result = error = None
    if is_main():
        try:
            result = fn()
        except Exception as e:
            error = e
    shared = error
    if error is not None:
        try:
            pickle.dumps(error)
        except Exception:  # an exception that does not pickle still stops the others
            shared = RuntimeError(f"rank 0 failed: {type(error).__name__}: {error}")
    result, shared = broadcast_object((None, shared) if error is not None else (result, None))
    if error is not None:
        raise error
    if shared is not None:
        raise shared
    return result


# -- evaluation: shards and gathers ----------------------------------------------------------------


def shard(n: int, rank_: int | None = None, world: int | None = None) -> range:
    """Rank ``rank_``'s (default: this process's) contiguous share of ``n`` items in a world of
    ``world`` (default: this one); the first ``n % world`` ranks get one more, and the shards in
    rank order concatenate to ``range(n)``."""
    w = world_size() if world is None else world
    r = rank() if rank_ is None else rank_
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return range(start, start + base + (1 if r < extra else 0))


def shard_batches(n: int, size: int, rank_: int | None = None, world: int | None = None) -> range:
    """This rank's share of ``n`` items in whole batches of ``size``: the batches
    ``[k * size, (k + 1) * size)`` are ``shard``-ed, so every item is processed in the same batch
    whatever the world size (a batched computation need not be bitwise independent of its
    batch-mates: CPU kernels block by batch size)."""
    batches = shard(-(-n // size), rank_, world)
    return range(min(n, batches.start * size), min(n, batches.stop * size))


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order, on rank 0 (None on the others)."""
    if not is_distributed():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dimension 0, in rank order (on every rank); the
    ranks may hold different numbers of rows. Exact: tensors are moved, not reduced."""
    if not is_distributed():
        return t
    return torch.cat(gather_objects(t.detach().cpu())).to(t.device)
