"""Suite grids on executors: a local process pool, Ray tasks, or Slurm jobs (submitit).

``invbench suite run NAME --executor local[:N] | ray[:ADDRESS] | slurm[:local]`` hands the
suite's missing cells to one of the engines the field already runs; nothing here schedules:

- ``local:N`` (``local`` = ``local:1``, the default): ``local:1`` runs the cells one after the
  other in this process, as ``suite run`` always did; ``local:N`` is a
  ``concurrent.futures.ProcessPoolExecutor`` of N workers, each pinned to its share of the
  threads (``torch.set_num_threads`` and ``OMP_NUM_THREADS``) so N workers do not oversubscribe
  the cores between them.
- ``ray`` (or ``ray:ADDRESS``): one Ray task per cell with the cell's CPUs, GPUs and memory; it
  joins the running cluster (``ray.init`` already called, ``RAY_ADDRESS``, or ADDRESS), else
  starts a local one.
- ``slurm``: one Slurm array task per cell through submitit, with the partition, time limit,
  GPUs, memory and CPUs of ``Resources``; ``slurm:local`` is submitit's local executor (the same
  jobs as local processes: a Slurm set-up tried without a cluster).

Every executor shares the rules of a cell: it is idempotent (its record's path is the hash of its
resolved configuration, so a finished cell is skipped, also by a worker that finds it done by
another), a failed cell is retried once, and a cell that failed twice is reported with its log
(``<results>/logs/<record>.log``). Results land in the suite's one results folder, so
``invbench table --suite NAME`` renders them as it renders a serial run. The results folder and
``INVBENCH_HOME`` must be on storage every worker sees (see the README, "Running at scale").

This module imports neither torch nor the engines at import time: a pool worker sets its thread
count before torch starts its thread pool, and Ray / submitit are optional extras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invbench.errors import InvBenchError, UsageError
from invbench.progress import log

KINDS = ("local", "ray", "slurm")
RETRIES = 1  # a failed cell runs once more before it is reported


class CellsFailed(InvBenchError):
    """Some cells failed twice; the message lists them with their logs (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Resources:
    """What one cell gets. Defaults <- the suite's ``resources:`` <- the command line.

    ``cpus`` is also the cell's thread count; ``partition`` and ``time_min`` are Slurm's (a
    ``time_min`` past the partition's limit is refused by Slurm at submission); ``mem_gb`` is a
    Slurm / Ray memory request (None: the cluster's default).
    """

    cpus: int = 1
    gpus: int = 0
    mem_gb: float | None = None
    time_min: int = 60
    partition: str | None = None

    def validate(self) -> None:
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int) or self.cpus < 1:
            raise UsageError(f"resources: cpus must be an integer >= 1, got {self.cpus!r}.")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise UsageError(f"resources: gpus must be an integer >= 0, got {self.gpus!r}.")
        if self.mem_gb is not None and not (
            isinstance(self.mem_gb, int | float) and 0 < self.mem_gb < 1e6
        ):
            raise UsageError(
                f"resources: mem_gb must be a number in (0, 1e6), got {self.mem_gb!r}."
            )
        if isinstance(self.time_min, bool) or not isinstance(self.time_min, int):
            raise UsageError(f"resources: time_min must be an integer, got {self.time_min!r}.")
        if not 1 <= self.time_min <= 525_600:
            raise UsageError(f"resources: time_min must lie in [1, 525600], got {self.time_min}.")
        if self.partition is not None and (
            not isinstance(self.partition, str) or not self.partition
        ):
            raise UsageError(f"resources: partition must be a name, got {self.partition!r}.")


RESOURCE_KEYS = {f.name for f in dataclasses.fields(Resources)}


def resources(*layers: dict[str, Any] | None) -> Resources:
    """``Resources`` from its defaults overridden by each layer in turn (None values skipped)."""
    values: dict[str, Any] = {}
    for layer in layers:
        for k, v in (layer or {}).items():
            if k not in RESOURCE_KEYS:
                raise UsageError(
                    f"resources: unknown key '{k}'; valid: {', '.join(sorted(RESOURCE_KEYS))}."
                )
            if v is not None:
                values[k] = v
    res = Resources(**values)
    res.validate()
    return res


