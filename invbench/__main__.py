"""``python -m invbench ...``: the command line, also as N processes under torchrun.

    torchrun --nproc-per-node 2 -m invbench train-generator -g dcgan -d digits

torchrun starts the processes with their rank in the environment; they join one process group
(``invbench.distributed.init``: gloo on CPU, NCCL on GPUs) before the command runs. Trainings
are then data-parallel; rank 0 alone prints, caches and writes. Without torchrun this is
``invbench`` itself.
"""

from __future__ import annotations

import os
import sys

from invbench import distributed
from invbench.cli import main

# What runs on several processes today: training, data-parallel. A run's evaluation is not
# sharded yet (it needs the staged runner's evaluate stage), so it is refused, not run N times.
DISTRIBUTED_COMMANDS = ("train-generator",)


def _main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if distributed.init():
        cmd = next((a for a in args if not a.startswith("-")), "")
        if cmd not in DISTRIBUTED_COMMANDS:
            if distributed.is_main():
                print(
                    f"invbench: error: '{cmd}' does not run on several processes yet; under "
                    f"torchrun only {', '.join(DISTRIBUTED_COMMANDS)} does (data-parallel "
                    "training). Run it as one process, or a suite's cells in parallel with "
                    "`invbench suite run NAME --executor local:N`.",
                    file=sys.stderr,
                )
            distributed.shutdown()
            return 2
    if not distributed.is_main():  # rank 0 alone prints the command's output
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        return main(args)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(_main())
