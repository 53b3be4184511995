"""Pretrained weight files: where they are looked for, their full published digests, and the one
way they are read.

A file is looked for, in order, in the directory the user names (``EvalConfig.weights_dir``),
in ``$INVBENCH_WEIGHTS``, and in the caches the field's libraries download to
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``, used by
torchvision, torchmetrics, torch-fidelity and pytorch-fid).

Security. A file is accepted only when the SHA-256 of its *whole content* equals the published
digest listed here (a prefix such as torchvision's ``name-<sha256[:8]>.pth`` is 32 bits: a
forged pickle with a matching prefix is found by brute force in minutes). And it is never
unpickled with code: ``load_state`` hashes the bytes it reads and hands those same bytes to
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only; the
network is built by invbench (or by a library's class without its loader) and the state dict
is loaded into it. A file that needs anything else is refused with a message.

The digests below are those of the published files (torchvision's model zoo, torch-fidelity's
v0.2.0 release, which hosts the same bytes as pytorch-fid's ``pt_inception`` file, and the
``lpips`` package's v0.1 linear layers); each was checked against at least two independent
public listings of the same file.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from invbench.errors import DataError

ENV = "INVBENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: accepted file names and the SHA-256 of its whole content."""

    names: tuple[str, ...]
    sha256: str  # the full digest, 64 hex digits
    what: str  # for messages: what the file is for
    url: str  # where the user can download it
    size: int | None = None  # bytes, for messages

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"{self.names[0]}: sha256 must be the full 64-hex-digit digest")


ALEXNET = WeightFile(
    ("alexnet-owt-7be5be79.pth",),
    "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
    "torchvision AlexNet (ImageNet) backbone of LPIPS",
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    244_408_911,
)
INCEPTION = WeightFile(
    # pytorch-fid / torchmetrics name and torch-fidelity's name of the same converted TF graph.
    ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
    "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    "Inception-v3 (2015-12-05 TF graph) feature network of FID / KID",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
    95_628_359,
)
VGG16 = WeightFile(
    ("vgg16-397923af.pth",),
    "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    "torchvision VGG-16 (ImageNet): perceptual losses (LIA's conv4_3, encoders' relu1_2-3_3)",
    "https://download.pytorch.org/models/vgg16-397923af.pth",
    553_433_881,
)
#: LPIPS v0.1 calibration layers; they ship inside the ``lpips`` package (weights/v0.1/alex.pth).
LPIPS_ALEX_LINEAR = WeightFile(
    ("alex.pth",),
    "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "LPIPS v0.1 linear calibration layers (AlexNet), shipped by the lpips package",
    "https://pypi.org/project/lpips/",
    6_009,
)
#: The same for LPIPS with the VGG-16 trunk (the StyleGAN2 projector's distance).
LPIPS_VGG_LINEAR = WeightFile(
    ("vgg.pth",),
    "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "LPIPS v0.1 linear calibration layers (VGG-16), shipped by the lpips package",
    "https://pypi.org/project/lpips/",
    7_289,
)


@dataclass(frozen=True)
class UnverifiedFile:
    """A weight file with no published digest (none could be confirmed from two independent
    public listings): found by name, read as tensors only (``read_state_bytes``), and accepted
    only when its structure is the network's (checked by the code that builds it)."""

    names: tuple[str, ...]
    what: str
    url: str  # where a person downloads it (no direct link: shared through Google Drive)


#: ArcFace IR-SE50 of TreB1eN's InsightFace_Pytorch as pSp / e4e / ReStyle distribute it.
IR_SE50 = UnverifiedFile(
    ("model_ir_se50.pth",),
    "ArcFace IR-SE50 identity network (pSp / e4e's ID loss, the id_sim metric)",
    "https://github.com/eladrich/pixel2style2pixel#pretrained-models",
)


