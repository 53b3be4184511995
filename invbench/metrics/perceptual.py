"""LPIPS (Zhang et al. 2018, AlexNet trunk, v0.1) through the ``lpips`` package.

The linear calibration layers ship inside ``lpips``; the AlexNet trunk is torchvision's
ImageNet checkpoint, which the package would download. Offline, ``load_lpips`` finds that file
(``invbench.metrics.weights``: user directory, $INVBENCH_WEIGHTS, the torch hub cache), checks
its SHA-256, and loads it into the package's model. Without it LPIPS is *unavailable* — the
caller reports null and the message — never computed on a randomly initialised trunk.
Grey images are repeated to three channels; inputs are in [-1, 1] as ``lpips`` expects.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from invbench.metrics.weights import ALEXNET, WeightFile, find_weights, missing_message


class Unavailable(Exception):
    """A metric cannot be computed here; the message names the missing file and where it goes."""


class LPIPS:
    def __init__(self, backbone: Path, device: torch.device) -> None:
        import lpips

        # pnet_rand builds the trunk without downloading; the real trunk is loaded just below.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation notice
            model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
        state = torch.load(backbone, map_location="cpu", weights_only=True)
        slices = {}
        for name, module in model.net.named_children():  # slice1..slice5 hold features[i]
            for idx, _ in module.named_children():
                slices[idx] = f"{name}.{idx}"
        trunk = {}
        for key, value in state.items():
            part, idx, leaf = key.split(".", 2) if key.count(".") >= 2 else (key, "", "")
            if part == "features" and idx in slices:
                trunk[f"{slices[idx]}.{leaf}"] = value
        missing = set(model.net.state_dict()) - set(trunk)
        if missing:
            raise ValueError(f"{backbone}: not an AlexNet state dict (missing {sorted(missing)})")
        model.net.load_state_dict(trunk)
        self.model = model.to(device).eval().requires_grad_(False)
        self.device = device
        self.flavor = "alex-v0.1"

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
    return LPIPS(path, torch.device(device))
