"""The artifact cache: one module owns keys, sidecars, locks, atomic writes, checksums, resume.

One cache root, ``INVBENCH_HOME`` (default ``~/.cache/invbench``). Everything the suite trains or
computes once and reuses — zoo generators, fitted inverters (LIA's and InvGAN's whole models
among them), the domain feature network, reference statistics — goes through ``cached``:

    art = cached("generators", payload, build)   # payload: what the artifact depends on

1. The key is the content hash of ``payload`` (``identity`` of every config in it, see below).
2. A hit is ``<root>/<kind>/<key>.safetensors`` whose SHA-256 matches its sidecar
   ``<key>.json`` (which also stores the payload, so an entry says what it was built from).
   A corrupt entry is discarded and rebuilt, never loaded.
3. On a miss the process takes the entry's file lock, looks again (another process may have
   built it while this one waited), and only then calls ``build(key)``. The lock is
   ``filelock.FileLock``, an ``flock(2)`` lock on Linux: the kernel releases it when its holder
   exits, however it exits, so a killed worker leaves no stale lock behind (the empty ``.lock``
   file stays; deleting lock files while others may wait on them would race). On a file system
   without ``flock`` filelock falls back to a marker-file lock, which a kill can leave behind.
4. The tensors, then the sidecar, are written to temporary names and renamed: an entry without
   its sidecar does not exist. Then the entry's training checkpoint is dropped.

Resume: ``build`` receives the key; a long training saves its resumable state with
``save_checkpoint(kind, key, state)`` (``generators.train.Checkpointer`` does), so a killed
training restarts where it stopped and the finished artifact replaces the checkpoint.

Identity: ``identity(cfg)`` is the configuration dataclass as a dict, minus the fields declared
with ``later(default, since=...)`` while they hold that default. A field added to a Config with a
default that reproduces the earlier behaviour therefore changes no key and no record hash:
committed records, cached models and suite cells written before it are still found.

Under torchrun (``invbench.distributed``) only rank 0 touches the cache: it looks, locks, writes
and reads, and every other rank follows its answer (a broadcast), so no two ranks of one run
race on a file and a rank on a node without the cache folder still gets the artifact. A build
is rank 0's alone (the others wait in the broadcast, then receive the tensors), unless
``cached(..., parallel=True)``: then every rank calls ``build`` together, a data-parallel
training whose ranks average their gradients, and rank 0 stores what they trained. Checkpoints
likewise: rank 0 writes and reads them, ``load_checkpoint`` hands every rank its copy. Every
rank must therefore call ``cached`` and ``load_checkpoint`` at the same point of the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from invbench import distributed
from invbench.config import stable_hash

_UMASK = os.umask(0)  # read the process umask (the only way is to set it) and put it back
os.umask(_UMASK)

SINCE = "since"  # dataclass field metadata: the version that added a defaulted field


def home() -> Path:
    root = os.environ.get("INVBENCH_HOME")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "invbench"


# -- atomic writes ---------------------------------------------------------------------------------
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
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- identity --------------------------------------------------------------------------------------
def later(default: Any, since: int | str, **metadata: Any) -> Any:
    """A Config field added after results existed, whose ``default`` reproduces what the code
    did before it: left out of every key and record hash while it holds that default."""
    if isinstance(default, list | dict | set):
        raise TypeError("later(): use an immutable default (a tuple, a frozenset)")
    return dataclasses.field(default=default, metadata={**metadata, SINCE: since})


def identity(cfg: Any) -> dict[str, Any]:
    """``cfg`` (a dataclass) as a JSON-ready dict, minus ``later`` fields at their default."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if SINCE in f.metadata and v == f.default:
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def key_of(payload: Any) -> str:
    """The cache key of ``payload`` (a JSON-ready mapping; key order does not matter)."""
    return stable_hash(payload)


# -- entries ---------------------------------------------------------------------------------------
def _paths(kind: str, key: str) -> tuple[Path, Path]:
    base = home() / kind
    return base / f"{key}.safetensors", base / f"{key}.json"


def save_artifact(
    kind: str,
    key: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    payload: Any = None,
) -> Path:
    """Store ``tensors`` under (kind, key) atomically; the sidecar keeps checksum, meta, payload."""
    data, side = _paths(kind, key)
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(data) as tmp:
        save_file(flat, str(tmp))
        digest = sha256_file(tmp)
    atomic_write_json(side, {"sha256": digest, "meta": meta, "payload": payload})
    return data


