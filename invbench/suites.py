"""Suites: a grid of runs declared in ``configs/suites/<name>.yaml``, run resumably, rendered.

    description: "..."
    seeds: [0, 1, 2]
    runs:                      # each entry is one `invbench run` without --seed
      - {label: "encoder init", method: lia, dataset: digits, sets: ["refine_init=encoder"]}
      - {label: "MSE optimisation", method: creswell, generator: dcgan, sets: ["loss=l2"]}
    table:
      metrics: [mse, ssim, psnr, fid_test_rec]
    valid_if:                  # a row with a seed outside these bounds has FAILED (collapsed)
      class_share_max: {at_most: 0.5}
    claims:                    # a paper's finding, judged from the per-seed values
      - {text: "encoder init beats random init (LIA §7.3)", better: "encoder init",
         worse: "random init", metric: mse}

A run entry may list the numbers papers report for its row (``PaperReport``), which tables and
the report show beside the measured ones with their source and the settings that differ::

      paper: [{paper: "Zhu et al., LIA", table: "4", section: "7.2",
               differs: ["dataset: FFHQ (here digits at 28 px)"], values: {mse: 0.019}}]

The file is checked against the dataclasses below (``SuiteFile``, ``SuiteRun``, ``Claim``,
``Bound``) when it is loaded: unknown keys, missing keys and values of the wrong type (a number
where a name or a list belongs, ``seeds: [true]``, ``table: {metrics: mse}``) stop with the key
named, before any cell runs.

A run's seed seeds the method (initial latents, a method's own training). A zoo generator keeps
its own ``generator.seed`` unless the entry ties it to the run: ``sets: ["generator.seed={seed}"]``
(``{seed}`` in any set is the cell's seed), so the spread over seeds includes the generator's.

A cell (run entry x seed) whose record already exists (same configuration hash) is skipped, so a
killed suite resumes where it stopped; records are written atomically, so no cell is half done.

Verdicts (the design card's contract). A claim compares two rows (``better`` than ``worse`` on
``metric``; ``factor`` relaxes it to "no worse than factor x") or bounds one ``row``'s metric
(``at_least`` / ``at_most``); ``worse_metric`` names the worse row's metric where a paper
compares two quantities of one direction (ICLR 2020 Fig. 4: GAN samples' FID against AE
reconstructions' FID). From the per-seed values it is

- HELD: the claim's ordering (or bound) holds and the gap exceeds two standard errors;
- DID NOT HOLD: the opposite, beyond the same two standard errors;
- INCONCLUSIVE: the gap is within two standard errors, or a row has a single seed;
- INVALID: a row involved has FAILED its suite's ``valid_if`` bounds on some seed (a collapsed
  baseline proves nothing), unless the claim is about that very bound.

The standard error is paired when the two rows share each seed's model: the records'
``provenance.model_key`` is equal per seed (the same zoo generator, or the same training of a
method that owns its generator, e.g. two inversions of one LIA model), or the claim says
``paired: true``. The per-seed differences d_s then give s.e. = std(d) / sqrt(n). Otherwise it
is unpaired: s.e. = sqrt(s_a^2 / n_a + s_b^2 / n_b).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import statistics
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from invbench import preflight
from invbench.config import MAX_SEED, load_yaml
from invbench.errors import UsageError
from invbench.executors import Resources
from invbench.metrics import METRICS, higher_better
from invbench.progress import log
from invbench.record import InvalidRecord, Record


# -- the schema ------------------------------------------------------------------------------------
@dataclass
class Bound:
    """A range a metric must lie in: ``at_least`` and / or ``at_most`` (inclusive)."""

    at_least: float | None = None
    at_most: float | None = None

    def holds(self, v: float) -> bool:
        return (self.at_least is None or v >= self.at_least) and (
            self.at_most is None or v <= self.at_most
        )

    def __str__(self) -> str:
        ends = ((">=", self.at_least), ("<=", self.at_most))
        return " and ".join(f"{op} {b:g}" for op, b in ends if b is not None)


@dataclass
class PaperReport:
    """Numbers a paper reports for a suite row: who (``paper``), where (``table``, ``page`` or
    ``section``), the paper's settings that are not ours (``differs``: resolution, dataset,
    feature network ...) and ``values`` (metric: number, in our metric names)."""

    paper: str
    values: dict[str, float]
    table: str | None = None
    page: int | None = None
    section: str | None = None
    differs: list[str] = field(default_factory=list)

    def cite(self) -> str:
        where = [f"Table {self.table}"] if self.table else []
        where += [f"Section {self.section}"] if self.section else []
        where += [f"p. {self.page}"] if self.page else []
        return ", ".join([self.paper, *where])


@dataclass(frozen=True)
class PaperValue:
    """One paper number as a table shows it (``invbench.tables.PaperNumbers``)."""

    value: float
    cite: str
    differs: tuple[str, ...] = ()


@dataclass
class SuiteRun:
    method: str
    label: str = ""  # the table row's name; default: the method
    dataset: str = "digits"
    generator: str | None = None
    sets: list[str] = field(default_factory=list)
    valid_if: dict[str, Bound] = field(default_factory=dict)  # added to the suite's valid_if
    paper: list[PaperReport] = field(default_factory=list)  # what papers report for this row


@dataclass
class Claim:
    metric: str
    text: str = ""
    better: str | None = None
    worse: str | None = None
    factor: float = 1.0
    row: str | None = None
    at_least: float | None = None
    at_most: float | None = None
    paired: bool | None = None  # None: paired when the rows share each seed's model_key
    # The worse row's metric when a paper compares two quantities (ICLR 2020 Fig. 4: the FID of
    # GAN samples against the FID of AE reconstructions); None: ``metric`` on both rows.
    worse_metric: str | None = None


@dataclass
class TableSpec:
    metrics: list[str] | None = None


@dataclass
class SuiteFile:
    """The top level of a suite YAML file."""

    runs: list[SuiteRun]
    description: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    table: TableSpec = field(default_factory=TableSpec)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    valid_if: dict[str, Bound] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)  # per cell: invbench.executors


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    seeds: list[int]
    runs: list[SuiteRun]
    metrics: list[str] | None
    claims: list[Claim]
    notes: list[str]
    resources: dict[str, Any] = field(default_factory=dict)  # per cell (invbench.executors)
    valid_if: dict[str, Bound] = field(default_factory=dict)

    def paper_numbers(self) -> dict[str, dict[str, PaperValue]]:
        """Row label -> metric -> the paper's number (the first source naming it)."""
        out: dict[str, dict[str, PaperValue]] = {}
        for run in self.runs:
            for rep in run.paper:
                for metric, v in rep.values.items():
                    pv = PaperValue(v, rep.cite(), tuple(rep.differs))
                    out.setdefault(run.label, {}).setdefault(metric, pv)
        return out

    def validity(self, label: str) -> dict[str, Bound]:
        """The bounds a row must satisfy: the suite's ``valid_if`` and its run's own."""
        run = next(r for r in self.runs if r.label == label)
        return {**self.valid_if, **run.valid_if}


