"""``python -m invbench ...``: the command line, also as N processes under torchrun.

    torchrun --nproc-per-node 2 -m invbench run --method creswell --dataset digits
    torchrun --nproc-per-node 2 -m invbench train-generator -g dcgan -d digits

torchrun starts the processes with their rank in the environment; they join one process group
(``invbench.distributed.init``: gloo on CPU, NCCL on GPUs) before the command runs. A run's
evaluation is then shared among them and trainings are data-parallel; rank 0 alone prints,
caches and writes. Without torchrun this is ``invbench`` itself.
"""

from __future__ import annotations

import os
import sys

from invbench import distributed
from invbench.cli import main

# What runs on several processes: a run (its training data-parallel, its evaluation sharded,
# see invbench.runner) and a generator's training. Any other command would only repeat itself
# N times, so it is refused.
DISTRIBUTED_COMMANDS = ("run", "train-generator")


def _main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if distributed.init():
        cmd = next((a for a in args if not a.startswith("-")), "")
        if cmd not in DISTRIBUTED_COMMANDS:
            if distributed.is_main():
                print(
                    f"invbench: error: '{cmd}' does not run on several processes; under "
                    f"torchrun only {' and '.join(DISTRIBUTED_COMMANDS)} do. Run it as one "
                    "process, or a suite's cells in parallel with `invbench suite run NAME "
                    "--executor local:N`.",
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
