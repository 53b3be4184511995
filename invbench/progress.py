"""Progress bars and log lines, always on stderr so ``--json`` output stays clean."""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

QUIET = False


def _secondary_rank() -> bool:
    """A process of rank > 0 under torchrun: rank 0 alone shows progress and logs."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0


def set_quiet(quiet: bool) -> None:
    global QUIET
    QUIET = quiet


def bar(total: int, desc: str, initial: int = 0) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        file=sys.stderr,
        disable=QUIET or _secondary_rank(),
        dynamic_ncols=True,
        leave=False,
        mininterval=0.5,
    )


def log(msg: str) -> None:
    if not (QUIET or _secondary_rank()):
        print(f"[invbench] {msg}", file=sys.stderr, flush=True)
