"""Training generators of the zoo, and finding them in the artifact cache.

``obtain()`` is the single entry point: it resolves a generator's configuration, looks for the
trained weights under the content hash of (generator, configuration, dataset, training code
version), and trains them when they are missing. Training checkpoints every ``ckpt_every``
steps with every RNG state, so an interrupted run resumes to bit-identical weights; a NaN or
exploding loss stops with ``TrainingDiverged`` and caches nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from invbench import artifacts
from invbench.config import as_dict, resolve, stable_hash
from invbench.data import Splits
from invbench.errors import TrainingDiverged
from invbench.generators.base import Generator
from invbench.progress import bar, log
from invbench.registry import GENERATORS

TRAIN_VERSION = 1  # bump when training code changes its result, to invalidate cached weights
StepHook = Callable[[int], None]


def generator_key(name: str, cfg: Any, dataset_fp: dict[str, Any]) -> str:
    return stable_hash(
        {"generator": name, "config": as_dict(cfg), "data": dataset_fp, "v": TRAIN_VERSION}
    )


def obtain(
    name: str,
    splits: Splits,
    dataset_fp: dict[str, Any],
    overrides: dict[str, str] | None = None,
    device: str | torch.device = "cpu",
    on_step: StepHook | None = None,
) -> tuple[Generator, dict[str, Any]]:
    """Return the trained generator (eval mode, frozen) and a description with its cache key."""
    cls = GENERATORS.get(name)
    cfg = resolve(cls.Config, "generator", name, overrides)
    key = generator_key(name, cfg, dataset_fp)
    gen: Generator = cls(cfg, splits.channels, splits.resolution)
    cached = artifacts.load_artifact("generators", key)
    seconds = 0.0
    if cached is not None:
        gen.load_state_dict(cached[0])
        seconds = float(cached[1].get("train_seconds", 0.0))
    else:
        log(f"training generator '{name}' on {dataset_fp['dataset']} (cached after this run)")
        t0 = time.perf_counter()
        train_fn = getattr(gen, "train_model", None) or train_gan
        train_fn(gen, splits.train, key, device=device, on_step=on_step)
        seconds = time.perf_counter() - t0
        gen.cpu()
        artifacts.save_artifact(
            "generators", key, gen.state_dict(), {"name": name, "train_seconds": seconds}
        )
        artifacts.drop_checkpoint("generators", key)
    gen.to(device).eval().requires_grad_(False)
    info = {"name": name, "key": key, "config": as_dict(cfg), "train_seconds": round(seconds, 2)}
    return gen, info


def _check_finite(step: int, **losses: torch.Tensor) -> None:
    for k, v in losses.items():
        if not math.isfinite(float(v)) or abs(float(v)) > 1e6:
            raise TrainingDiverged(
                f"generator training diverged at step {step}: {k} = {float(v):.4g}. "
                "Nothing was cached. Lower the learning rate (--set lr_g=..., lr_d=...) "
                "or change the seed."
            )


def _gradient_penalty(
    disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    # WGAN-GP (Gulrajani et al. 2017, eq. 3): (||grad D(x_hat)||_2 - 1)^2 on random interpolates.
    eps = torch.rand(len(real), 1, 1, 1, generator=g).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_gan(
    gen: Generator,
    data: torch.Tensor,
    key: str,
    device: str | torch.device = "cpu",
    on_step: StepHook | None = None,
) -> None:
    """Train ``gen`` (and a fresh discriminator) on ``data`` with its config's loss."""
    cfg = gen.cfg
    disc = gen.make_discriminator()
    gen.to(device).train()
    disc.to(device).train()
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    rng = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    start = 0
    state = artifacts.load_checkpoint("generators", key)
    if state is not None:
        gen.load_state_dict(state["gen"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        log(f"resuming generator training at step {start}/{cfg.steps}")
    data = data.to(device)
    n = len(data)
    pbar = bar(cfg.steps, f"train {gen.name}", initial=start)
    for step in range(start, cfg.steps):
        sigma = cfg.instance_noise * max(0.0, 1.0 - step / max(1, cfg.steps - 1))
        for _ in range(cfg.n_critic):
            real = data[torch.randint(n, (cfg.batch_size,), generator=rng).to(device)]
            z = gen.sample_z(cfg.batch_size, rng)
            with torch.no_grad():
                fake = gen.synthesize(z)
            if (
                sigma > 0
            ):  # instance noise on both inputs of D (Sønderby et al.; Creswell's GAN+noise)
                real = real + sigma * torch.randn(real.shape, generator=rng).to(device)
                fake = fake + sigma * torch.randn(fake.shape, generator=rng).to(device)
            d_real, d_fake = disc(real), disc(fake)
            if cfg.loss == "wgan-gp":
                loss_d = d_fake.mean() - d_real.mean()
                loss_d = loss_d + cfg.gp_weight * _gradient_penalty(disc, real, fake, rng)
            else:
                loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        z = gen.sample_z(cfg.batch_size, rng)
        fake = gen.synthesize(z)
        if sigma > 0:
            fake = fake + sigma * torch.randn(fake.shape, generator=rng).to(device)
        d_fake = disc(fake)
        loss_g = -d_fake.mean() if cfg.loss == "wgan-gp" else F.softplus(-d_fake).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        _check_finite(step, loss_d=loss_d.detach(), loss_g=loss_g.detach())
        pbar.update(1)
        if step % 50 == 0:
            pbar.set_postfix(loss_d=f"{float(loss_d):.3f}", loss_g=f"{float(loss_g):.3f}")
        done = step + 1
        if done % cfg.ckpt_every == 0 and done < cfg.steps:
            artifacts.save_checkpoint(
                "generators",
                key,
                {
                    "gen": gen.state_dict(),
                    "disc": disc.state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "rng": rng.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "step": done,
                },
            )
        if on_step is not None:
            on_step(done)
    pbar.close()
    gen.eval()
