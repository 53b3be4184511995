"""``id_sim``: identity similarity, the cosine of ArcFace embeddings of a reconstruction and its
original (higher is better), as pSp's and e4e's identity loss computes it.

The network is ArcFace IR-SE50 (Deng et al. 2019; TreB1eN's InsightFace_Pytorch weights,
``model_ir_se50.pth``, as pSp / e4e / ReStyle distribute them), built by
``invbench.published_encoders.ArcFaceBackbone`` from the file read as tensors only. The protocol
is pSp's identity loss (Richardson et al. 2021, §3.3; ``criteria/id_loss.py``): images at 256x256 (other sizes
are resized bilinearly with antialiasing), the face region ``[35:223, 32:220]`` cropped, pooled
to 112x112, embedded and L2-normalised; id_sim = <e(x), e(y)>. It is meant for aligned faces
(FFHQ / CelebA-HQ); ReStyle and HyperStyle report the same quantity with CurricularFace after
MTCNN alignment, which is not implemented here (the flavor says which network was used).

Without the weight file the metric is *unavailable* (null, with the file and the directories
searched named), never computed on a random network. A training loss that needs the network
calls ``require_identity_network`` while its configuration is validated, before any training.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from invbench.errors import DataError
from invbench.metrics.base import (
    EvalContext,
    MetricSpec,
    NetworkPairedMetric,
    Unavailable,
    register,
)
from invbench.metrics.weights import IR_SE50, find_unverified, missing_message, read_state_bytes

FLAVOR = "arcface-ir-se50/psp-crop"
CROP = (slice(35, 223), slice(32, 220))  # pSp's IDLoss.extract_feats on 256x256 faces
MIN_SIDE = 128  # smaller images are upsampled 2x or more to 256: no longer the protocol


class IdentitySimilarity:
    """Per-image cosine similarity of ArcFace embeddings (float64 on the CPU)."""

    flavor = FLAVOR

    def __init__(self, path: Path, device: str | torch.device = "cpu") -> None:
        from invbench.published_encoders import ArcFaceBackbone

        state = read_state_bytes(Path(path).read_bytes(), str(path))  # tensors only
        try:
            with torch.device("meta"):
                net = ArcFaceBackbone(state)
            net.load_state_dict(state, strict=True, assign=True)
        except (KeyError, RuntimeError, DataError) as e:
            raise DataError(
                f"{path}: not the ArcFace IR-SE50 network of pSp / e4e ({type(e).__name__}: "
                f"{str(e)[:200]}). Use the published {IR_SE50.names[0]} ({IR_SE50.url})."
            ) from None
        self.net = net.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)

    def embed(self, x: torch.Tensor, grad: bool = False) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        if x.shape[-2:] != (256, 256):
            x = F.interpolate(x, (256, 256), mode="bilinear", align_corners=False, antialias=True)
        x = F.adaptive_avg_pool2d(x[:, :, CROP[0], CROP[1]], (112, 112))
        with torch.set_grad_enabled(grad):
            return self.net(x)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.embed(x) * self.embed(y)).sum(1).double().cpu()

    def distance(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pSp's identity loss per image, 1 - <e(x), e(target)>, differentiable in ``x``."""
        return 1 - (self.embed(x, grad=True) * self.embed(target)).sum(1)


def require_identity_network(weights_dir: str | None = None) -> Path:
    """The identity network's file, or DataError naming it (for losses that need it)."""
    path = find_unverified(IR_SE50, weights_dir)
    if path is None:
        raise DataError(missing_message(IR_SE50, weights_dir))
    return path


def load_identity(
    device: str | torch.device = "cpu",
    weights_dir: str | None = None,
    image_shape: tuple[int, ...] | None = None,
) -> IdentitySimilarity:
    """The id_sim metric, or ``Unavailable`` saying why (image shape, or the missing file)."""
    if image_shape is not None:
        c, h, w = image_shape[-3:]
        if c != 3 or min(h, w) < MIN_SIDE:
            raise Unavailable(
                f"id_sim unavailable: ArcFace compares aligned RGB faces of at least "
                f"{MIN_SIDE}x{MIN_SIDE} pixels (the protocol crops 256x256 faces); these images "
                f"are {c}x{h}x{w}."
            )
    path = find_unverified(IR_SE50, weights_dir)
    if path is None:
        raise Unavailable("id_sim unavailable: " + missing_message(IR_SE50, weights_dir))
    return IdentitySimilarity(path, device)


class IdSim(NetworkPairedMetric):
    """The registered ``id_sim``: ArcFace cosine similarity per image; unavailable without the
    IR-SE50 file or on images that are not faces of the protocol."""

    def __init__(self, spec: MetricSpec, ctx: EvalContext) -> None:
        shape = (ctx.channels, ctx.resolution, ctx.resolution) if ctx.resolution else None
        net = load_identity(ctx.device, getattr(ctx.cfg, "weights_dir", "") or None, shape)
        super().__init__(spec, ctx, net)


register(
    MetricSpec(
        "id_sim",
        "ArcFace identity similarity (pSp's ID loss crop), test reconstructions vs originals",
        higher_better=True,
        group="Reconstruction",
        flavor=FLAVOR,
    ),
    IdSim,
)
