"""Progress bars and log lines, always on stderr so ``--json`` output stays clean."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

QUIET = False


def set_quiet(quiet: bool) -> None:
    global QUIET
    QUIET = quiet


def bar(total: int, desc: str, initial: int = 0) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        file=sys.stderr,
        disable=QUIET,
        dynamic_ncols=True,
        leave=False,
        mininterval=0.5,
    )


def log(msg: str) -> None:
    if not QUIET:
        print(f"[invbench] {msg}", file=sys.stderr, flush=True)
