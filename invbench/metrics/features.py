"""Feature networks for the distribution metrics (FID family, KID).

The standard one is Inception-v3 with the 2015-12-05 TF weights (pool3, 2048-d), through
torch-fidelity's port, when its weight file is found offline (``invbench.metrics.weights``).
When it is not, invbench trains its own *domain* network on the dataset's train split: a
LeNet-5-style classifier of the class labels (LeCun et al. 1998), trained deterministically,
cached as an artifact, its test accuracy logged and recorded. Its numbers are not Inception
FIDs, and the metric's flavor says so ("lenet-digits/..."). Datasets without labels are refused
with a message naming the Inception weight file to install: an untrained or self-supervised
stand-in would be a number of unknown meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from invbench import artifacts
from invbench.data import Splits
from invbench.errors import DataError, UsageError
from invbench.metrics.weights import INCEPTION, find_weights, load_state, missing_message
from invbench.progress import log

DOMAIN_VERSION = 1  # bump when the domain network's code changes its weights


class FeatureNet(Protocol):
    """What the distribution metrics need: features of images in [-1, 1] and a flavor."""

    flavor: str  # names the network in metric flavors, e.g. "lenet-digits", "inception-v3"
    key: str  # content identity for the reference-statistics cache

    def features(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class DomainNetConfig:
    """Training of the domain feature network; fixed by the suite (part of the cache key)."""

    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0


class DomainNet(nn.Module):
    """LeNet-5 layout: conv5-pool-conv5-pool-fc120-fc84-fc(classes), ReLU, max pooling.

    ``features`` is the penultimate layer (fc84) before its ReLU, so the covariance used by FID
    is not made singular by dead units; ``logits`` continues through ReLU and the last layer.
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(5),  # any resolution >= 16 ends at the classic 16 x 5 x 5
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
        )
        self.head = nn.Linear(84, num_classes)
        self.flavor = "lenet"
        self.key = ""
        self.test_accuracy = float("nan")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        dev = next(self.parameters()).device
        with torch.no_grad():
            return self.body(x.to(dev, torch.float32)).float()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.body(x)))

    def predict(self, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """The top-1 class of each image in ``x`` (in [-1, 1]), ``batch`` at a time, on the CPU."""
        dev = next(self.parameters()).device
        with torch.no_grad():
            parts = [
                self.logits(x[i : i + batch].to(dev, torch.float32)).argmax(1).cpu()
                for i in range(0, len(x), batch)
            ]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _accuracy(net: DomainNet, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net.predict(x) == y.cpu()).sum()) / max(1, len(x))


