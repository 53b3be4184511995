"""Finding pretrained feature-network weights offline, with a checksum.

A file is looked for, in order, in the directory the user names (``EvalConfig.weights_dir``),
in ``$INVBENCH_WEIGHTS``, and in the caches the field's libraries download to
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``, used by
torchvision, torchmetrics, torch-fidelity and pytorch-fid). A file is used only when its
SHA-256 starts with the published prefix (torchvision's ``name-<sha256[:8]>.pth`` convention);
a file with the right name and the wrong content is an error, never silently used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from invbench.artifacts import sha256_file
from invbench.errors import DataError

ENV = "INVBENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightFile:
    """A published weight file: accepted file names and the SHA-256 prefix of its content."""

    names: tuple[str, ...]
    sha256_prefix: str
    what: str  # for messages: what the file is for
    url: str  # where the user can download it


ALEXNET = WeightFile(
    ("alexnet-owt-7be5be79.pth",),
    "7be5be79",
    "torchvision AlexNet (ImageNet) backbone of LPIPS",
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
)
INCEPTION = WeightFile(
    # pytorch-fid / torchmetrics name and torch-fidelity's name of the same converted TF graph.
    ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"),
    "6726825d",
    "Inception-v3 (2015-12-05 TF graph) feature network of FID / KID",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth",
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


def find_weights(spec: WeightFile, user_dir: str | None = None) -> Path | None:
    """The verified path of ``spec``, or None when no directory holds it.

    Raises DataError when a file of that name exists but its checksum does not match.
    """
    for d in search_dirs(user_dir):
        for name in spec.names:
            path = d / name
            if not path.is_file():
                continue
            digest = sha256_file(path)
            if not digest.startswith(spec.sha256_prefix):
                raise DataError(
                    f"{path}: checksum mismatch for the {spec.what} (sha256 {digest[:8]}…, "
                    f"expected {spec.sha256_prefix}…). The file is corrupt or not the published "
                    f"one; delete it and download {spec.url}."
                )
            return path
    return None


def missing_message(spec: WeightFile, user_dir: str | None = None) -> str:
    where = ", ".join(str(d) for d in search_dirs(user_dir))
    return (
        f"{spec.names[0]} ({spec.what}) not found in {where}. Download {spec.url} into one "
        f"of those directories or into a directory named by ${ENV}."
    )
