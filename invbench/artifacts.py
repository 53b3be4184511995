"""The artifact cache and atomic file writes.

One cache root, ``INVBENCH_HOME`` (default ``~/.cache/invbench``). An artifact is a set of
tensors stored as safetensors under ``<root>/<kind>/<key>.safetensors`` plus a sidecar
``<key>.json`` holding its sha256 and metadata. Both are written to a temporary name and
renamed, the tensors first: an artifact without its sidecar does not exist, and one whose
checksum does not match is discarded (and rebuilt by the caller) rather than loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_UMASK = os.umask(0)  # read the process umask (the only way is to set it) and put it back
os.umask(_UMASK)


def home() -> Path:
    root = os.environ.get("INVBENCH_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "invbench"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would have given
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _paths(kind: str, key: str) -> tuple[Path, Path]:
    base = home() / kind
    return base / f"{key}.safetensors", base / f"{key}.json"


def save_artifact(
    kind: str, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Store ``tensors`` under (kind, key) atomically, with a checksum sidecar."""
    data, side = _paths(kind, key)
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(data) as tmp:
        save_file(flat, str(tmp))
        digest = sha256_file(tmp)
    atomic_write_json(side, {"sha256": digest, "meta": meta})
    return data


def load_artifact(kind: str, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Return (tensors, meta), or None when absent or corrupt (a corrupt entry is removed)."""
    data, side = _paths(kind, key)
    if not (data.is_file() and side.is_file()):
        return None
    try:
        info = json.loads(side.read_text())
        if sha256_file(data) != info["sha256"]:
            raise ValueError("checksum mismatch")
        tensors = load_file(str(data))
    except Exception as e:  # corrupt sidecar, truncated file, bad checksum
        print(
            f"invbench: discarding corrupt cache entry {data} ({e}); it will be rebuilt.",
            file=sys.stderr,
        )
        for p in (data, side):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return None
    return tensors, info.get("meta", {})


def checkpoint_path(kind: str, key: str) -> Path:
    """Where an interrupted training of artifact (kind, key) keeps its resumable state."""
    return home() / "checkpoints" / kind / f"{key}.pt"


def save_checkpoint(kind: str, key: str, state: dict[str, Any]) -> None:
    with atomic_path(checkpoint_path(kind, key)) as tmp:
        torch.save(state, tmp)


def load_checkpoint(kind: str, key: str) -> dict[str, Any] | None:
    path = checkpoint_path(kind, key)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        print(f"invbench: ignoring unreadable checkpoint {path} ({e}).", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def drop_checkpoint(kind: str, key: str) -> None:
    checkpoint_path(kind, key).unlink(missing_ok=True)