def _train(net: DomainNet, splits: Splits, cfg: DomainNetConfig, device: torch.device) -> None:
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    x, y = splits.train_images(), splits.train_labels  # x: streamed when it does not fit
    assert y is not None
    net.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = F.cross_entropy(net.logits(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()


def domain_network(
    splits: Splits,
    dataset_fp: dict[str, Any],
    device: str | torch.device = "cpu",
    cfg: DomainNetConfig | None = None,
) -> DomainNet:
    """The dataset's own feature network: trained once on the train split, then cached."""
    cfg = cfg or DomainNetConfig()
    name = str(dataset_fp.get("dataset", "data"))
    if splits.train_labels is None or not splits.num_classes:
        raise DataError(
            f"dataset '{name}' has no class labels, so invbench cannot train its own feature "
            f"network for FID/KID. {missing_message(INCEPTION)}"
        )
    device = torch.device(device)
    payload = {
        "net": "lenet",
        "config": artifacts.identity(cfg),
        "data": dataset_fp,
        "shape": [splits.channels, splits.num_classes],
        "v": DOMAIN_VERSION,
    }
    net = DomainNet(splits.channels, splits.num_classes)

    def build(key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        log(f"training the '{name}' feature network for FID/KID (LeNet, cached after this run)")
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
            torch.manual_seed(cfg.seed)
            trained = DomainNet(splits.channels, splits.num_classes).to(device)
            _train(trained, splits, cfg, device)
        acc = float("nan")
        if splits.test_labels is not None:
            acc = _accuracy(trained, splits.test, splits.test_labels)
        state = {k: v.cpu() for k, v in trained.state_dict().items()}
        return state, {"test_accuracy": acc, "dataset": name}

    art = artifacts.cached("featurenets", payload, build)
    net.load_state_dict(art.tensors)
    net.test_accuracy = float(art.meta["test_accuracy"])
    key = art.key
    net.to(device).eval().requires_grad_(False)
    # A non-default training recipe gives different numbers, so it must show in the flavor.
    default = DomainNetConfig()
    recipe = (
        "" if cfg == default else f"-e{cfg.epochs}" if cfg.epochs != default.epochs else "-custom"
    )
    net.flavor = f"lenet-{name}{recipe}"
    net.key = key
    log(f"feature network {net.flavor}: test accuracy {net.test_accuracy:.4f}")
    return net


class InceptionNet(nn.Module):
    """Inception-v3 pool3 features (2048-d) through torch-fidelity's port of the TF graph."""

    def __init__(self, path: str, device: torch.device) -> None:
        super().__init__()
        import types
        from unittest import mock

        import torch_fidelity.feature_extractor_inceptionv3 as fe

        state = load_state(INCEPTION, Path(path))  # full SHA-256, tensors only
        # torch-fidelity's constructor reads its weight file with torch.load(weights_only=False),
        # which would run any code a forged file carries. Its architecture and forward pass (the
        # TF-exact resize) are what we want, so it is built with its module-level ``torch``
        # answered by a proxy whose ``load`` returns the state dict read above: no file of ours
        # reaches that unpickler.
        proxy = types.ModuleType("torch")
        proxy.__getattr__ = lambda name: getattr(torch, name)  # type: ignore[method-assign]
        proxy.load = lambda *a, **k: state  # type: ignore[attr-defined]
        with mock.patch.object(fe, "torch", proxy):
            net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], "<verified>")
        self.net = net.to(device)
        self.flavor = "inception-v3"
        self.key = f"inception-2015-12-05-{INCEPTION.sha256[:8]}"
        self.test_accuracy = float("nan")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # The TF protocol: uint8 RGB in, resized to 299 inside; grey images are repeated to RGB.
        dev = next(self.net.parameters()).device
        u8 = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if u8.shape[1] == 1:
            u8 = u8.expand(-1, 3, -1, -1)
        with torch.no_grad():
            (feats,) = self.net(u8.to(dev))
        return feats.float()


def feature_network(
    splits: Splits,
    dataset_fp: dict[str, Any],
    kind: str = "auto",
    weights_dir: str | None = None,
    device: str | torch.device = "cpu",
    domain_cfg: DomainNetConfig | None = None,
) -> FeatureNet:
    """``inception`` (must be found), ``domain`` (trained here), or ``auto``: the first available."""
    if kind not in ("auto", "inception", "domain"):
        raise UsageError(f"feature_net must be auto, inception or domain, got '{kind}'.")
    device = torch.device(device)
    if kind in ("auto", "inception"):
        path = find_weights(INCEPTION, weights_dir)
        if path is not None:
            return InceptionNet(str(path), device)
        if kind == "inception":
            raise DataError(missing_message(INCEPTION, weights_dir))
        log(
            f"Inception-v3 unavailable, FID/KID use the dataset's own network: "
            f"{missing_message(INCEPTION, weights_dir)}"
        )
    return domain_network(splits, dataset_fp, device, domain_cfg)


def check_feature_weights(kind: str, weights_dir: str | None = None) -> None:
    """Before any work: a wrong Inception / AlexNet file (full SHA-256) or a missing Inception
    file that ``feature_net=inception`` demands stops the run now, not after training."""
    from invbench.metrics.weights import ALEXNET

    found = find_weights(INCEPTION, weights_dir) if kind in ("auto", "inception") else None
    if kind == "inception" and found is None:
        raise DataError(missing_message(INCEPTION, weights_dir))
    find_weights(ALEXNET, weights_dir)  # LPIPS: absent is fine (reported unavailable), wrong is not


def check_feature_network(
    kind: str, weights_dir: str | None, has_labels: bool, dataset: str
) -> None:
    """Before any training, for a run whose metrics need a feature network (FID, KID): the one
    ``feature_network(kind)`` will use exists, or can be trained here (the dataset's LeNet needs
    class labels). FFHQ without Inception used to train its models for hours and only then fail;
    now it stops at once, naming the file and the explicit way out."""
    if kind == "inception" or has_labels:
        return  # checked by check_feature_weights / trained from the labels
    if kind == "auto" and find_weights(INCEPTION, weights_dir) is not None:
        return
    raise UsageError(
        f"FID / KID need a feature network: dataset '{dataset}' has no class labels to train "
        f"invbench's own on, and {missing_message(INCEPTION, weights_dir)} Or leave the "
        "distribution metrics out with --set eval.tracks=false."
    )
