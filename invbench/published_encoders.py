"""The encoders of pSp, e4e and ReStyle, and ArcFace's IR-SE backbone, in their published layout.

pSp (Richardson et al. 2021, eladrich/pixel2style2pixel), e4e (Tov et al. 2021,
omertov/encoder4editing) and ReStyle (Alaluf et al. 2021, yuval-alaluf/restyle-encoder) publish
checkpoints ``torch.save({'state_dict', 'opts', 'latent_avg'})``: ``state_dict`` holds
``encoder.*`` (the modules below) and ``decoder.*`` (rosinality's StyleGAN2 ``Generator``),
``opts`` the training options as a dict, ``latent_avg`` the mean w repeated per style input.
The modules here are written anew with the authors' module names, so those state dicts load
with ``strict=True``; their widths are read from the state dict's shapes.

Shared pieces, as in the authors' ``helpers.py`` (from TreB1eN's InsightFace_Pytorch):
an input layer (3x3 conv, BatchNorm, PReLU), a body of "IR" bottleneck units (BN, 3x3 conv,
PReLU, strided 3x3 conv, BN, optional squeeze-excitation; the shortcut a 1x1 conv + BN when the
width changes, else a strided identity), and ``GradualStyleBlock`` (stride-2 3x3 convs with
LeakyReLU(0.01) down to 1x1, then an equalised linear layer) mapping a feature map to one w.

Encoders (``opts['encoder_type']``):
- ``GradualStyleEncoder`` (pSp §3; ReStyle's with a 6-channel input): a feature pyramid over
  the body's outputs after units 6, 20 and 23 (c1, c2, c3); styles 0-2 read c3, 3-6 read
  p2 = up(c3) + lat1(c2), 7+ read p1 = up(p2) + lat2(c1) (bilinear, align_corners=True).
- ``Encoder4Editing`` (e4e §3.3): the same pyramid; w = styles[0](c3) for every input and
  deltas styles[i](features) added to w[:, i] for i >= 1 (the inference stage: all deltas).
- ``BackboneEncoderUsingLastLayerIntoW`` (pSp's W encoder; e4e's ``SingleStyleCodeEncoder``):
  global average pool of the body, one equalised linear layer: a single w.
- ``BackboneEncoderUsingLastLayerIntoWPlus``: BN, 7x7 pooling, linear, one linear to n_styles w.
- ``BackboneEncoder`` / ``ProgressiveBackboneEncoder`` (ReStyle §4.2): every style block reads
  the body's last map; the progressive one adds deltas to styles[0]'s w as e4e does.
- ``ResNet*`` variants: a torchvision ResNet-34 body after a 7x7 stride-2 stem (PReLU); its FPN
  taps are units 6, 12, 15.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from invbench.errors import DataError, UsageError
from invbench.generators.stylegan2 import EqualLinear
from invbench.metrics.weights import load_tensors_only

COARSE, MIDDLE = 3, 7  # pSp's style-group boundaries (coarse 0-2, middle 3-6, fine 7+)


# -- the IR-SE body ----------------------------------------------------------------------------------
class SEModule(nn.Module):
    """Squeeze-excitation (Hu et al. 2018) with 1x1 convs, as TreB1eN's."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=False)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIR(nn.Module):
    """One IR unit: BN, conv3x3, PReLU, conv3x3 (stride), BN[, SE] plus the shortcut."""

    def __init__(self, in_ch: int, depth: int, stride: int, se_reduced: int | None) -> None:
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers = [
            nn.BatchNorm2d(in_ch),
            nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se_reduced is not None:
            layers.append(SEModule(depth, se_reduced))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def input_layer(in_ch: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width)
    )


def ir_body(state: dict[str, torch.Tensor], prefix: str = "body.") -> nn.Sequential:
    """The IR(-SE) units found under ``prefix`` in ``state``; a stage starts (stride 2) at the
    first unit and wherever the width changes, as in ``get_blocks`` (IR-50/100/152)."""
    n = 1 + max(
        (int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))),
        default=-1,
    )
    if n == 0:
        raise DataError(f"no IR units under '{prefix}' in the state dict.")
    units, prev = [], None
    for i in range(n):
        w = state[f"{prefix}{i}.res_layer.1.weight"]
        depth, in_ch = int(w.shape[0]), int(w.shape[1])
        fc1 = state.get(f"{prefix}{i}.res_layer.5.fc1.weight")
        stride = 2 if depth != prev else 1
        units.append(BottleneckIR(in_ch, depth, stride, None if fc1 is None else int(fc1.shape[0])))
        prev = depth
    return nn.Sequential(*units)