@dataclass(frozen=True)
class Executor:
    """A parsed ``--executor``: its kind and its argument (N, an address, or 'local')."""

    kind: str
    workers: int = 1  # local:N
    address: str | None = None  # ray:ADDRESS, or 'local' for slurm:local

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.workers}"
        return self.kind + (f":{self.address}" if self.address else "")


def parse(text: str) -> Executor:
    """``local``, ``local:N``, ``ray``, ``ray:ADDRESS``, ``slurm`` or ``slurm:local``."""
    kind, _, arg = text.partition(":")
    if kind not in KINDS:
        import difflib

        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(
            f"--executor {text}: unknown executor '{kind}'.{hint} Use local[:N], ray[:ADDRESS] "
            "or slurm[:local]."
        )
    if kind == "local":
        if not arg:
            return Executor("local")
        if not arg.isdigit() or not 1 <= int(arg) <= 1024:
            raise UsageError(f"--executor {text}: N must be an integer in [1, 1024], e.g. local:2.")
        return Executor("local", workers=int(arg))
    if kind == "slurm" and arg not in ("", "local"):
        raise UsageError(
            f"--executor {text}: use slurm (a Slurm cluster) or slurm:local (submitit's local "
            "executor)."
        )
    return Executor(kind, address=arg or None)


@dataclass(frozen=True)
class Cell:
    """One (run entry, seed) of a suite: its run specification and its record's path."""

    label: str
    seed: int
    spec: Any  # invbench.runner.RunSpec (kept untyped: no torch import here)
    record: Path

    @property
    def log(self) -> Path:
        return self.record.parent / "logs" / f"{self.record.stem}.log"

    @property
    def name(self) -> str:
        return f"{self.label}, seed {self.seed}"

    def done(self) -> bool:
        """Whether the cell's record exists and is valid (an invalid one is computed again)."""
        from invbench.record import is_valid

        return is_valid(self.record)


@dataclass
class Outcome:
    """What a worker reports for one cell: ok, skipped (found done) or the error's last line."""

    cell: Cell
    ok: bool
    skipped: bool = False
    error: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    ran: int = 0
    skipped: int = 0
    failed: list[Outcome] = field(default_factory=list)


def threads_share(workers: int) -> int:
    """Threads each of ``workers`` local workers gets: this process's cores split evenly, never
    more than ``OMP_NUM_THREADS`` when that is set (the user's cap per process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // workers)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) > 0 else share


def pin_threads(threads: int) -> None:
    """Give this worker process ``threads`` threads (torch's intra-op pool and OpenMP's)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C-level messages
    too) to ``path``, appended, for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_cell(cell: Cell, threads: int | None = None, capture: bool = True) -> Outcome:
    """Run one cell where this function is called (a pool worker, a Ray task, a Slurm job).

    A record already on disk means another worker (or an earlier submission) finished the cell:
    it is skipped. The run's output is appended to the cell's log (``capture``); an exception
    is written there with its traceback and returned as a failed ``Outcome``.
    """
    if cell.done():
        return Outcome(cell, ok=True, skipped=True)
    if threads is not None:
        pin_threads(threads)
    from invbench.runner import run

    t0 = time.perf_counter()
    cell.log.parent.mkdir(parents=True, exist_ok=True)
    ctx = _output_to(cell.log) if capture else contextlib.nullcontext()
    with ctx:
        print(f"[invbench] cell {cell.name} on {os.uname().nodename} pid {os.getpid()}", flush=True)
        try:
            run(cell.spec)
        except Exception as e:
            text = traceback.format_exc()
            print(text, file=sys.stderr, flush=True)
            if not capture:  # the in-process serial run: keep the traceback in the log too
                with open(cell.log, "a") as f:
                    f.write(text)
            return Outcome(cell, ok=False, error=f"{type(e).__name__}: {e}")
    return Outcome(cell, ok=True, seconds=time.perf_counter() - t0)