# How a schema type reads in a message: (one, several).
_TYPE_NAMES = {
    str: ("a string", "strings"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "booleans"),
}


def _describe(tp: Any, plural: bool = False) -> str:
    """``list[str]`` -> "a list of strings" (Optional types never reach a message: ``_parse``
    unwraps them first)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return f"a list of {_describe(args[0], plural=True)}"
    if origin is dict:
        return f"a mapping of name: {_describe(args[1])}"
    if dataclasses.is_dataclass(tp):
        keys = ", ".join(f.name for f in dataclasses.fields(tp))
        return f"mappings with keys {keys}" if plural else f"a mapping with keys {keys}"
    return _TYPE_NAMES[tp][plural]


def _show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    kind = {str: "the string", int: "the integer", float: "the number", list: "a list"}
    return f"{kind.get(type(value), 'a ' + type(value).__name__)} {value!r}"


def _parse(value: Any, tp: Any, where: str, path: Path) -> Any:
    """``value`` checked against type ``tp`` strictly (no conversion: YAML already typed it);
    a dataclass type is built from a mapping. Errors name the key as ``runs[2].sets``.

    Written by hand rather than with jsonschema: the dataclasses above are the schema and the
    objects the rest of the code reads, one declaration instead of two that can drift apart.
    """

    def bad(extra: str = "") -> UsageError:
        return UsageError(f"{path}: '{where}' must be {_describe(tp)}, got {_show(value)}.{extra}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None: a null never gets here (below)
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(value, inner, where, path)
    if origin is list:
        if not isinstance(value, list):
            key = where.rsplit(".", 1)[-1]
            raise bad(f" Write a list, e.g. {key}: [{value}]." if isinstance(value, str) else "")
        return [_parse(v, args[0], f"{where}[{i}]", path) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        return {
            _parse(k, args[0], f"{where} key", path): _parse(v, args[1], f"{where}.{k}", path)
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        fields = {f.name: f for f in dataclasses.fields(tp)}
        hints = typing.get_type_hints(tp)
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise UsageError(
                    f"{path}: {where or 'the file'} has unknown key '{key}'.{hint} "
                    f"Valid keys: {', '.join(fields)}."
                )
        out = {}
        for name, f in fields.items():
            sub = f"{where}.{name}" if where else name
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if name not in value and required:
                raise UsageError(f"{path}: '{sub}' is required ({_describe(hints[name])}).")
            if name in value and (value[name] is not None or required):
                out[name] = _parse(value[name], hints[name], sub, path)
        return tp(**out)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        if not math.isfinite(value):
            raise UsageError(f"{path}: '{where}' must be a finite number, got {value!r}.")
        return float(value)
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad()
    if tp in (str, bool) and not isinstance(value, tp):
        raise bad()
    return value


# -- loading ---------------------------------------------------------------------------------------
def suite_dir() -> Path:
    return Path(str(resources.files("invbench.configs").joinpath("suites")))


def names() -> list[str]:
    d = suite_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not path.is_file():
        path = suite_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = names()
        close = difflib.get_close_matches(name_or_path, known, n=1, cutoff=0.4)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown suite '{name_or_path}'.{hint} Known suites: {', '.join(known)}.")
    data: SuiteFile = _parse(load_yaml(path), SuiteFile, "", path)
    if not data.runs:
        raise UsageError(f"{path}: 'runs' must be a non-empty list of run entries.")
    for i, run in enumerate(data.runs):
        run.label = run.label or run.method
        if not all("=" in s for s in run.sets):
            raise UsageError(f"{path}: runs[{i}].sets must be a list of 'key=value' strings.")
        _check_bounds(path, f"runs[{i}].valid_if", run.valid_if)
        for j, rep in enumerate(run.paper):
            for metric in rep.values:
                _check_metric(path, f"runs[{i}].paper[{j}].values", metric)
            if rep.table is None and rep.section is None:
                raise UsageError(f"{path}: runs[{i}].paper[{j}] needs a table or a section.")
    labels = [r.label for r in data.runs]
    if len(set(labels)) != len(labels):
        raise UsageError(f"{path}: run labels must be unique, got {labels}.")
    if not data.seeds or any(not 0 <= s <= MAX_SEED for s in data.seeds):
        raise UsageError(f"{path}: seeds must be integers in [0, 2**32); got {data.seeds}.")
    _check_bounds(path, "valid_if", data.valid_if)
    # Per-cell resources (invbench.executors); the command line overrides them.
    cell_resources = {k: v for k, v in dataclasses.asdict(data.resources).items() if v is not None}
    try:
        data.resources.validate()
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None
    for i, c in enumerate(data.claims):
        _check_claim(path, f"claims[{i}]", c, labels)
    return Suite(
        name=path.stem,
        path=path,
        description=data.description,
        seeds=data.seeds,
        runs=data.runs,
        metrics=data.table.metrics,
        claims=data.claims,
        notes=data.notes,
        valid_if=data.valid_if,
        resources=cell_resources,
    )


def _check_metric(path: Path, where: str, metric: str) -> None:
    """A claim or a bound on a metric no run reports would read "not measured" forever."""
    if metric not in METRICS:  # the registry knows qualified names (fid_rand@N=100) too
        close = difflib.get_close_matches(metric, [m.name for m in METRICS.specs()], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"{path}: {where}: unknown metric '{metric}'.{hint}")


def _check_bounds(path: Path, where: str, bounds: dict[str, Bound]) -> None:
    for metric, b in bounds.items():
        _check_metric(path, f"{where}.{metric}", metric)
        if b.at_least is None and b.at_most is None:
            raise UsageError(f"{path}: {where}.{metric} needs at_least and/or at_most.")
        if b.at_least is not None and b.at_most is not None and b.at_least > b.at_most:
            raise UsageError(f"{path}: {where}.{metric}: at_least is above at_most.")


def _check_claim(path: Path, where: str, c: Claim, labels: list[str]) -> None:
    """A claim is either a pair (better, worse, factor, paired) or a bound (row, at_least,
    at_most), e.g. InvGAN's fid_rand within 1.5x of a plain GAN's, every class >= 4%."""
    _check_metric(path, where, c.metric)
    pair = (
        any(v is not None for v in (c.better, c.worse, c.paired, c.worse_metric)) or c.factor != 1
    )
    bound = c.row is not None or c.at_least is not None or c.at_most is not None
    if pair and bound:
        raise UsageError(
            f"{path}: {where} is either a pair (better, worse, factor, paired, worse_metric) or a bound "
            "(row, at_least, at_most), not both."
        )
    if bound:
        sides = {"row": c.row}
        if c.row is None or (c.at_least is None and c.at_most is None):
            raise UsageError(f"{path}: {where}: a bound claim needs row and at_least / at_most.")
        if c.at_least is not None and c.at_most is not None and c.at_least > c.at_most:
            raise UsageError(f"{path}: {where}: at_least is above at_most: it can never hold.")
    else:
        sides = {"better": c.better, "worse": c.worse}
        if c.better is None or c.worse is None:
            raise UsageError(
                f"{path}: {where} needs better, worse and metric (or row with at_least / at_most)."
            )
        if c.better == c.worse and c.worse_metric in (None, c.metric):
            raise UsageError(f"{path}: {where} compares '{c.better}' with itself.")
        if c.worse_metric is not None:
            _check_metric(path, f"{where}.worse_metric", c.worse_metric)
            if higher_better(c.worse_metric) != higher_better(c.metric):
                raise UsageError(
                    f"{path}: {where}: metric '{c.metric}' and worse_metric '{c.worse_metric}' "
                    "point in opposite directions (one higher-is-better, one lower-is-better); "
                    "compare two metrics of the same direction."
                )
    for side, label in sides.items():
        if label not in labels:
            raise UsageError(
                f"{path}: {where}: {side}={label!r} is not a run label; labels: {labels}."
            )
    if c.factor <= 0:
        raise UsageError(f"{path}: {where}: factor must be positive, got {c.factor!r}.")


def _spec(run: SuiteRun, seed: int, out: Path, device: str):
    from invbench.runner import RunSpec

    return RunSpec(
        method=run.method,
        dataset=run.dataset,
        generator=run.generator,
        sets=[s.replace("{seed}", str(seed)) for s in run.sets],  # "generator.seed={seed}"
        seed=seed,
        device=device,
        out=out,
    )


def cells(suite: Suite, out: Path, device: str = "cpu"):
    """Every (run entry, seed) with its record path; resolving validates the whole grid first."""
    from invbench.runner import record_name, resolve

    out_cells = []
    for run in suite.runs:
        for seed in suite.seeds:
            spec = _spec(run, seed, out, device)
            res = resolve(spec)
            chash = res.hash()
            out_cells.append((run, seed, spec, out / f"{record_name(res, chash)}.json"))
    return out_cells


def select(todo: list, only: str | None) -> list:
    """The cells whose run label matches the shell pattern ``only`` (all when None), e.g.
    ``--only '*dcgan*'``: a grid split between machines, or its cheap half first."""
    if only is None:
        return todo
    picked = [c for c in todo if fnmatch.fnmatchcase(c[0].label, only)]
    if not picked:
        labels = ", ".join(dict.fromkeys(c[0].label for c in todo))
        raise UsageError(f"--only {only!r} matches no run label; the labels are: {labels}.")
    return picked


def run_suite(
    suite: Suite,
    out: Path,
    device: str = "cpu",
    only: str | None = None,
    executor: str = "local",
    resources: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """Run the missing cells (of those ``only`` selects) on ``executor`` (local[:N], ray,
    slurm: invbench.executors) with the suite's resources overridden by ``resources``; return
    (run now, already done). A cell is done when its record is valid; an invalid one is
    computed again."""
    from invbench import executors

    ex = executors.parse(executor)
    res = executors.resources(suite.resources, resources)
    preflight.check_run(out, "--results")  # before the first cell trains anything
    todo = [
        executors.Cell(e.label, s, spec, p)
        for e, s, spec, p in select(cells(suite, out, device), only)
    ]
    log(f"suite {suite.name}: {len(todo)} cells on --executor {ex}")
    report = executors.run(todo, ex, res)
    return report.ran, report.skipped


def read_record(path: Path) -> Record | None:
    """A cell's record, or None when it is absent or not a valid record (truncated, not UTF-8,
    not a record: ``Record.read`` says which). Such a cell counts as not measured; the table
    that shows it warns about the file, or stops for the gate (``load_records``)."""
    if not path.is_file():
        return None
    try:
        return Record.read(path)
    except InvalidRecord:
        return None


# -- verdicts --------------------------------------------------------------------------------------
HELD, NOT_HELD, INCONCLUSIVE, INVALID = "HELD", "DID NOT HOLD", "INCONCLUSIVE", "INVALID"
NOT_MEASURED = "NOT MEASURED"


@dataclass
class Row:
    """One run entry's records, by seed."""

    label: str
    records: dict[int, Record]

    def values(self, metric: str) -> dict[int, float]:
        """Each seed's value of ``metric`` (a record holds finite numbers or null: a null, an
        unavailable metric, is left out)."""
        out = {}
        for seed, rec in self.records.items():
            v = rec.metrics.get(metric)
            if v is not None:
                out[seed] = float(v)
        return out

    def model(self, seed: int) -> str | None:
        """The cache key of the model this row's cell of ``seed`` inverts (``model_key``: the zoo
        generator, or what a method that owns its generator trained); records written before
        it was recorded name only their zoo generator."""
        prov = self.records[seed].provenance
        key = prov.get("model_key") or prov.get("generator_key")
        return str(key) if key else None


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    detail: str

    def line(self) -> str:
        return f"{self.claim.text or self.claim.metric}: {self.verdict} ({self.detail})"


