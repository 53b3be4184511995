"""Suites: a grid of runs declared in ``configs/suites/<name>.yaml``, run resumably, rendered.

    description: "..."
    seeds: [0, 1, 2]
    runs:                      # each entry is one `invbench run` without --seed
      - {label: "encoder init", method: lia, dataset: digits, sets: ["refine_init=encoder"]}
      - {label: "MSE optimisation", method: creswell, generator: dcgan, sets: ["loss=l2"]}
    table:
      metrics: [mse, ssim, psnr, fid_test_rec]
    claims:                    # a paper's finding, checked against the measured means
      - {text: "encoder init beats random init", better: "encoder init", worse: "random init", metric: mse}

A run entry may carry the numbers a paper reports for its row, shown beside the measured ones
(``paper: {...}`` or a list of them, one per source or set of differing settings)::

      paper: {paper: "Zhu et al., LIA", table: "4", section: "7.2",
              differs: ["dataset: FFHQ 1024 px, here digits 28 px"], values: {mse: 0.019}}

A run's seed seeds the method (initial latents, a method's own training). A zoo generator keeps
its own ``generator.seed`` unless the entry ties it to the run: ``sets: ["generator.seed={seed}"]``
(``{seed}`` in any set is the cell's seed), so the spread over seeds includes the generator's.

A cell (run entry x seed) whose record already exists (same configuration hash) is skipped, so a
killed suite resumes where it stopped; records are written atomically, so no cell is half done.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from invbench.config import load_yaml, stable_hash
from invbench.errors import UsageError
from invbench.metrics import higher_better
from invbench.progress import log

SUITE_KEYS = {"description", "seeds", "runs", "table", "claims", "notes"}
RUN_KEYS = {"label", "method", "dataset", "generator", "sets", "paper"}
PAPER_KEYS = {"paper", "table", "page", "section", "differs", "values"}


@dataclass(frozen=True)
class PaperValue:
    """A number a paper reports for a suite row: ``cite`` (paper, table, page or section) and
    ``differs``, the settings of the paper that are not ours (resolution, dataset, features)."""

    value: float
    cite: str
    differs: tuple[str, ...] = ()


@dataclass
class SuiteRun:
    label: str
    method: str
    dataset: str = "digits"
    generator: str | None = None
    sets: list[str] = field(default_factory=list)


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    seeds: list[int]
    runs: list[SuiteRun]
    metrics: list[str] | None
    claims: list[dict[str, Any]]
    notes: list[str]
    paper: dict[str, dict[str, PaperValue]] = field(
        default_factory=dict
    )  # label -> metric -> value

    def paper_numbers(self) -> dict[str, dict[str, PaperValue]]:
        return self.paper


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
        import difflib

        known = names()
        close = difflib.get_close_matches(name_or_path, known, n=1, cutoff=0.4)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown suite '{name_or_path}'.{hint} Known suites: {', '.join(known)}.")
    data = load_yaml(path)
    bad = set(data) - SUITE_KEYS
    if bad:
        raise UsageError(
            f"{path}: unknown key(s) {', '.join(sorted(bad))}; valid: {', '.join(sorted(SUITE_KEYS))}."
        )
    runs_raw = data.get("runs")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise UsageError(f"{path}: 'runs' must be a non-empty list of run entries.")
    runs = []
    paper: dict[str, dict[str, PaperValue]] = {}
    for i, entry in enumerate(runs_raw):
        if not isinstance(entry, dict) or "method" not in entry:
            raise UsageError(f"{path}: runs[{i}] must be a mapping with at least 'method'.")
        _reject_unknown(path, f"runs[{i}]", entry, RUN_KEYS)
        paper[str(entry.get("label") or entry["method"])] = _paper(path, i, entry.get("paper"))
        sets = entry.get("sets") or []
        if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
            raise UsageError(f"{path}: runs[{i}].sets must be a list of 'key=value' strings.")
        runs.append(
            SuiteRun(
                label=str(entry.get("label") or entry["method"]),
                method=str(entry["method"]),
                dataset=str(entry.get("dataset", "digits")),
                generator=entry.get("generator"),
                sets=list(sets),
            )
        )
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise UsageError(f"{path}: run labels must be unique, got {labels}.")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise UsageError(f"{path}: 'seeds' must be a list of integers.")
    if any(not 0 <= s < 2**32 for s in seeds):
        raise UsageError(f"{path}: seeds must lie in [0, 2**32); got {seeds}.")
    claims = list(data.get("claims") or [])
    for c in claims:
        _check_claim(path, c, labels)
    table = data.get("table") or {}
    return Suite(
        name=path.stem,
        path=path,
        description=str(data.get("description", "")),
        seeds=seeds,
        runs=runs,
        metrics=table.get("metrics"),
        claims=claims,
        notes=list(data.get("notes") or []),
        paper={k: v for k, v in paper.items() if v},
    )


def _paper(path: Path, i: int, raw: Any) -> dict[str, PaperValue]:
    """A run entry's ``paper`` block(s) as metric -> PaperValue."""
    from invbench.metrics import METRICS, base_name

    out: dict[str, PaperValue] = {}
    for block in raw if isinstance(raw, list) else [raw] if raw else []:
        where = f"runs[{i}].paper"
        if not isinstance(block, dict) or "paper" not in block or "values" not in block:
            raise UsageError(f"{path}: {where} needs 'paper' (who), 'values' and 'table' or "
                             f"'section'; got {block!r}.")  # fmt: skip
        _reject_unknown(path, where, block, PAPER_KEYS)
        cite = ", ".join(
            [str(block["paper"])]
            + [f"{k.capitalize()} {block[k]}" for k in ("table", "section") if block.get(k)]
            + ([f"p. {block['page']}"] if block.get("page") else [])
        )
        differs = block.get("differs") or []
        if not isinstance(differs, list) or not all(isinstance(d, str) for d in differs):
            raise UsageError(f"{path}: {where}.differs must be a list of strings.")
        values = block["values"]
        if not isinstance(values, dict):
            raise UsageError(f"{path}: {where}.values must map metric names to numbers.")
        for metric, v in values.items():
            if base_name(str(metric)) not in METRICS:
                raise UsageError(f"{path}: {where}.values: '{metric}' is not a metric.")
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise UsageError(f"{path}: {where}.values.{metric} must be a number, got {v!r}.")
            out[str(metric)] = PaperValue(float(v), cite, tuple(differs))
    return out


