"""``python -m invbench ...``: the command line, also as N processes under torchrun.

    torchrun --nproc-per-node 2 -m invbench run --method creswell --dataset digits

torchrun starts the processes with their rank in the environment; they join one process group
(``invbench.distributed.init``: gloo on CPU, NCCL on GPUs) before the command runs. Trainings
are then data-parallel and a run shards its images over the ranks; rank 0 alone prints, caches
and writes the record. Without torchrun this is ``invbench`` itself.
"""

from __future__ import annotations

import sys

from invbench import distributed
from invbench.cli import main


def _main() -> int:
    distributed.init()
    try:
        return main()
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(_main())