def rows(suite: Suite, out: Path) -> dict[str, Row]:
    """Every run entry's records over the suite's seeds (absent or invalid cells left out)."""
    out_rows = {r.label: Row(r.label, {}) for r in suite.runs}
    for entry, seed, _spec, path in cells(suite, out):
        rec = read_record(path)
        if rec is not None:
            out_rows[entry.label].records[seed] = rec
    return out_rows


def failures(suite: Suite, row: Row) -> list[str]:
    """Why ``row`` FAILED (e.g. a collapsed generator): each seed's metric outside the suite's
    ``valid_if`` bounds. Empty: the row is valid (a metric it lacks is not judged)."""
    out = []
    for metric, bound in suite.validity(row.label).items():
        for seed, v in sorted(row.values(metric).items()):
            if not bound.holds(v):
                out.append(f"seed {seed}: {metric} {v:.4g}, valid {bound}")
    return out


def _mean_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (None for a single value)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, None
    return m, statistics.stdev(values) / math.sqrt(len(values))


def _decide(gap: float, se: float | None) -> str:
    """``gap`` > 0 is the claim's direction; beyond 2 s.e. either way is a verdict."""
    if se is None:
        return INCONCLUSIVE
    if gap > 2 * se:
        return HELD
    if gap < -2 * se:
        return NOT_HELD
    return INCONCLUSIVE