def load_artifact(kind: str, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Return (tensors, meta), or None when absent or corrupt (a corrupt entry is removed)."""
    data, side = _paths(kind, key)
    if not (data.is_file() and side.is_file()):
        return None
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
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


@contextlib.contextmanager
def lock(kind: str, key: str) -> Iterator[None]:
    """Hold the build lock of (kind, key); see the module docstring for why it cannot go stale."""
    from filelock import FileLock, Timeout

    path = home() / kind / f"{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fl = FileLock(str(path))
    try:
        fl.acquire(timeout=0)
    except Timeout:
        from invbench.progress import log

        log(f"waiting for another process building {kind}/{key}")
        fl.acquire()  # as long as the other build takes
    try:
        yield
    finally:
        fl.release()


@dataclass
class Artifact:
    """A cache entry: its tensors, the metadata ``build`` returned, and whether this call built it."""

    key: str
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    built: bool


Build = Callable[[str], tuple[dict[str, torch.Tensor], dict[str, Any]]]


def cached(kind: str, payload: Any, build: Build, parallel: bool = False) -> Artifact:
    """The artifact of ``payload``: loaded, or built once (under its lock) and stored.

    Under torchrun rank 0 alone looks, locks and stores; with ``parallel`` every rank runs
    ``build`` (a data-parallel training), else rank 0 builds and the others receive its tensors.
    """
    if distributed.is_distributed():
        return _cached_ranks(kind, payload, build, parallel)
    key = key_of(payload)
    hit = load_artifact(kind, key)
    if hit is not None:
        return Artifact(key, hit[0], hit[1], built=False)
    with lock(kind, key):
        hit = load_artifact(kind, key)  # built by another process while this one waited
        if hit is not None:
            return Artifact(key, hit[0], hit[1], built=False)
        tensors, meta = build(key)
        save_artifact(kind, key, tensors, meta, payload)
        drop_checkpoint(kind, key)
    return Artifact(key, {k: v.detach().cpu() for k, v in tensors.items()}, meta, built=True)


def _cached_ranks(kind: str, payload: Any, build: Build, parallel: bool) -> Artifact:
    """``cached`` in a torchrun world. Rank 0 looks, and on a miss takes the lock and looks
    again, then broadcasts what it found (or that it builds): every rank leaves the same
    broadcasts in the same order, so none waits for a collective another never calls, and an
    error on rank 0 is raised on every rank (``distributed.on_main``). While rank 0 waits on
    another process's lock, the other ranks wait in that broadcast."""
    key = key_of(payload)
    main = distributed.is_main()
    with contextlib.ExitStack() as held:

        def look() -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
            hit = load_artifact(kind, key)
            if hit is None:
                held.enter_context(lock(kind, key))
                hit = load_artifact(kind, key)  # built by another process while this one waited
            return hit

        hit = distributed.on_main(look)
        if hit is not None:
            return Artifact(key, hit[0], hit[1], built=False)
        # parallel: every rank trains; else rank 0 builds alone and the others receive it (or
        # its exception: no rank waits for a build that failed).
        tensors, meta = build(key) if parallel else distributed.on_main(lambda: build(key))
        if main:
            save_artifact(kind, key, tensors, meta, payload)
            drop_checkpoint(kind, key)
    return Artifact(key, {k: v.detach().cpu() for k, v in tensors.items()}, meta, built=True)


# -- resumable training state ----------------------------------------------------------------------
def checkpoint_path(kind: str, key: str) -> Path:
    """Where an interrupted training of artifact (kind, key) keeps its resumable state."""
    return home() / "checkpoints" / kind / f"{key}.pt"


def save_checkpoint(kind: str, key: str, state: dict[str, Any]) -> None:
    """Write the resumable state (rank 0; the other ranks' calls do nothing)."""
    if not distributed.is_main():
        return
    with atomic_path(checkpoint_path(kind, key)) as tmp:
        torch.save(state, tmp)


def load_checkpoint(kind: str, key: str) -> dict[str, Any] | None:
    """The resumable state, or None; under torchrun rank 0 reads it and every rank gets it."""
    if distributed.is_distributed():
        found = _load_checkpoint(kind, key) if distributed.is_main() else None
        return distributed.broadcast_object(found)
    return _load_checkpoint(kind, key)


def _load_checkpoint(kind: str, key: str) -> dict[str, Any] | None:
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
    if distributed.is_main():
        checkpoint_path(kind, key).unlink(missing_ok=True)