def _absolute(cell: Cell) -> Cell:
    """Workers elsewhere (a Ray node, a Slurm job) may start in another folder."""
    spec = dataclasses.replace(cell.spec, out=Path(cell.spec.out).resolve())
    return dataclasses.replace(cell, spec=spec, record=cell.record.resolve())


# -- the backends: each maps run_cell over cells and yields the outcomes as they finish ----------


def _serial(cells: Sequence[Cell], res: Resources) -> Iterator[Outcome]:
    for cell in cells:
        log(f"cell {cell.name}")
        yield run_cell(cell, capture=False)


def _pool(workers: int) -> Callable[[Sequence[Cell], Resources], Iterator[Outcome]]:
    def backend(cells: Sequence[Cell], res: Resources) -> Iterator[Outcome]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        threads = threads_share(workers)
        log(f"local pool: {workers} workers x {threads} thread(s)")
        # spawn, not fork: a forked child inherits torch's thread pool in an undefined state.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {pool.submit(run_cell, cell, threads): cell for cell in cells}
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except BrokenProcessPool as e:  # a worker died (killed, out of memory)
                    yield Outcome(futures[fut], ok=False, error=f"worker process died: {e}")

    return backend


def _ray(address: str | None) -> Callable[[Sequence[Cell], Resources], Iterator[Outcome]]:
    def backend(cells: Sequence[Cell], res: Resources) -> Iterator[Outcome]:
        ray = _import("ray", "ray")
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
        from invbench import artifacts

        env = {"INVBENCH_HOME": str(artifacts.home().resolve()), "OMP_NUM_THREADS": str(res.cpus)}
        opts: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": res.gpus, "max_retries": 0}
        if res.mem_gb is not None:
            opts["memory"] = int(res.mem_gb * 2**30)
        task = ray.remote(run_cell).options(runtime_env={"env_vars": env}, **opts)
        refs = {task.remote(cell, res.cpus): cell for cell in cells}
        while refs:
            (ref,), _ = ray.wait(list(refs), num_returns=1)
            cell = refs.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as e:  # the worker crashed or the node was lost
                yield Outcome(cell, ok=False, error=f"ray task failed: {str(e).splitlines()[0]}")

    return backend


def _slurm(local: bool) -> Callable[[Sequence[Cell], Resources], Iterator[Outcome]]:
    def backend(cells: Sequence[Cell], res: Resources) -> Iterator[Outcome]:
        submitit = _import("submitit", "slurm")
        folder = cells[0].record.parent / "logs" / "submitit"
        ex = submitit.AutoExecutor(folder=folder, cluster="local" if local else "slurm")
        params: dict[str, Any] = {
            "timeout_min": res.time_min,
            "cpus_per_task": res.cpus,
            "gpus_per_node": res.gpus,
            "name": "invbench",
        }
        if res.mem_gb is not None:
            params["mem_gb"] = res.mem_gb
        if res.partition is not None:
            params["slurm_partition"] = res.partition
        ex.update_parameters(**params)
        with ex.batch():  # one array job, one task per cell
            jobs = [ex.submit(run_cell, cell, res.cpus) for cell in cells]
        log(f"submitted {len(jobs)} cells as {'local jobs' if local else 'Slurm array'} "
            f"{jobs[0].job_id.split('_')[0]} (logs: {folder})")  # fmt: skip
        pending = dict(zip(jobs, cells, strict=True))
        ended: dict[str, float] = {}  # job id -> when Slurm was first seen not running it
        last_poll = time.monotonic()
        while pending:
            lost: set[str] = set()
            if not local and time.monotonic() - last_poll > 10:
                lost, last_poll = _slurm_lost([j for j in pending], ended), time.monotonic()
            for job in list(pending):
                if not (job.done() or job.job_id in lost):
                    continue
                cell = pending.pop(job)
                try:
                    yield job.result()
                except Exception as e:  # the job raised outside run_cell, or never wrote a result
                    err = str(e).strip().splitlines()
                    tail = _tail_text(job.stderr() or "")
                    _append(cell.log, f"slurm job {job.job_id} failed:\n{tail}\n")
                    yield Outcome(
                        cell, ok=False, error=f"job {job.job_id}: {err[-1] if err else e}"
                    )
            time.sleep(1.0)

    return backend