def _noise(verdict: str, gap: float, se: float | None, how: str) -> str:
    if se is None:
        return f"gap {gap:.4g}; a single seed: no noise estimate"
    rel = ">" if verdict != INCONCLUSIVE else "within"
    return f"gap {gap:.4g} {rel} 2 s.e. = {2 * se:.3g}, {how}"


def _pair(c: Claim, a: Row, b: Row) -> Verdict:
    """``a`` (better) vs ``b`` (worse). Lower is better: gap = factor * b - a; higher is
    better: gap = a - b / factor (factor 1: a plain ordering)."""
    mb_name = c.worse_metric or c.metric
    va, vb = a.values(c.metric), b.values(mb_name)
    if not va or not vb:
        missing = " and ".join(
            f"{m} of {r.label!r}" if mb_name != c.metric else repr(r.label)
            for r, v, m in ((a, va, c.metric), (b, vb, mb_name))
            if not v
        )
        what = "" if mb_name != c.metric else f"{c.metric} "
        return Verdict(c, NOT_MEASURED, f"{what}missing for {missing}")
    up = higher_better(c.metric)
    f = c.factor

    def gap_of(x: float, y: float) -> float:
        return x - y / f if up else f * y - x

    ma, mb = statistics.fmean(va.values()), statistics.fmean(vb.values())
    bound = f", bound {f:g}x" if f != 1.0 else ""
    arrow = "↑" if up else "↓"
    if mb_name == c.metric:
        nums = f"{c.metric} {arrow}: {a.label} {ma:.4g} vs {b.label} {mb:.4g}{bound}"
    else:
        nums = (
            f"{c.metric} of {a.label} {ma:.4g} vs {mb_name} of {b.label} {mb:.4g} ({arrow}){bound}"
        )
    common = sorted(va.keys() & vb.keys())
    shared = bool(common) and all(
        a.model(s) is not None and a.model(s) == b.model(s) for s in common
    )
    paired = c.paired if c.paired is not None else shared
    if paired:
        if set(va) != set(vb):
            return Verdict(c, INCONCLUSIVE, f"{nums}; paired, but the rows' seeds differ")
        gap, se = _mean_se([gap_of(va[s], vb[s]) for s in common])
        how = f"paired over {len(common)} seeds"
    else:
        gap = gap_of(ma, mb)
        _, sa = _mean_se(list(va.values()))
        _, sb = _mean_se(list(vb.values()))
        # s.e. of f * mean_b (lower is better) or mean_b / f (higher is better)
        scale = 1 / f if up else f
        se = None if sa is None or sb is None else math.hypot(sa, scale * sb)
        how = f"unpaired, {len(va)} and {len(vb)} seeds"
    verdict = _decide(gap, se)
    return Verdict(c, verdict, f"{nums}; {_noise(verdict, gap, se, how)}")