def _reject_unknown(path: Path, where: str, entry: dict[str, Any], valid: set[str]) -> None:
    extra = set(entry) - valid
    if extra:
        raise UsageError(
            f"{path}: {where} has unknown key(s) {', '.join(sorted(extra))}; "
            f"valid: {', '.join(sorted(valid))}."
        )


CLAIM_KEYS = {"text", "better", "worse", "metric", "factor", "row", "at_least", "at_most"}


def _check_claim(path: Path, claim: Any, labels: list[str]) -> None:
    """A claim compares two rows (``better`` than ``worse`` on ``metric``; ``factor`` relaxes it
    to "no worse than factor x", e.g. InvGAN's fid_rand within 1.5x of a plain GAN's) or bounds
    one ``row``'s metric by ``at_least`` / ``at_most`` (e.g. every class >= 4% of samples)."""
    if not isinstance(claim, dict) or "metric" not in claim:
        raise UsageError(f"{path}: each claim needs a metric; got {claim!r}.")
    _reject_unknown(path, "a claim", claim, CLAIM_KEYS)
    pair, bound = {"better", "worse", "factor"} & claim.keys(), {"row", "at_least", "at_most"}
    bound &= claim.keys()
    if pair and bound:
        raise UsageError(
            f"{path}: a claim is either a pair (better, worse, factor) or a bound (row, at_least, "
            f"at_most), not both; got {claim!r}."
        )
    if bound:
        sides = ("row",)
        if "row" not in claim or not {"at_least", "at_most"} & claim.keys():
            raise UsageError(f"{path}: a bound claim needs row and at_least and/or at_most.")
    else:
        sides = ("better", "worse")
        if not {"better", "worse"} <= claim.keys():
            raise UsageError(
                f"{path}: a claim needs better, worse and metric (or row with at_least / "
                f"at_most); got {claim!r}."
            )
    for side in sides:
        if claim[side] not in labels:
            raise UsageError(
                f"{path}: claim {side}={claim[side]!r} is not a run label; labels: {labels}."
            )
    for key in ("factor", "at_least", "at_most"):
        v = claim.get(key)
        if v is not None and (
            not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)
        ):
            raise UsageError(f"{path}: claim {key} must be a finite number, got {v!r}.")
    if claim.get("factor", 1.0) <= 0:
        raise UsageError(f"{path}: claim factor must be positive, got {claim['factor']!r}.")
    if claim.get("at_least", -math.inf) > claim.get("at_most", math.inf):
        raise UsageError(f"{path}: claim at_least is above at_most: it can never hold.")


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
    suite: Suite, out: Path, device: str = "cpu", only: str | None = None
) -> tuple[int, int]:
    """Run the missing cells (of those ``only`` selects); return (run now, already done)."""
    from invbench.record import is_valid
    from invbench.runner import run

    todo = select(cells(suite, out, device), only)
    valid = {path for *_, path in todo if is_valid(path)}  # an invalid record is recomputed
    done = len(valid)
    ran = 0
    for i, (entry, seed, spec, path) in enumerate(todo, 1):
        if path in valid:
            continue
        if path.exists():
            log(f"suite {suite.name}: {path.name} is not a valid record; computing it again")
        log(f"suite {suite.name}: cell {i}/{len(todo)} — {entry.label}, seed {seed}")
        run(spec)
        ran += 1
    return ran, done