RUNNING = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


def _slurm_lost(jobs: list[Any], ended: dict[str, float], grace: float = 30.0) -> set[str]:
    """The ids of the jobs Slurm no longer runs and that left no result for ``grace`` seconds.

    submitit learns a job's end from its result file or from ``sacct``; a job killed by Slurm
    (time limit, out of memory, a lost node) writes no result, and a cluster without accounting
    storage has no ``sacct``. ``squeue`` answers on every cluster: a job it lists as ended, or no
    longer lists, and whose result has not appeared within ``grace`` is lost.
    """
    try:
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(j.job_id for j in jobs)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    states = dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)
    lost, now = set(), time.monotonic()
    for job in jobs:
        if states.get(job.job_id, "").upper() in RUNNING or job.paths.result_pickle.exists():
            ended.pop(job.job_id, None)
        elif now - ended.setdefault(job.job_id, now) > grace:
            lost.add(job.job_id)
    return lost


def _import(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as e:
        raise UsageError(
            f"the {extra} executor needs '{module}', which is not installed: "
            f"pip install 'invbench[{extra}]' (or pip install {module})."
        ) from e


def _check_ready(ex: Executor) -> None:
    """Refuse an executor that cannot start before any cell is submitted."""
    if ex.kind == "ray":
        _import("ray", "ray")
    elif ex.kind == "slurm":
        _import("submitit", "slurm")
        if ex.address != "local" and shutil.which("sbatch") is None:
            raise UsageError(
                "--executor slurm: 'sbatch' is not on PATH, so there is no Slurm cluster to submit "
                "to. Run on a Slurm login node, or use --executor slurm:local to try the jobs "
                "locally."
            )


def _backend(ex: Executor) -> Callable[[Sequence[Cell], Resources], Iterator[Outcome]]:
    if ex.kind == "local":
        return _serial if ex.workers == 1 else _pool(ex.workers)
    if ex.kind == "ray":
        return _ray(ex.address)
    return _slurm(ex.address == "local")


def _tail_text(text: str, lines: int = 12) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(text)


def run(
    cells: Sequence[Cell], executor: str | Executor = "local", res: Resources | None = None
) -> Report:
    """Run the cells not yet done on ``executor``; retry each failure once; raise
    ``CellsFailed`` naming the cells that failed twice and where their logs are."""
    ex = parse(executor) if isinstance(executor, str) else executor
    res = res or Resources()
    _check_ready(ex)
    backend = _backend(ex)
    report = Report()
    todo = [_absolute(c) for c in cells if not c.done()]
    report.skipped = len(cells) - len(todo)
    for c in todo:
        if c.record.exists():
            log(f"{c.record.name} is not a valid record; computing it again")
    for attempt in range(1 + RETRIES):
        if not todo:
            break
        if attempt:
            log(f"retrying {len(todo)} failed cell(s) once")
        failed = []
        for out in backend(todo, res):
            if out.skipped:
                report.skipped += 1
            elif out.ok:
                report.ran += 1
                log(f"cell {out.cell.name}: done in {out.seconds:.1f} s")
            else:
                log(f"cell {out.cell.name}: FAILED ({out.error}); log: {out.cell.log}")
                failed.append(out)
        todo = [o.cell for o in failed]
        report.failed = failed
    if report.failed:
        parts = [
            f"- {o.cell.name}: {o.error}\n  log: {o.cell.log}\n"
            + "\n".join("    " + line for line in _tail_text(_read(o.cell.log)).splitlines())
            for o in report.failed
        ]
        raise CellsFailed(
            f"{len(report.failed)} cell(s) failed twice on --executor {ex} ({report.ran} ran, "
            f"{report.skipped} were done):\n" + "\n".join(parts)
        )
    return report


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
