"""Training generators of the zoo, and finding them in the artifact cache.

``obtain()`` is the single entry point: it resolves a generator's configuration, looks for the
trained weights in the artifact cache (``invbench.artifacts.cached``) under the content hash of
(generator, configuration, dataset, training code version), and trains them when they are
missing — once, even when several processes ask at the same time. The initial weights are drawn from the
configuration's seed. Training checkpoints every ``ckpt_every`` steps with every RNG state, so an
interrupted run resumes to bit-identical weights; a NaN or exploding loss stops with
``TrainingDiverged`` and caches nothing (its checkpoint is dropped too: resuming it would only
diverge again).

A generator trains through ``Generator.train_model``: ``train_gan`` unless it overrides it (the
autoencoder does). Training reads the train split through ``splits.train_images()``, streamed
when it does not fit in memory.
Every trainer of the benchmark (these two, and the methods that train their own networks:
``invgan``, ``lia``, ``bigan``) shares the scaffolding below: ``Checkpointer`` for the resumable
state, ``TrainingLoop`` for the step loop (progress bar, checkpoint every ``ckpt_every`` steps,
the ``check_finite`` divergence guard). A generator class with ``pretrained = True``
(``stylegan2``) is loaded from its file, never trained; its key is the hash of its
``fingerprint()`` (the weights' content).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from invbench import artifacts, distributed, preflight
from invbench.config import as_dict, parse_sets, resolve, stable_hash
from invbench.data import Splits
from invbench.errors import TrainingDiverged, UsageError
from invbench.execution import Execution, plain
from invbench.generators.base import Generator
from invbench.progress import bar, log
from invbench.registry import GENERATORS

# Bump when training code changes its result, to invalidate cached weights.
# v2: initial weights seeded from the config's seed; R1 penalty; Generator.training_forward.
# v3: optional EMA of G's weights with standing BatchNorm statistics.
TRAIN_VERSION = 3
StepHook = Callable[[int], None]


def generator_key(name: str, cfg: Any, dataset_fp: dict[str, Any]) -> str:
    return artifacts.key_of(generator_payload(name, cfg, dataset_fp))


def generator_payload(name: str, cfg: Any, dataset_fp: dict[str, Any]) -> dict[str, Any]:
    """What a trained zoo generator depends on: its cache identity."""
    return {"generator": name, "config": artifacts.identity(cfg), "data": dataset_fp,
            "v": TRAIN_VERSION}  # fmt: skip


def build_generator(name: str, cfg: Any, channels: int, resolution: int) -> Generator:
    """Construct generator ``name`` with initial weights drawn from ``cfg.seed`` only."""
    cls = GENERATORS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(getattr(cfg, "seed", 0))
        return cls(cfg, channels, resolution)


def obtain(
    name: str,
    splits: Splits,
    dataset_fp: dict[str, Any],
    overrides: dict[str, str] | None = None,
    device: str | torch.device = "cpu",
    profile: str | None = None,
    on_step: StepHook | None = None,
) -> tuple[Generator, dict[str, Any]]:
    """Return the trained generator (eval mode, frozen) and a description with its cache key;
    ``profile`` is the scale profile its configuration resolves with (``invbench.config``).

    A zoo generator is the model under study, shared by every execution policy of the runs that
    invert it: it trains as the zoo trains it (fp32, eager, ``train_gan``'s default), so no
    knob of a run changes the model it inverts or its key."""
    cls = GENERATORS.get(name)
    cfg = resolve(cls.Config, "generator", name, overrides, profile)
    if cls.pretrained:  # e.g. stylegan2 loads its checkpoint: nothing to train
        return _load_pretrained(name, cls, cfg, splits, device)
    gen = build_generator(name, cfg, splits.channels, splits.resolution)

    def build(key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        log(f"training generator '{name}' on {dataset_fp['dataset']} (cached after this run)")
        data = splits.train_images()  # a streamed view when it does not fit in memory
        try:
            seconds = gen.train_model(data, key, device=device, on_step=on_step)
        except TrainingDiverged:
            artifacts.drop_checkpoint("generators", key)
            raise
        distributed.average_buffers(gen)  # BatchNorm statistics of every rank's share
        gen.cpu()
        meta = {"name": name, "train_seconds": seconds, "train_threads": torch.get_num_threads()}
        meta["train_processes"] = distributed.world_size()
        return gen.state_dict(), {**meta, "device": str(device)}

    payload = generator_payload(name, cfg, dataset_fp)
    art = artifacts.cached("generators", payload, build, parallel=True)  # every rank trains
    if not art.built:
        gen.load_state_dict(art.tensors)
    seconds = art.meta.get("train_seconds")  # as measured when it was trained
    gen.to(device).eval().requires_grad_(False)
    info = {
        "name": name,
        "key": art.key,
        "config": as_dict(cfg),
        "train_seconds": None if seconds is None else round(float(seconds), 2),
        "train_threads": art.meta.get("train_threads"),
        "cached": not art.built,
    }
    return gen, info


def _load_pretrained(
    name: str, cls: type, cfg: Any, splits: Splits, device: str | torch.device
) -> tuple[Generator, dict[str, Any]]:
    """A pretrained generator (class attribute ``pretrained = True``) loads, never trains.

    Its constructor reads the weights; its cache key is ``stable_hash(gen.fingerprint())``
    (the weights' content and the settings that change its output), so inverters fitted on
    it are cached per checkpoint, wherever the file lives.
    """
    gen: Generator = cls(cfg, splits.channels, splits.resolution)
    gen.to(device).eval().requires_grad_(False)
    fp = gen.fingerprint()  # type: ignore[operator]
    info = {"name": name, "key": stable_hash(fp), "config": as_dict(cfg), "train_seconds": 0.0}
    info["checkpoint_sha256"] = fp.get("sha256")  # recorded: the weights' content
    return gen, {**info, "cached": True, "pretrained": True}


#: The fix a divergence message suggests for the zoo's GANs.
LOWER_GAN_LRS = "the learning rate (--set lr_g=..., lr_d=...)"


def check_finite(
    step: int,
    /,
    what: str = "generator training",
    lower: str = LOWER_GAN_LRS,
    **losses: torch.Tensor | float,
) -> None:
    """Raise ``TrainingDiverged`` on a NaN / inf loss or one whose magnitude exceeds 1e6.

    The message names ``what`` diverged (e.g. ``"invgan training"``), the step, the loss term
    and its value, and suggests lowering ``lower`` (the learning rates to ``--set``).
    """
    for k, v in losses.items():
        x = _scalar(v)
        if not math.isfinite(x) or abs(x) > 1e6:
            raise TrainingDiverged(
                f"{what} diverged at step {step}: {k} = {x:.4g}. Nothing was cached. "
                f"Lower {lower} or change the seed."
            )


def _scalar(v: torch.Tensor | float) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


class Checkpointer:
    """Resumable training state (modules, optimisers, RNG states, step) of one artifact key.

    The checkpoint holds each module's and optimiser's state dict under its name, the state of
    ``rng`` and (``torch_rng``) of torch's global generator, the step, the training seconds so
    far, and whatever ``extra()`` returns at save time (e.g. a tensor carried between steps);
    ``loaded`` keeps the restored checkpoint for those entries.

    Under torchrun (``invbench.distributed``) it also makes the training data-parallel: every
    rank starts from rank 0's weights, gradients are averaged over the ranks before each
    optimiser step, and ``rng`` (and torch's generator) are re-seeded per rank from their seed
    (``rank_seed``: rank 0 keeps it). Rank 0 writes the checkpoint; the rank-local entries (the
    RNG states, ``extra()``) of every rank travel in it under ``"ranks"``, so each rank resumes
    its own streams and a resumed run is bit-identical to an uninterrupted one.
    """

    def __init__(
        self,
        key: str,
        nets: dict[str, nn.Module],
        opts: dict[str, torch.optim.Optimizer],
        rng: torch.Generator,
        *,
        kind: str = "generators",
        torch_rng: bool = True,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.key, self.nets, self.opts, self.rng = key, nets, opts, rng
        self.kind, self.torch_rng, self.extra = kind, torch_rng, extra
        self.started, self.before = time.perf_counter(), 0.0
        self.loaded: dict[str, Any] | None = None
        if distributed.is_distributed():
            distributed.data_parallel(nets.values(), opts.values())
            rng.manual_seed(distributed.rank_seed(rng.initial_seed()))
            if torch_rng:
                torch.manual_seed(distributed.rank_seed(torch.initial_seed()))

    def elapsed(self) -> float:
        """Training seconds so far, including those before the checkpoint it resumed from."""
        return self.before + time.perf_counter() - self.started

    def restore(self) -> int:
        """Load the last checkpoint if there is one; return the step to start from."""
        return self.resume_from(artifacts.load_checkpoint(self.kind, self.key))

    def resume_from(self, state: dict[str, Any] | None) -> int:
        """Load ``state`` (a checkpoint, or None for a fresh start); return its step.

        A checkpoint without this trainer's optimisers is the hand-over of an earlier training
        stage: only its modules are loaded, the optimisers and RNGs start afresh.
        """
        if state is not None and distributed.is_distributed():
            state = self._rank_view(state)
        self.loaded = state
        if state is None:
            return 0
        for k, net in self.nets.items():
            net.load_state_dict(state[k])
        if all(k in state for k in self.opts):
            for k, opt in self.opts.items():
                opt.load_state_dict(state[k])
            if "rng" in state:  # absent: another world size wrote it (see _rank_view)
                self.rng.set_state(state["rng"])
            if self.torch_rng and "torch_rng" in state:
                torch.set_rng_state(state["torch_rng"])
        self.before = float(state.get("elapsed", 0.0))
        return int(state["step"])

    def _local(self) -> dict[str, Any]:
        """The entries each rank has its own of: RNG states and ``extra()``."""
        local: dict[str, Any] = {"rng": self.rng.get_state()}
        if self.torch_rng:
            local["torch_rng"] = torch.get_rng_state()
        if self.extra is not None:
            local.update(self.extra())
        return local

    def _rank_view(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` with this rank's own entries; a checkpoint of another world size (or of a
        stage hand-over) has none for it: its streams start afresh from its rank seed."""
        ranks = state.get("ranks")
        if ranks is not None and len(ranks) == distributed.world_size():
            return {**state, **ranks[distributed.rank()]}
        log(f"checkpoint {self.key[:12]} was written by another number of processes: every "
            "rank resumes the weights, with fresh random streams (valid, not bit-identical)")  # fmt: skip
        return {k: v for k, v in state.items() if k not in ("rng", "torch_rng", "ranks")}

    def save(self, step: int) -> None:
        """Write the checkpoint (rank 0; every rank must call it, at the same step)."""
        for net in self.nets.values():  # per-rank BatchNorm statistics, averaged
            distributed.average_buffers(net)
        local = self._local()
        ranks = distributed.gather_objects(local)
        state: dict[str, Any] = {k: v.state_dict() for k, v in {**self.nets, **self.opts}.items()}
        state.update(local, step=step, elapsed=self.elapsed())
        if distributed.is_distributed():
            state["ranks"] = ranks
        artifacts.save_checkpoint(self.kind, self.key, state)  # rank 0 writes

    def drop(self) -> None:
        artifacts.drop_checkpoint(self.kind, self.key)


class TrainingLoop:
    """The steps ``start .. steps - 1`` of a resumable training, with its scaffolding.

    Iterating yields the step; the body ends with ``report`` (the divergence guard and the
    progress read-out). After each step the bar advances, the state is checkpointed every
    ``ckpt_every`` steps (not after the last) and ``on_step(steps_done)`` runs. On divergence
    the checkpoint is dropped (resuming it would only diverge again) before the error rises.
    """

    def __init__(
        self,
        ckpt: Checkpointer,
        start: int,
        steps: int,
        ckpt_every: int,
        desc: str,
        *,
        what: str = "generator training",
        lower: str = LOWER_GAN_LRS,
        on_step: StepHook | None = None,
    ) -> None:
        self.ckpt, self.start, self.steps, self.ckpt_every = ckpt, start, steps, ckpt_every
        self.desc, self.what, self.lower, self.on_step = desc, what, lower, on_step
        if start:
            log(f"resuming {desc} at step {start}/{steps}")

    def __iter__(self) -> Iterator[int]:
        self.pbar = bar(self.steps, self.desc, initial=self.start)
        try:
            for step in range(self.start, self.steps):
                yield step
                self.pbar.update(1)
                done = step + 1
                if done % self.ckpt_every == 0 and done < self.steps:
                    self.ckpt.save(done)
                if self.on_step is not None:
                    self.on_step(done)
            for net in self.ckpt.nets.values():  # every rank ends with the same model
                distributed.average_buffers(net)
        finally:
            self.pbar.close()

    def report(
        self,
        step: int,
        /,
        show: dict[str, tuple[torch.Tensor | float, str]] | None = None,
        **losses: torch.Tensor | float,
    ) -> None:
        """Check ``losses`` (``check_finite``); every 50 steps show them on the bar to three
        decimals, or ``show``'s values instead (name -> (value, format spec)).

        ``losses`` keeps the step's losses, averaged over the ranks under torchrun (the loss of
        the global batch), which the divergence guard reads so every rank stops together.
        """
        self.losses = distributed.mean_over_ranks({k: _scalar(v) for k, v in losses.items()})
        try:
            check_finite(step, self.what, self.lower, **self.losses)
        except TrainingDiverged:
            self.ckpt.drop()
            raise
        if step % 50 == 0:
            shown = show if show is not None else {k: (v, ".3f") for k, v in losses.items()}
            self.pbar.set_postfix({k: f"{_scalar(v):{spec}}" for k, (v, spec) in shown.items()})


def _gradient_penalty(
    disc: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    g: torch.Generator,
) -> torch.Tensor:
    # WGAN-GP (Gulrajani et al. 2017, eq. 3): (||grad D(x_hat)||_2 - 1)^2 on random interpolates.
    eps = torch.rand(len(real), 1, 1, 1, generator=g).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _r1_penalty(disc: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    # R1 (Mescheder et al. 2018, eq. 9; StyleGAN2's regulariser): E ||grad_x D(x_real)||^2.
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(real).sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


class GanStep:
    """One step of ``train_gan``: ``n_critic`` discriminator updates, then one generator update.

    It owns a fresh discriminator (initial weights from ``cfg.seed + 1``), both optimisers (the
    config's ``optimizer``: Adam, RMSProp for ``wgan``) and the data RNG (``cfg.seed``); both
    networks run through ``execution`` (precision, compilation, memory format) while the losses
    and the optimisers stay float32. ``train_gan`` loops over it; the bench times one call as
    it is. Under torchrun it draws this rank's share of the batch (``distributed.per_rank``);
    ``train_gan``'s Checkpointer averages the gradients.
    """

    def __init__(
        self,
        gen: Generator,
        data: torch.Tensor,
        device: str | torch.device = "cpu",
        execution: Execution | None = None,
    ) -> None:
        cfg = self.cfg = distributed.per_rank(gen.cfg, "batch_size")  # this rank's share
        self.gen, self.device = gen, torch.device(device)
        ex = execution if execution is not None else plain(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)  # the discriminator's initial weights, seeded too
            self.disc = gen.make_discriminator()
        ex.prepare(gen.to(device).train())
        ex.prepare(self.disc.to(device).train())
        # Compiled autograd does not differentiate twice: a discriminator under a gradient
        # penalty (WGAN-GP, R1) runs eagerly.
        penalised = cfg.loss == "wgan-gp" or cfg.r1_gamma > 0
        self.generate = ex.wrap(gen.training_forward)
        self.critic = ex.wrap(self.disc, compile=not penalised)
        self.opt_g = cfg.optimizer(gen.parameters(), cfg.lr_g)
        self.opt_d = cfg.optimizer(self.disc.parameters(), cfg.lr_d)
        self.rng = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.data = data.to(device)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Run step ``step``; return (D's loss, G's loss)."""
        cfg, gen, rng, device, critic = self.cfg, self.gen, self.rng, self.device, self.critic
        data, n = self.data, len(self.data)
        # Instance noise (Sønderby et al. 2017; Creswell's GAN+noise) on both of D's inputs,
        # its std decaying over training as the config's schedule says.
        sigma = cfg.noise_std(step)
        for _ in range(cfg.n_critic):
            real = data[torch.randint(n, (cfg.batch_size,), generator=rng).to(device)]
            z = gen.sample_z(cfg.batch_size, rng)
            with torch.no_grad():
                fake = self.generate(z, rng)
            if sigma > 0:
                real = real + sigma * torch.randn(real.shape, generator=rng).to(device)
                fake = fake + sigma * torch.randn(fake.shape, generator=rng).to(device)
            d_real, d_fake = critic(real), critic(fake)
            if cfg.loss in ("wgan", "wgan-gp"):  # the critic (Arjovsky et al. 2017, Alg. 1)
                loss_d = d_fake.mean() - d_real.mean()
                if cfg.loss == "wgan-gp":
                    loss_d = loss_d + cfg.gp_weight * _gradient_penalty(critic, real, fake, rng)
            else:
                loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            if cfg.r1_gamma > 0:
                loss_d = loss_d + 0.5 * cfg.r1_gamma * _r1_penalty(critic, real)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            cfg.constrain_critic(self.disc)
        z = gen.sample_z(cfg.batch_size, rng)
        fake = self.generate(z, rng)
        if sigma > 0:
            fake = fake + sigma * torch.randn(fake.shape, generator=rng).to(device)
        d_fake = critic(fake)
        loss_g = F.softplus(-d_fake).mean() if cfg.loss == "ns" else -d_fake.mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return loss_d, loss_g


def train_gan(
    gen: Generator,
    data: torch.Tensor,
    key: str,
    device: str | torch.device = "cpu",
    on_step: StepHook | None = None,
    execution: Execution | None = None,
) -> float:
    """Train ``gen`` (and a fresh discriminator) on ``data`` with its config's loss, one
    ``GanStep`` at a time; return the training seconds (those before a resumed checkpoint
    included)."""
    cfg = gen.cfg  # the global batch; GanStep draws this rank's share (torchrun)
    train_step = GanStep(gen, data, device, execution)
    nets: dict[str, nn.Module] = {"gen": gen, "disc": train_step.disc}
    ema = copy.deepcopy(gen).requires_grad_(False) if cfg.ema > 0 else None
    if ema is not None:
        nets["ema"] = ema
    opts = {"opt_g": train_step.opt_g, "opt_d": train_step.opt_d}
    ckpt = Checkpointer(key, nets, opts, train_step.rng)
    start = ckpt.restore()
    loop = TrainingLoop(
        ckpt, start, cfg.steps, cfg.ckpt_every, f"train {gen.name}", on_step=on_step
    )
    for step in loop:
        loss_d, loss_g = train_step(step)
        if ema is not None:
            ema_update(ema, gen, cfg.ema, step)
        loop.report(step, loss_d=loss_d.detach(), loss_g=loss_g.detach())
    if ema is not None:
        keep_average(gen, ema, train_step.cfg.batch_size, train_step.rng)
    gen.eval()
    return ckpt.elapsed()


def ema_update(ema: nn.Module, gen: nn.Module, decay: float, step: int) -> None:
    """One step of the generator's moving average (the zoo's ``ema``; LIA's ``ema_stage1``)."""
    # theta_ema <- d * theta_ema + (1 - d) * theta, with the warm-up d_t = min(d, (1+t)/(10+t))
    # so the average forgets the random initial weights quickly.
    d = min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), gen.parameters(), strict=True):
            pe.lerp_(p, 1.0 - d)


def keep_average(gen: Generator, ema: nn.Module, batch_size: int, rng: torch.Generator) -> None:
    """Make ``gen`` the averaged generator ``ema``: its parameters, and BatchNorm statistics
    measured for them (the live model's buffers belong to other weights)."""
    with torch.no_grad():
        for p, pe in zip(gen.parameters(), ema.parameters(), strict=True):
            p.copy_(pe)
    standing_batchnorm(gen, batch_size, rng)


@torch.no_grad()
def standing_batchnorm(gen: Generator, batch_size: int, rng: torch.Generator) -> None:
    """Re-estimate BatchNorm running statistics for the averaged weights ("standing statistics",
    Brock et al. 2019, BigGAN §C.1): the live generator's statistics belong to other weights."""
    bns = [m for m in gen.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    gen.train()
    for _ in range(32):
        gen.training_forward(gen.sample_z(batch_size, rng), rng)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom


def route_sets(
    sets: list[str], gen_cls: type, dataset_cls: type
) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``--set`` items between a generator and a dataset (unprefixed: generator first)."""
    scoped = parse_sets(sets)
    owners = {"generator": gen_cls.Config, "dataset": dataset_cls.Config}
    routed: dict[str, dict[str, str]] = {k: dict(scoped.get(k, {})) for k in owners}
    for scope in scoped:
        if scope and scope not in owners:
            raise UsageError(
                f"--set {scope}.…: unknown scope '{scope}'; use generator. or dataset."
            )
    for key, value in scoped.get("", {}).items():
        hits = [n for n, c in owners.items() if key in {f.name for f in dataclasses.fields(c)}]
        if not hits:
            valid = "; ".join(
                f"{n}: {', '.join(f.name for f in dataclasses.fields(c))}"
                for n, c in owners.items()
            )
            raise UsageError(f"--set {key}=…: unknown key '{key}'. Valid keys — {valid}.")
        routed[hits[0]][key] = value
    return routed["generator"], routed["dataset"]


def save_samples(gen: Generator, path: Path, n: int = 64, seed: int = 0) -> None:
    """A PNG grid of ``n`` samples from fixed prior draws (upscaled to >= 64 px per image)."""
    from torchvision.utils import make_grid, save_image

    with torch.no_grad():
        z = gen.sample_latent(n, "z", torch.Generator().manual_seed(seed))
        x = gen.synthesize(z, "z").cpu().clamp(-1, 1) * 0.5 + 0.5
    if x.shape[-1] < 64:
        x = F.interpolate(x, scale_factor=64 // x.shape[-1], mode="nearest")
    grid = make_grid(x, nrow=int(math.ceil(math.sqrt(n))), padding=2, pad_value=1.0)
    with artifacts.atomic_path(path) as tmp:
        save_image(grid, tmp, format="png")


def train_generator(
    generator: str,
    dataset: str,
    sets: list[str],
    out: Path,
    device: str = "cpu",
    n_samples: int = 64,
) -> tuple[dict[str, Any], Path]:
    """``invbench train-generator``: train (or find in the cache), then write a sample grid."""
    from invbench.registry import DATASETS

    if n_samples < 1:
        raise UsageError(f"--samples must be >= 1, got {n_samples}.")
    gen_cls, ds_cls = GENERATORS.get(generator), DATASETS.get(dataset)
    gen_sets, ds_sets = route_sets(sets, gen_cls, ds_cls)
    ds = ds_cls(resolve(ds_cls.Config, "dataset", dataset, ds_sets))
    preflight.check_run(out)  # cache and --out writable, with room, before training
    gen, info = obtain(generator, ds.load(), ds.train_fingerprint(), gen_sets, device=device)
    path = Path(out) / f"{generator}__{dataset}__{info['key']}.png"
    if distributed.is_main():  # under torchrun the other ranks write nothing
        save_samples(gen, path, n_samples)
    return info, path
