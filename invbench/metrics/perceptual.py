"""Pretrained perceptual networks built from verified files: LPIPS (Zhang et al. 2018, AlexNet
trunk, v0.1) and VGG-16 (torchvision, ImageNet).

The ``lpips`` package supplies the LPIPS architecture; it is built with ``pnet_rand=True`` and
``pretrained=False`` so that it neither downloads nor unpickles anything, and both of its weight
files are read by ``invbench.metrics.weights.load_state`` (full SHA-256, tensors only): the
AlexNet trunk (torchvision's checkpoint, found offline) and the package's own v0.1 linear layers.
Without the trunk LPIPS is *unavailable* — the caller reports null and the message — never
computed on a randomly initialised trunk. The metric and the perceptual losses share this one
loader and one flavor name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from invbench.errors import DataError
from invbench.metrics.weights import (
    ALEXNET,
    LPIPS_ALEX_LINEAR,
    LPIPS_VGG_LINEAR,
    VGG16,
    WeightFile,
    find_weights,
    load_state,
    missing_message,
)

LPIPS_FLAVOR = "lpips-alex-v0.1"


class Unavailable(Exception):
    """A metric cannot be computed here; the message names the missing file and where it goes."""


def lpips_linear_path(net: str = "alex") -> Path | None:
    """The v0.1 calibration layers of ``net`` (alex, vgg) inside the installed ``lpips``."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / f"{net}.pth"
    return path if path.is_file() else None


#: LPIPS trunk -> (its torchvision weight file, the lpips package's linear layers).
LPIPS_NETS = {"alex": (ALEXNET, LPIPS_ALEX_LINEAR), "vgg": (VGG16, LPIPS_VGG_LINEAR)}


def build_lpips_model(backbone: Path, backbone_spec: WeightFile | None = None, net: str = "alex"):
    """``lpips.LPIPS`` (v0.1; AlexNet, or VGG-16 with ``net="vgg"``) with its trunk and linear
    layers from verified files."""
    import lpips

    trunk_spec, lin_spec = LPIPS_NETS[net]
    lin_path = lpips_linear_path(net)
    if lin_path is None:
        raise DataError(f"the lpips package ships no weights/v0.1/{net}.pth; reinstall lpips.")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation notice
        model = lpips.LPIPS(pretrained=False, net=net, version="0.1", pnet_rand=True, verbose=False)
    state = load_state(backbone_spec or trunk_spec, backbone)
    slices = {}  # slice1..slice5 hold torchvision's features[i] under the name "i"
    for name, module in model.net.named_children():
        for idx, _ in module.named_children():
            slices[idx] = f"{name}.{idx}"
    trunk = {}
    for key, value in state.items():
        part, idx, leaf = key.split(".", 2) if key.count(".") >= 2 else (key, "", "")
        if part == "features" and idx in slices:
            trunk[f"{slices[idx]}.{leaf}"] = value
    missing = set(model.net.state_dict()) - set(trunk)
    if missing:
        raise DataError(f"{backbone}: not a {net} state dict (missing {sorted(missing)})")
    model.net.load_state_dict(trunk)
    lins = load_state(lin_spec, lin_path)
    own = {k for k in model.state_dict() if k.startswith("lin") and not k.startswith("lins.")}
    if set(lins) != own:  # lin0..lin4 (``lins.i`` are the same modules, listed twice)
        raise DataError(f"{lin_path}: not the LPIPS v0.1 {net} linear layers.")
    model.load_state_dict(lins, strict=False)
    return model.eval().requires_grad_(False)


class LPIPS:
    """The LPIPS metric: per-image distances of images in [-1, 1]."""

    def __init__(self, backbone: Path, device: torch.device, spec: WeightFile = ALEXNET) -> None:
        self.model = build_lpips_model(backbone, spec).to(device)
        self.device = device
        self.flavor = LPIPS_FLAVOR

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS distance (float64 on CPU) of images in [-1, 1]."""
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        with torch.no_grad():
            d = self.model(x.to(self.device).float(), y.to(self.device).float())
        return d.flatten().double().cpu()


def load_lpips(
    device: str | torch.device = "cpu", weights_dir: str | None = None, spec: WeightFile = ALEXNET
) -> LPIPS:
    """The LPIPS metric, or ``Unavailable`` naming the missing AlexNet file."""
    path = find_weights(spec, weights_dir)
    if path is None:
        raise Unavailable("lpips unavailable: " + missing_message(spec, weights_dir))
    return LPIPS(path, torch.device(device), spec)


def vgg16_features(path: Path, upto: int, spec: WeightFile = VGG16) -> nn.Sequential:
    """torchvision's VGG-16 ``features[:upto]`` with the verified ImageNet weights, frozen."""
    from torchvision.models import vgg16

    net = vgg16()
    net.load_state_dict(load_state(spec, path))
    return net.features[:upto].eval().requires_grad_(False)