def search_dirs(user_dir: str | None = None) -> list[Path]:
    dirs = []
    if user_dir:
        dirs.append(Path(user_dir).expanduser())
    if os.environ.get(ENV):
        dirs.append(Path(os.environ[ENV]).expanduser())
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        dirs.append(Path(torch_home).expanduser() / "hub" / "checkpoints")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
        dirs.append(Path(xdg).expanduser() / "torch" / "hub" / "checkpoints")
    return dirs


# Digests of files already hashed in this process, keyed by what would change with the content.
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: Path) -> str:
    """SHA-256 of ``path``, remembered per (path, inode, size, mtime) within a process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def find_unverified(spec: UnverifiedFile, user_dir: str | None = None) -> Path | None:
    """The first file of ``spec``'s names in the search directories, or None."""
    for d in search_dirs(user_dir):
        for name in spec.names:
            if (d / name).is_file():
                return d / name
    return None


def mismatch_message(spec: WeightFile, path: Path, digest: str) -> str:
    return (
        f"{path}: SHA-256 mismatch for the {spec.what} (sha256 {digest}, expected "
        f"{spec.sha256}). The file is corrupt or not the published one; it was not read. Delete "
        f"it and download {spec.url}."
    )


def find_weights(spec: WeightFile, user_dir: str | None = None) -> Path | None:
    """The verified path of ``spec``, or None when no directory holds it.

    Raises DataError when a file of that name exists but its full SHA-256 does not match.
    """
    for d in search_dirs(user_dir):
        for name in spec.names:
            path = d / name
            if not path.is_file():
                continue
            digest = file_digest(path)
            if digest != spec.sha256:
                raise DataError(mismatch_message(spec, path, digest))
            return path
    return None


def load_state(spec: WeightFile, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read without running code.

    The bytes are read once; their SHA-256 is checked against ``spec`` and the same bytes go to
    ``torch.load(weights_only=True)`` (no window in which the file could be swapped between
    the check and the load). Anything but tensors in plain containers is refused.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}.") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != spec.sha256:
        raise DataError(mismatch_message(spec, path, digest))
    return read_state_bytes(blob, str(path))


def load_tensors_only(
    source: Any, where: str, what: str = "weight files", allow: tuple[type, ...] = ()
) -> Any:
    """``torch.load(weights_only=True)`` of ``source`` (a path, memory-mapped when the file is in
    torch's zip format, or a file object): tensors and plain containers, plus the classes in
    ``allow``; anything that needs code to unpickle is refused with ``DataError``."""
    try:
        with torch.serialization.safe_globals(list(allow)):
            if isinstance(source, str | Path):
                try:
                    return torch.load(source, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as e:  # a legacy (pre-1.6) file cannot be mapped
                    if "mmap" not in str(e) and "zip" not in str(e):
                        raise
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"{where}: refused, it needs code to unpickle ({first}). invbench reads {what} as "
            "tensors only; use the published file."
        ) from None
    except Exception as e:  # torch.load raises many types for foreign or truncated bytes
        raise DataError(f"{where}: not a readable torch file ({type(e).__name__}).") from None


def read_state_bytes(blob: bytes, where: str) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of ``blob``: a dict of tensors, or DataError."""
    state = load_tensors_only(io.BytesIO(blob), where)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"{where}: expected a state dict (name -> tensor).")
    return state


def verified_state(spec: WeightFile, user_dir: str | None = None) -> dict[str, torch.Tensor] | None:
    """``load_state`` of the first file found for ``spec``; None when there is none."""
    path = find_weights(spec, user_dir)
    return None if path is None else load_state(spec, path)


def missing_message(spec: WeightFile | UnverifiedFile, user_dir: str | None = None) -> str:
    where = ", ".join(str(d) for d in search_dirs(user_dir))
    return (
        f"{spec.names[0]} ({spec.what}) not found in {where}. Download {spec.url} into one "
        f"of those directories or into a directory named by ${ENV}."
    )
