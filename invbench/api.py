"""The public Python API (``import invbench``): what the command line does, as functions.

    import invbench

    rec = invbench.run("creswell", "digits", sets={"steps": 100, "eval.n_test": 64})
    rec.metrics["mse"], rec.metric_flavors["fid_test_rec"]
    inv = invbench.load_method("creswell", "digits")          # fitted, from the cache
    prep = invbench.prepare("creswell", "digits")             # stage 1 of a run
    rec = invbench.evaluate(prep, metrics=["mse", "ssim"])    # stages 2-3, nothing written
    ssim = invbench.metric("ssim"); ssim(x_hat, x)            # one value per image
    print(invbench.table([rec], "md"))

``run`` writes what ``invbench run`` writes (record, per-image CSV, latents, grid) under ``out``
and returns the same numbers; ``out=None`` writes nothing. In a script started by ``torchrun``,
``run`` / ``evaluate`` share the evaluation among the processes (``invbench.runner``): rank 0
writes, every process returns the same record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from invbench import distributed
from invbench.record import Record
from invbench.runner import Prepared, RunSpec, make_record
from invbench.runner import evaluate as _evaluate
from invbench.runner import prepare as _prepare
from invbench.runner import run as _run

Sets = Sequence[str] | Mapping[str, Any]


def _sets(sets: Sets | None) -> list[str]:
    """``{"steps": 100, "eval.n_test": 64}`` or ``["steps=100", ...]`` -> ``--set`` items."""
    if sets is None:
        return []
    if isinstance(sets, Mapping):
        return [f"{k}={','.join(map(str, v)) if isinstance(v, list | tuple) else v}"
                for k, v in sets.items()]  # fmt: skip
    return list(sets)


def prepare(
    method: str,
    dataset: str = "digits",
    *,
    generator: str | None = None,
    sets: Sets | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> Prepared:
    """Stage 1 of a run: configuration resolved, data loaded, generator and inverter fitted."""
    return _prepare(RunSpec(method, dataset, generator, _sets(sets), seed, device, out=None))


def evaluate(prepared: Prepared, metrics: Sequence[str] | None = None) -> Record:
    """Stages 2-3: score a prepared run (``metrics``: only these) and return its record
    (under torchrun: rank 0's, on every process)."""
    return distributed.broadcast_object(make_record(prepared, _evaluate(prepared, metrics)))


def run(
    method: str,
    dataset: str = "digits",
    *,
    generator: str | None = None,
    sets: Sets | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = "results",
    save_images: bool = False,
    profile: str | None = None,
) -> Record:
    """``invbench run`` as a function: the record, written under ``out`` (None: not written);
    ``profile``: the scale profile (None: the dataset's)."""
    spec = RunSpec(
        method, dataset, generator, _sets(sets), seed, device,
        None if out is None else Path(out), save_images, profile,
    )  # fmt: skip
    return _run(spec)
