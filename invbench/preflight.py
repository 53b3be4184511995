"""Up-front checks of the places a command will write, before any work is done.

A run that trains for minutes and then cannot write its record (a read-only ``--out``, a full
disk, an ``INVBENCH_HOME`` that is a regular file) fails before it starts instead, with exit
code 2, a message naming the path and the fix, and nothing written. Each location is probed
for real: a small file is created, flushed to disk and removed in the nearest folder that
exists (so ``--out`` folders that do not exist yet are not created by the check), and the free
space of its file system is compared with what the command will write there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from invbench import artifacts, distributed
from invbench.errors import UsageError

MiB = 1 << 20
# What a run writes, with a wide margin. Measured on the embedded default with a fresh cache
# (`OMP_NUM_THREADS=1 INVBENCH_HOME=$(mktemp -d) invbench run --method creswell --dataset digits`):
# 40 KB under --out (record, grid), 1.1 MB in the cache (generator, domain feature network,
# reference statistics; 1.8 MB while the generator's training checkpoint exists). A paper-scale
# run caches larger models and Inception statistics (a 2048 x 2048 float64 covariance is
# 32 MiB); the margins cover both.
RUN_OUT_BYTES = 16 * MiB
RUN_CACHE_BYTES = 256 * MiB
PROBE_BYTES = 4096  # a probe that needs a data block, so a full file system fails the write


def _existing_ancestor(path: Path, label: str, fix: str) -> Path:
    """The nearest existing folder at or above ``path``; a file on the way is an error."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is" if p == path else f"lies under {p}, which is"
                raise UsageError(f"{label} {path} {what} a file, not a folder. {fix}")
            return p
    raise UsageError(f"{label} {path}: no part of the path exists. {fix}")  # pragma: no cover


def check_writable(path: Path | str, need: int, label: str, fix: str) -> None:
    """Refuse (``UsageError``, exit 2) a folder ``path`` that cannot take ``need`` bytes.

    ``label`` names where the path came from (``--out``, ``INVBENCH_HOME``), ``fix`` says what
    to do. The folder itself is not created: the probe goes to its nearest existing ancestor,
    which is where creating it would need write access.
    """
    path = Path(path).expanduser().absolute()
    base = _existing_ancestor(path, label, fix)
    try:
        fd, probe = tempfile.mkstemp(prefix=".invbench-probe-", dir=base)
    except OSError as e:
        raise UsageError(f"{label} {path}: cannot write in {base} ({e.strerror}). {fix}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())  # delayed allocation would otherwise hide a full disk
    except OSError as e:
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        why = "its file system is full" if full else e.strerror
        raise UsageError(f"{label} {path}: cannot write in {base} ({why}). {fix}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)
    free = shutil.disk_usage(base).free
    if free < need:
        raise UsageError(
            f"{label} {path}: {free / MiB:.1f} MiB free on its file system, and this needs "
            f"about {need / MiB:.0f} MiB. Free some space there. {fix}"
        )


def check_cache(need: int = RUN_CACHE_BYTES) -> None:
    """The artifact cache (``INVBENCH_HOME``, default ``~/.cache/invbench``) can take ``need``."""
    env = os.environ.get("INVBENCH_HOME")
    label = "INVBENCH_HOME" if env else "the cache folder"
    fix = (
        "Point INVBENCH_HOME at a writable folder with free space (or unset it to use "
        "~/.cache/invbench)."
    )
    check_writable(artifacts.home(), need, label, fix)


def check_run(out: Path | str | None, out_label: str = "--out") -> None:
    """Before a run (or a suite, or a generator's training): the cache and ``out`` (if any)
    are writable with room for what a run writes. Under torchrun rank 0 alone probes (the
    other ranks write nothing) and its refusal is raised on every rank."""

    def probe() -> None:
        check_cache()
        if out is not None:
            check_writable(out, RUN_OUT_BYTES, out_label, f"Pick a writable {out_label}.")

    distributed.on_main(probe)


def check_output_file(path: Path | str, label: str = "-o") -> None:
    """Before rendering to ``path`` (``table -o``): its folder takes a file, and ``path`` is
    not a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{label} {path} is a folder; name a file, e.g. {path / 'table.md'}.")
    check_writable(path.parent, MiB, label, f"Pick a writable {label} location.")