def _bound(c: Claim, r: Row) -> Verdict:
    v = r.values(c.metric)
    if not v:
        return Verdict(c, NOT_MEASURED, f"{c.metric} missing for {r.label!r}")
    m, se = _mean_se(list(v.values()))
    # the margin inside the range: positive when the mean lies within it
    gaps = [m - c.at_least] if c.at_least is not None else []
    gaps += [c.at_most - m] if c.at_most is not None else []
    gap = min(gaps)
    verdict = _decide(gap, se)
    bound = Bound(c.at_least, c.at_most)
    nums = f"{c.metric}: {r.label} {m:.4g}, bound {bound}"
    return Verdict(c, verdict, f"{nums}; {_noise(verdict, gap, se, f'{len(v)} seeds')}")


def judge(suite: Suite, claim: Claim, by_label: dict[str, Row]) -> Verdict:
    """The verdict of one claim from the rows' per-seed values (the module docstring's rule)."""
    labels = [claim.row] if claim.row is not None else [claim.better, claim.worse]
    for label in labels:
        row = by_label[str(label)]
        bad = failures(suite, row)
        # A claim about the validity bound itself (a bound claim on class_share_max) is judged.
        if bad and not (claim.row is not None and claim.metric in suite.validity(row.label)):
            return Verdict(claim, INVALID, f"row {row.label!r} FAILED: {'; '.join(bad)}")
    if claim.row is not None:
        return _bound(claim, by_label[claim.row])
    return _pair(claim, by_label[str(claim.better)], by_label[str(claim.worse)])


def verdicts(suite: Suite, out: Path) -> list[Verdict]:
    by_label = rows(suite, out)
    return [judge(suite, c, by_label) for c in suite.claims]


def report(suite: Suite, out: Path) -> list[str]:
    """The lines a table prints under itself: each FAILED row, then each claim's verdict."""
    by_label = rows(suite, out)
    lines = [
        f"FAILED — {label}: {'; '.join(bad)} (claims involving it are INVALID)"
        for label, row in by_label.items()
        if (bad := failures(suite, row))
    ]
    return lines + [f"Claim — {judge(suite, c, by_label).line()}" for c in suite.claims]