def labels_by_setting(suite: Suite, out: Path) -> dict[str, str]:
    """Map each cell's setting id (configuration minus seed) to its run label."""
    from invbench.record import InvalidRecord, Record

    mapping = {}
    for entry, _seed, _spec, path in cells(suite, out):
        if path.is_file():
            try:
                mapping[Record.read(path).setting] = entry.label
            except InvalidRecord:
                continue  # load_records warns about it (or stops, for the gate)
    return mapping


def evaluate_claims(suite: Suite, means: dict[str, dict[str, float]]) -> list[str]:
    """One line per claim: held / did not hold / not measured, with the numbers."""
    lines = []
    for c in suite.claims:
        text, metric = c.get("text", ""), c.get("metric", "")
        if "row" in c:
            lines.append(_bound_claim(c, means))
            continue
        better, worse = c.get("better"), c.get("worse")
        a = _measured(means.get(better, {}).get(metric))
        b = _measured(means.get(worse, {}).get(metric))
        if a is None or b is None:
            lines.append(f"{text}: not measured ({metric} missing for {better!r} or {worse!r})")
            continue
        factor = float(c.get("factor", 1.0))
        if factor == 1.0:
            held = a > b if higher_better(metric) else a < b
            bound = ""
        else:  # "no worse than factor x": a <= factor * b (lower is better), a >= b / factor
            held = a >= b / factor if higher_better(metric) else a <= factor * b
            bound = f", bound {factor:g}x"
        verdict = "HELD" if held else "DID NOT HOLD"
        line = f"{text}: {verdict} ({metric}: {better} {a:.4g} vs {worse} {b:.4g}{bound})"
        if factor == 1.0 and _indistinct(means.get(better, {}), means.get(worse, {}), metric):
            line += "; the gap is within 2 standard errors of the seed spread: not distinguishable"
        lines.append(line)
    return lines


def _measured(v: Any) -> float | None:
    """A table cell as a number, or None where the metric is absent (pandas writes NaN for a
    metric one row lacks and another has)."""
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _indistinct(ra: dict[str, Any], rb: dict[str, Any], metric: str) -> bool:
    """|mean_a - mean_b| < 2 sqrt(s_a^2/n_a + s_b^2/n_b) (both rows over >= 2 seeds)."""
    try:
        sa, sb = float(ra[f"{metric}_std"]), float(rb[f"{metric}_std"])
        na, nb = int(ra["seeds"]), int(rb["seeds"])
    except (KeyError, TypeError, ValueError):
        return False
    if na < 2 or nb < 2 or not (math.isfinite(sa) and math.isfinite(sb)):
        return False
    return abs(float(ra[metric]) - float(rb[metric])) < 2 * math.sqrt(sa**2 / na + sb**2 / nb)


def _bound_claim(c: dict[str, Any], means: dict[str, dict[str, float]]) -> str:
    text, metric, row = c.get("text", ""), c["metric"], c["row"]
    v = _measured(means.get(row, {}).get(metric))
    if v is None:
        return f"{text}: not measured ({metric} missing for {row!r})"
    lo, hi = c.get("at_least"), c.get("at_most")
    held = (lo is None or v >= lo) and (hi is None or v <= hi)
    bounds = " and ".join(f"{op} {b:g}" for op, b in ((">=", lo), ("<=", hi)) if b is not None)
    verdict = "HELD" if held else "DID NOT HOLD"
    return f"{text}: {verdict} ({metric}: {row} {v:.4g}, bound {bounds})"


def suite_hash(suite: Suite) -> str:
    return stable_hash({"runs": [r.__dict__ for r in suite.runs], "seeds": suite.seeds})