def resnet34_body() -> nn.Sequential:
    """torchvision's ResNet-34 layer1-4 blocks in one Sequential (ReStyle's ResNet encoders)."""
    from torchvision.models import resnet34

    net = resnet34(weights=None)
    return nn.Sequential(
        *[b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    )


class GradualStyleBlock(nn.Module):
    """Stride-2 3x3 convs with LeakyReLU(0.01) down to 1x1, then an equalised linear layer."""

    def __init__(self, in_c: int, out_c: int, n_convs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c)
        self.out_c = out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise UsageError(
                f"a style block ended at {tuple(x.shape[-2:])}, not 1x1: the encoder input has "
                "the wrong size for this checkpoint (pSp, e4e and ReStyle take 256x256)."
            )
        return self.linear(x.flatten(1))


def _style_blocks(state: dict[str, torch.Tensor], prefix: str = "styles.") -> nn.ModuleList:
    idx = sorted(
        {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    )
    blocks = nn.ModuleList()
    for i in idx:
        convs = [
            k for k in state if re.fullmatch(rf"{re.escape(prefix)}{i}\.convs\.\d+\.weight", k)
        ]
        first = state[f"{prefix}{i}.convs.0.weight"]
        blocks.append(GradualStyleBlock(int(first.shape[1]), int(first.shape[0]), len(convs)))
    return blocks


def _codes(outs: list[torch.Tensor], progressive: bool) -> torch.Tensor:
    """One w per style input (pSp), or e4e's progressive form: the first block's w for every
    input plus the other blocks' outputs as offsets, w_i = w_0 + delta_i (the inference stage
    of e4e's ``ProgressiveStage``, every delta on)."""
    if not progressive:
        return torch.stack(outs, 1)
    return torch.stack([outs[0]] + [outs[0] + d for d in outs[1:]], 1)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


# -- the encoders -----------------------------------------------------------------------------------
class _Trunk(nn.Module):
    """The stem and body, IR-SE (``input_layer``) or ResNet-34 (``conv1``/``bn1``/``relu``);
    ``taps`` are the units whose outputs feed the pyramid (c1, c2, c3)."""

    def _build_trunk(self, state: dict[str, torch.Tensor], resnet: bool) -> None:
        self.resnet = resnet
        if resnet:
            w = state["conv1.weight"]
            self.conv1 = nn.Conv2d(int(w.shape[1]), int(w.shape[0]), 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(int(w.shape[0]))
            self.relu = nn.PReLU(int(w.shape[0]))
            self.body = resnet34_body()
            self.taps = (6, 12, 15)
        else:
            w = state["input_layer.0.weight"]
            self.input_layer = input_layer(int(w.shape[1]), int(w.shape[0]))
            self.body = ir_body(state)
            self.taps = (6, 20, 23)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.resnet:
            return self.relu(self.bn1(self.conv1(x)))
        return self.input_layer(x)

    def pyramid_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        feats = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats[i] = x
        if len(feats) != 3:
            raise DataError(
                f"the encoder body has {len(self.body)} units; the pyramid needs {self.taps}."
            )
        c1, c2, c3 = (feats[t] for t in self.taps)
        return c1, c2, c3


class BackboneEncoder(_Trunk):
    """ReStyle's simpler encoder: every style block reads the body's last (16x16) map;
    ``progressive`` = its e4e variant (deltas on styles[0]'s w)."""

    def __init__(
        self, state: dict[str, torch.Tensor], resnet: bool = False, progressive: bool = False
    ) -> None:
        super().__init__()
        self._build_trunk(state, resnet)
        self.styles = _style_blocks(state)
        self.progressive = progressive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(x))
        return _codes([s(x) for s in self.styles], self.progressive)


class GradualStyleEncoder(BackboneEncoder):
    """pSp's FPN encoder (and ReStyle's, 6-channel input); ``progressive`` = e4e's forward."""

    def __init__(
        self, state: dict[str, torch.Tensor], resnet: bool = False, progressive: bool = False
    ) -> None:
        super().__init__(state, resnet, progressive)
        w1, w2 = state["latlayer1.weight"], state["latlayer2.weight"]
        self.latlayer1 = nn.Conv2d(int(w1.shape[1]), int(w1.shape[0]), 1)
        self.latlayer2 = nn.Conv2d(int(w2.shape[1]), int(w2.shape[0]), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.pyramid_inputs(x)
        p2 = p1 = None
        feats = []
        for i in range(len(self.styles)):
            if i >= COARSE and p2 is None:
                p2 = _upsample_add(c3, self.latlayer1(c2))
            if i >= MIDDLE and p1 is None:
                p1 = _upsample_add(p2, self.latlayer2(c1))
            feats.append(c3 if i < COARSE else p2 if i < MIDDLE else p1)
        return _codes([s(f) for s, f in zip(self.styles, feats, strict=True)], self.progressive)


class BackboneIntoW(_Trunk):
    """pSp's ``BackboneEncoderUsingLastLayerIntoW`` (e4e's ``SingleStyleCodeEncoder``): one w."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._build_trunk(state, resnet=False)
        w = state["linear.weight"]
        self.linear = EqualLinear(int(w.shape[1]), int(w.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.body(self.stem(x)), 1)
        return self.linear(x.flatten(1))


class BackboneIntoWPlus(_Trunk):
    """pSp's ``BackboneEncoderUsingLastLayerIntoWPlus``: BN, 7x7 pool, linear, n_styles w."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._build_trunk(state, resnet=False)
        bn, lin, out = (
            state["output_layer_2.0.weight"],
            state["output_layer_2.3.weight"],
            state["linear.weight"],
        )
        c = int(bn.shape[0])
        self.output_layer_2 = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.AdaptiveAvgPool2d((7, 7)),
            nn.Flatten(),
            nn.Linear(int(lin.shape[1]), int(lin.shape[0])),
        )
        self.linear = EqualLinear(int(out.shape[1]), int(out.shape[0]))
        self.w_dim = int(lin.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(self.output_layer_2(self.body(self.stem(x))))
        return x.view(len(x), -1, self.w_dim)


#: encoder_type -> (family, builder). The family is the method that runs it.
ENCODERS: dict[str, tuple[str, Any]] = {
    "GradualStyleEncoder": ("psp", lambda s: GradualStyleEncoder(s)),
    "BackboneEncoderUsingLastLayerIntoW": ("psp", BackboneIntoW),
    "BackboneEncoderUsingLastLayerIntoWPlus": ("psp", BackboneIntoWPlus),
    "Encoder4Editing": ("e4e", lambda s: GradualStyleEncoder(s, progressive=True)),
    "SingleStyleCodeEncoder": ("e4e", BackboneIntoW),
    "BackboneEncoder": ("restyle", lambda s: BackboneEncoder(s)),
    "ResNetBackboneEncoder": ("restyle", lambda s: BackboneEncoder(s, resnet=True)),
    "ProgressiveBackboneEncoder": ("restyle", lambda s: BackboneEncoder(s, progressive=True)),
    "ResNetProgressiveBackboneEncoder": (
        "restyle",
        lambda s: BackboneEncoder(s, resnet=True, progressive=True),
    ),
    "ResNetGradualStyleEncoder": ("restyle", lambda s: GradualStyleEncoder(s, resnet=True)),
}


# -- checkpoints --------------------------------------------------------------------------------------
@dataclass
class PublishedCheckpoint:
    """What a pSp / e4e / ReStyle checkpoint holds, split into its parts."""

    path: Path
    opts: dict[str, Any]
    encoder_type: str
    family: str  # psp, e4e or restyle
    encoder: dict[str, torch.Tensor]
    decoder: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None

    @property
    def start_from_latent_avg(self) -> bool:
        return bool(self.opts.get("start_from_latent_avg", False))


def _sub(state: dict[str, Any], name: str) -> dict[str, torch.Tensor]:
    n = len(name) + 1
    return {k[n:]: v for k, v in state.items() if k.startswith(name + ".")}


def read_checkpoint(path: Path) -> PublishedCheckpoint:
    """Read with ``torch.load(weights_only=True)``: tensors, plain containers and an
    ``argparse.Namespace`` (some forks store ``opts`` as one); anything else is refused."""
    path = Path(path)
    obj = load_tensors_only(path, str(path), "encoder checkpoints", (argparse.Namespace,))
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("state_dict"), dict)
        or "opts" not in obj
    ):
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise DataError(
            f"{path}: not a pSp / e4e / ReStyle checkpoint: expected a dict with 'state_dict' "
            f"(encoder.* and decoder.* weights) and 'opts', found {keys}."
        )
    opts = obj["opts"]
    opts = vars(opts) if isinstance(opts, argparse.Namespace) else opts
    if not isinstance(opts, dict):
        raise DataError(f"{path}: 'opts' is a {type(opts).__name__}, not the options dict.")
    state = obj["state_dict"]
    encoder, decoder = _sub(state, "encoder"), _sub(state, "decoder")
    if not encoder or not decoder:
        raise DataError(f"{path}: the state dict lacks encoder.* or decoder.* weights.")
    etype = str(opts.get("encoder_type", ""))
    if etype not in ENCODERS:
        raise DataError(
            f"{path}: encoder_type '{etype}' is not one invbench implements "
            f"({', '.join(ENCODERS)})."
        )
    label_nc = int(opts.get("label_nc", 0) or 0)
    if label_nc:
        raise UsageError(
            f"{path} maps {label_nc}-channel label maps to faces (pSp's conditional synthesis), "
            "not images to latents; invbench evaluates inversion checkpoints (e.g. ffhq_encode)."
        )
    family = ENCODERS[etype][0]
    in_ch = int(
        next(v for k, v in encoder.items() if k in ("input_layer.0.weight", "conv1.weight")).shape[
            1
        ]
    )
    if in_ch == 6:  # image + current reconstruction: a ReStyle encoder (whatever its type)
        family = "restyle"
    elif in_ch != 3:
        raise UsageError(
            f"{path}: the encoder takes {in_ch} input channels; only RGB images are inverted."
        )
    if str(opts.get("dataset_type", "")).startswith("cars"):
        raise UsageError(
            f"{path} is a cars model (512x384 images padded to 512x512, cropped at inference); "
            "invbench's datasets are square and it does not reproduce that crop."
        )
    avg = obj.get("latent_avg")
    return PublishedCheckpoint(
        path, opts, etype, family, encoder, decoder, avg if isinstance(avg, torch.Tensor) else None
    )


def code_shape(enc: nn.Module) -> tuple[int, ...]:
    """The shape of one image's code: (w_dim,) for a W encoder, else (n_styles, w_dim)."""
    if isinstance(enc, BackboneIntoW):
        return (int(enc.linear.weight.shape[0]),)
    if isinstance(enc, BackboneIntoWPlus):
        return (int(enc.linear.weight.shape[0]) // enc.w_dim, enc.w_dim)
    return (len(enc.styles), int(enc.styles[0].out_c))  # type: ignore[attr-defined, index]


#: IR-SE-50's stages as the authors' ``get_blocks(50)``: (width, units); the first unit of each
#: stage halves the resolution. Squeeze-excitation reduces by 16.
IR_SE50 = ((64, 3), (128, 4), (256, 14), (512, 3))


def paper_shapes(
    encoder_type: str, in_channels: int = 3, n_styles: int = 18, w_dim: int = 512
) -> dict[str, torch.Tensor]:
    """The shapes (meta tensors) the builders above read, for an encoder of the published
    configuration built afresh: IR-SE-50 on 256x256 inputs (pSp §3, e4e §3.3, ReStyle §4.2),
    style blocks from the 16x16 map (c3; coarse, or every block of the backbone encoders),
    the 32x32 (p2; middle) and 64x64 (p1; fine) maps, pyramid laterals from widths 256 and 128.
    ``in_channels`` 6 is ReStyle's image ++ reconstruction."""
    if encoder_type not in ENCODERS or encoder_type.startswith("ResNet"):
        known = ", ".join(k for k in ENCODERS if not k.startswith("ResNet"))
        raise UsageError(f"encoder type '{encoder_type}' is not one built afresh here ({known}).")

    def t(*shape: int) -> torch.Tensor:
        return torch.empty(shape, device="meta")

    out = {"input_layer.0.weight": t(IR_SE50[0][0], in_channels, 3, 3)}
    i, prev = 0, IR_SE50[0][0]
    for depth, units in IR_SE50:
        for _ in range(units):
            out[f"body.{i}.res_layer.1.weight"] = t(depth, prev, 3, 3)
            out[f"body.{i}.res_layer.5.fc1.weight"] = t(depth // 16, depth, 1, 1)
            i, prev = i + 1, depth
    if encoder_type.endswith("IntoWPlus"):  # BN, 7x7 pool, linear, then n_styles codes
        out["output_layer_2.0.weight"] = t(prev)
        out["output_layer_2.3.weight"] = t(w_dim, prev * 7 * 7)
        out["linear.weight"] = t(w_dim * n_styles, w_dim)
        return out
    if encoder_type in ("BackboneEncoderUsingLastLayerIntoW", "SingleStyleCodeEncoder"):
        out["linear.weight"] = t(w_dim, prev)  # global pool, one code
        return out
    pyramid = encoder_type in ("GradualStyleEncoder", "Encoder4Editing")
    for s in range(n_styles):
        side = 16 if not pyramid or s < COARSE else 32 if s < MIDDLE else 64
        for j in range(int(math.log2(side))):
            out[f"styles.{s}.convs.{2 * j}.weight"] = t(w_dim, prev if j == 0 else w_dim, 3, 3)
    if pyramid:
        out["latlayer1.weight"] = t(prev, IR_SE50[2][0], 1, 1)
        out["latlayer2.weight"] = t(prev, IR_SE50[1][0], 1, 1)
    return out


def build_fresh(
    encoder_type: str, in_channels: int = 3, n_styles: int = 18, w_dim: int = 512
) -> nn.Module:
    """A new, trainable encoder of the published architecture (PyTorch's default init; pSp
    then loads the IR-SE-50 face-recognition weights into its body, ``load_ir_se50``)."""
    return ENCODERS[encoder_type][1](paper_shapes(encoder_type, in_channels, n_styles, w_dim))


def load_ir_se50(enc: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """pSp's initialisation (``psp.py``, ``load_weights``): the input layer and body from
    ArcFace's IR-SE50 (``model_ir_se50.pth``); an input layer wider than 3 channels (ReStyle)
    takes those weights on its first 3 channels and keeps the rest (ReStyle's ``psp.py``).
    Returns the keys loaded."""
    own = enc.state_dict()
    take = {}
    for k, v in state.items():
        if not (k.startswith("input_layer.") or k.startswith("body.")) or k not in own:
            continue
        if k == "input_layer.0.weight" and own[k].shape[1] > v.shape[1]:
            v = torch.cat([v, own[k][:, v.shape[1] :]], 1)
        if own[k].shape != v.shape:
            raise DataError(
                f"model_ir_se50.pth: {k} has shape {tuple(v.shape)}, the encoder "
                f"{tuple(own[k].shape)}; not the IR-SE50 pSp initialises from."
            )
        take[k] = v
    enc.load_state_dict(take, strict=False)
    return sorted(take)


def build_encoder(ckpt: PublishedCheckpoint) -> nn.Module:
    """The encoder of ``ckpt`` with its weights (``strict``), in eval mode and frozen.

    Built on the meta device and given the checkpoint's tensors (``assign``): a 250M-parameter
    encoder is not first initialised at random and then overwritten.
    """
    with torch.device("meta"):
        enc = ENCODERS[ckpt.encoder_type][1](ckpt.encoder)
    try:
        enc.load_state_dict(ckpt.encoder, strict=True, assign=True)
    except RuntimeError as e:
        raise DataError(
            f"{ckpt.path}: encoder weights do not match '{ckpt.encoder_type}': {e}"
        ) from None
    return enc.eval().requires_grad_(False)


# -- ArcFace (IR-SE50) for identity similarity ----------------------------------------------------------
class ArcFaceBackbone(nn.Module):
    """TreB1eN's ``Backbone(112, 50, 'ir_se')`` (``model_ir_se50.pth``), the network of pSp's and
    e4e's identity loss: IR-SE50 body, BN, dropout, 7x7x512 -> 512 linear, BN, L2-normalised
    output."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        w = state["input_layer.0.weight"]
        self.input_layer = input_layer(int(w.shape[1]), int(w.shape[0]))
        self.body = ir_body(state)
        c, lin = int(state["output_layer.0.weight"].shape[0]), state["output_layer.3.weight"]
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.Dropout(),
            nn.Flatten(),
            nn.Linear(int(lin.shape[1]), int(lin.shape[0])),
            # affine in pSp's IDLoss (Backbone's default), not in TreB1eN's IR_SE_50 helper
            nn.BatchNorm1d(int(lin.shape[0]), affine="output_layer.4.weight" in state),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(x, dim=1)
