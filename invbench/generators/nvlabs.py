"""NVlabs network pickles (StyleGAN2-ADA, StyleGAN3) read without running the code they carry.

NVlabs' training loops write ``pickle.dump({'G', 'D', 'G_ema', 'augment_pipe',
'training_set_kwargs'})``. Every network in it is an instance of a class decorated with
``torch_utils.persistence.persistent_class``, which pickles as the call
``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src, class_name,
state}``: ``module_src`` is the full source text of the module that defined the class and
``state`` the object's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, attributes such
as ``conv_clamp`` or ``bias_gain``, ``_init_kwargs``). NVlabs' own loader *executes*
``module_src``; so would ``pickle.load`` of anything else the file names.

Here the file goes through ``invbench.safe_pickle.RestrictedUnpickler``: the persistence hook is
answered by ``Persistent`` (a record of the class name and its state; ``module_src`` is hashed
for identification and never compiled), ``dnnlib.EasyDict`` by a plain dict, and a tensor's
storage (pickled by torch as ``torch.storage._load_from_bytes(<a torch.save blob>)``) by
``torch.load(weights_only=True)`` of that blob. Tensors are rebuilt with torch's own
``_rebuild_tensor_v2`` / ``_rebuild_parameter``, numpy values with numpy's reconstructors. Any
other global stops the read with ``DataError`` before it is called.

``stylegan2_weights`` then maps ``G_ema`` of the StyleGAN2-ADA architecture (NVlabs'
``training/networks.py``) onto the suite's StyleGAN2 (``invbench.generators.stylegan2``, the
layout of rosinality's ``g_ema``); a StyleGAN3 ``G_ema`` is executed by
``invbench.generators.stylegan3``.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from invbench.errors import DataError, UsageError
from invbench.safe_pickle import NUMPY_ARRAYS, RestrictedUnpickler

#: What NVlabs pickles need besides the overrides below: torch's tensor and parameter
#: reconstructors (they only wrap an already-read storage), OrderedDict (the module
#: dictionaries), numpy arrays and scalars (attributes such as ``weight_gain`` are np.float64).
ALLOWED: frozenset[tuple[str, str]] = NUMPY_ARRAYS | {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("collections", "OrderedDict"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}

TF_PICKLE = (
    "is a TensorFlow StyleGAN / StyleGAN2 pickle (dnnlib.tflib), which invbench does not read. "
    "Convert it once with rosinality's convert_weight.py (to a stylegan2-pytorch .pt) or with "
    "NVlabs/stylegan2-ada-pytorch's legacy.py (to a PyTorch .pkl), then pass that file."
)


@dataclass
class Persistent:
    """A persistent NVlabs object as data: its class name and ``__dict__``; no code."""

    class_name: str
    state: dict[str, Any]
    source_sha256: str = ""  # digest of the module source the file carries (never executed)
    version: int | None = None

    def _dict(self, key: str) -> dict[str, Any]:
        d = self.state.get(key) or {}
        return dict(d) if isinstance(d, dict) else {}

    @property
    def children(self) -> dict[str, Persistent]:
        return {k: v for k, v in self._dict("_modules").items() if isinstance(v, Persistent)}

    def child(self, name: str) -> Persistent:
        c = self.children.get(name)
        if c is None:
            raise KeyError(f"{self.class_name} has no submodule '{name}'")
        return c

    def has(self, name: str) -> bool:
        return name in self.children

    def tensors(self) -> dict[str, torch.Tensor]:
        """This module's own parameters and buffers (not its children's)."""
        out = {}
        for key in ("_parameters", "_buffers"):
            for k, v in self._dict(key).items():
                if isinstance(v, torch.Tensor):
                    out[k] = v.detach()
        return out

    def tensor(self, name: str) -> torch.Tensor:
        t = self.tensors().get(name)
        if t is None:
            raise KeyError(f"{self.class_name} has no parameter or buffer '{name}'")
        return t

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        out = {prefix + k: v for k, v in self.tensors().items()}
        for name, c in self.children.items():
            out.update(c.state_dict(f"{prefix}{name}."))
        return out


def _reconstruct_persistent_obj(meta: Any) -> Persistent:
    """Stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: keeps the data."""
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise DataError("a persistent object without a state dictionary; not an NVlabs network.")
    if meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise DataError(f"unknown persistent object type {meta.get('type')!r}.")
    src = meta.get("module_src", "")
    sha = hashlib.sha256(src.encode()).hexdigest() if isinstance(src, str) else ""
    return Persistent(meta["class_name"], meta["state"], sha, meta.get("version"))


class EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


def _storage_from_bytes(blob: bytes) -> Any:
    """Stands in for ``torch.storage._load_from_bytes``, which would ``torch.load`` the blob
    with full unpickling; here the blob may hold a storage and nothing else."""
    if not isinstance(blob, bytes):
        raise DataError("a tensor storage that is not bytes.")
    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"a tensor storage that needs code to read ({first}).") from None
    if not isinstance(obj, torch.storage.TypedStorage | torch.UntypedStorage):
        raise DataError(f"a tensor storage that holds a {type(obj).__name__}.")
    return obj


OVERRIDES: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
}


class NVlabsUnpickler(RestrictedUnpickler):
    """The restricted unpickler with NVlabs' overrides, and a precise message for TF pickles."""

    def __init__(self, file: io.BufferedIOBase, where: str) -> None:
        super().__init__(file, ALLOWED, OVERRIDES, where, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("dnnlib.tflib"):
            raise DataError(f"{self.where} {TF_PICKLE}")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict[str, Any]:
    """The top-level dict of an NVlabs network pickle, networks as ``Persistent`` records."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = NVlabsUnpickler(f, str(path)).load()  # type: ignore[arg-type]
    except DataError as e:
        msg = str(e)
        raise DataError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable NVlabs network pickle ({e}).") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), Persistent):
        keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise DataError(
            f"{path}: not an NVlabs network pickle: expected a dict with 'G_ema' (a persistent "
            f"Generator), found {keys}."
        )
    return data


# -- StyleGAN2-ADA's G_ema -> the suite's StyleGAN2 ------------------------------------------------
def is_stylegan3(G: Persistent) -> bool:
    syn = G.children.get("synthesis")
    return syn is not None and (syn.has("input") or syn.class_name != "SynthesisNetwork")


def _number(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass
class NVlabsWeights:
    """A StyleGAN2 state dict in the suite's (rosinality's) layout, read from an NVlabs G_ema."""

    g_ema: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None
    lr_mlp: float
    conv_clamp: float | None
    info: dict[str, Any] = field(default_factory=dict)


def stylegan2_weights(data: dict[str, Any], where: str) -> NVlabsWeights:
    """Map NVlabs' StyleGAN2-ADA ``G_ema`` (training/networks.py) to the suite's StyleGAN2.

    Correspondence (NVlabs -> rosinality ``g_ema``), shapes reshaped where the layouts differ:
    ``mapping.fc{i}`` -> ``style.{i+1}`` (same equalised-lr weights: stored at N(0,1)/lr_mul,
    scaled by lr_mul/sqrt(fan_in) at run time; bias times lr_mul); ``synthesis.b4.const`` ->
    ``input.input``; ``b{r}.conv0/conv1`` -> ``convs.{2k}/{2k+1}`` (``b4.conv1`` -> ``conv1``):
    ``weight`` [O,I,k,k] -> ``conv.weight`` [1,O,I,k,k], ``affine`` -> ``conv.modulation``,
    ``bias`` -> ``activate.bias``, ``noise_strength`` -> ``noise.weight``, ``noise_const`` ->
    ``noises.noise_{n}``; ``b{r}.torgb`` -> ``to_rgbs.{k}`` (``to_rgb1`` at 4²). NVlabs
    modulates the unscaled weight and rosinality the weight times 1/sqrt(fan_in): demodulation
    (eq. 3) removes any per-layer scale, so both give the same conv (up to its 1e-8 epsilon);
    ToRGB's 1/sqrt(fan_in) sits on the styles there and on the weight here: the same product.
    The upsampling conv0 stores the weight of a transposed convolution in both (NVlabs'
    ``flip_weight=False``; rosinality's converter flips TF's weights the same way).
    ``mapping.w_avg`` (the tracked mean w) becomes ``latent_avg``; ``conv_clamp`` (activations
    clamped to +-X) and the mapping's lr multiplier (``fc0.bias_gain``) come from the file.
    FP16 layers (``num_fp16_res``) are computed in float32, as NVlabs' ``force_fp32=True``.
    """
    G = check_generator(data["G_ema"], where)
    if is_stylegan3(G):
        raise DataError(f"{where}: a StyleGAN3 generator (see invbench.generators.stylegan3).")
    try:
        return _map_stylegan2(G, where)
    except KeyError as e:
        raise DataError(f"{where}: not the StyleGAN2-ADA Generator layout ({e.args[0]}).") from None


def check_generator(G: Persistent, where: str) -> Persistent:
    """An unconditional RGB NVlabs Generator, or a message saying what it is instead."""
    if G.class_name != "Generator":
        raise DataError(f"{where}: G_ema is a {G.class_name}, not an NVlabs Generator.")
    if int(G.attr("c_dim", 0) or 0):
        raise UsageError(
            f"{where} is a class-conditional generator (c_dim={G.attr('c_dim')}); invbench "
            "inverts unconditional generators only."
        )
    if int(G.attr("img_channels", 3)) != 3:
        raise UsageError(f"{where}: {G.attr('img_channels')} image channels; only RGB is read.")
    return G


def _map_stylegan2(G: Persistent, where: str) -> NVlabsWeights:
    from invbench.generators.stylegan2 import make_kernel

    mapping, syn = G.child("mapping"), G.child("synthesis")
    n_mlp = int(mapping.attr("num_layers"))
    out: dict[str, torch.Tensor] = {}
    lr_mul = None
    for i in range(n_mlp):
        fc = mapping.child(f"fc{i}")
        if fc.attr("activation") != "lrelu":
            raise DataError(f"{where}: mapping layer {i} uses '{fc.attr('activation')}'.")
        lr_mul = _number(fc.attr("bias_gain"))
        out[f"style.{i + 1}.weight"] = fc.tensor("weight")
        out[f"style.{i + 1}.bias"] = fc.tensor("bias")
    res_log2 = int(syn.attr("img_resolution_log2"))
    kernel = make_kernel([1, 3, 3, 1])
    clamps: set[float | None] = set()

    def layer(dst: str, src: Persistent, noise_index: int | None) -> None:
        if src.attr("activation", "lrelu") != "lrelu" or int(src.attr("up", 1)) not in (1, 2):
            raise DataError(f"{where}: a synthesis layer with activation/up other than lrelu/2.")
        if int(src.attr("up", 1)) == 2:
            f = src.tensor("resample_filter")
            if f.shape != kernel.shape or not torch.allclose(f.float(), kernel, atol=1e-7):
                raise DataError(f"{where}: resample_filter is not [1,3,3,1]; not supported.")
        clamps.add(_number(src.attr("conv_clamp")))
        out[f"{dst}.conv.weight"] = src.tensor("weight").unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = src.child("affine").tensor("weight")
        out[f"{dst}.conv.modulation.bias"] = src.child("affine").tensor("bias")
        out[f"{dst}.activate.bias"] = src.tensor("bias")
        res = int(src.attr("resolution"))
        if src.attr("use_noise", True):
            out[f"{dst}.noise.weight"] = src.tensor("noise_strength").reshape(1)
            out[f"noises.noise_{noise_index}"] = src.tensor("noise_const").reshape(1, 1, res, res)
        else:  # no noise input: a zero strength reproduces it exactly
            out[f"{dst}.noise.weight"] = torch.zeros(1)
            out[f"noises.noise_{noise_index}"] = torch.zeros(1, 1, res, res)

    def torgb(dst: str, src: Persistent) -> None:
        clamps.add(_number(src.attr("conv_clamp")))
        out[f"{dst}.conv.weight"] = src.tensor("weight").unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = src.child("affine").tensor("weight")
        out[f"{dst}.conv.modulation.bias"] = src.child("affine").tensor("bias")
        out[f"{dst}.bias"] = src.tensor("bias").reshape(1, -1, 1, 1)

    for log2 in range(2, res_log2 + 1):
        block = syn.child(f"b{2**log2}")
        if block.attr("architecture", "skip") != "skip":
            raise DataError(
                f"{where}: synthesis architecture '{block.attr('architecture')}'; invbench's "
                "StyleGAN2 is the 'skip' generator of config F (NVlabs' default)."
            )
        k = log2 - 3
        if log2 == 2:
            out["input.input"] = block.tensor("const").unsqueeze(0)
            layer("conv1", block.child("conv1"), 0)
            torgb("to_rgb1", block.child("torgb"))
        else:
            layer(f"convs.{2 * k}", block.child("conv0"), 2 * k + 1)
            layer(f"convs.{2 * k + 1}", block.child("conv1"), 2 * k + 2)
            torgb(f"to_rgbs.{k}", block.child("torgb"))
            # The 2x FIR filters with gain up^2, as both codes build them (buffers in rosinality's)
            out[f"convs.{2 * k}.conv.blur.kernel"] = kernel * 4
            out[f"to_rgbs.{k}.upsample.kernel"] = kernel * 4
    if len(clamps) != 1:
        raise DataError(f"{where}: layers use different conv_clamp values {sorted(clamps)}.")
    w_avg = mapping.tensors().get("w_avg")
    info = {
        "format": "nvlabs-pickle",
        "class": "StyleGAN2-ADA Generator",
        "z_dim": int(G.attr("z_dim")),
        "w_dim": int(G.attr("w_dim")),
        "source_sha256": G.source_sha256,
    }
    assert lr_mul is not None and math.isfinite(lr_mul)
    return NVlabsWeights(out, w_avg, lr_mul, next(iter(clamps)), info)
