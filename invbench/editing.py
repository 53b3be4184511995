"""The editing benchmark: how well do an inverter's codes edit along a set of directions?

For the first ``n_test`` test images x: z* = invert(x); for each of the ``top`` directions n_k
and each step s of the grid, the edited image x_s = G(z* + s n_k) (``Directions.edit``). Scores:

- ``pixel_change`` (per unit step): mean |x_s - x_0| per pixel / |s| — does the edit do anything;
- ``class_change`` (per unit step): total variation between the domain classifier's class
  posteriors of x_s and x_0, / |s| — does it change what the classifier sees;
- ``fid_edit``: FID of every edited image (s != 0) vs the train split — do edits stay realistic
  (the run's feature network: Inception when found, else the dataset's LeNet; see the flavor);
- ``preservation``: the reconstruction G(z*) is a generator image whose native code z* is known.
  Invert it again (z**) and compare the same edit applied to both codes, d(G(z** + s n),
  G(z* + s n)), averaged over s != 0 (``preservation_0`` at s = 0): do inverted codes edit like
  native codes. d is LPIPS when its AlexNet is found, else the pixel MSE (named in the flavor);
- for ``interfacegan``: ``boundary_acc`` (the SVMs' validation accuracy), ``attr_slope`` (the
  target attribute's change per unit step, in its standard deviations over generator samples)
  and ``leakage`` = |slope of each conditioned (else every other) attribute| / |target slope|.

``invbench edit`` drives it; ``DigitAttributes`` scores images for ``interfacegan``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from invbench.config import MAX_BATCH, MAX_SAMPLES, bounded
from invbench.directions import Directions, LatentModel
from invbench.errors import UsageError
from invbench.inverter import Inverter, Latents
from invbench.progress import log

MEASURED = ("stroke_mass", "width", "height", "center_x", "center_y")


@dataclass
class EditConfig:
    """Every knob of the editing benchmark (``--set edit.KEY=VALUE``)."""

    n_test: int = bounded(64, ge=2, le=MAX_SAMPLES)  # test images inverted and edited
    # directions scored (the first ``top`` of the plugin's list)
    top: int = bounded(3, ge=1, le=1024)
    strip_rows: int = bounded(8, ge=1, le=1024)  # images in the PNG strip
    batch: int = bounded(256, ge=1, le=MAX_BATCH)
    feature_net: Literal["auto", "inception", "domain"] = "auto"  # for fid_edit
    weights_dir: str = ""

    def validate(self) -> None:
        if self.n_test < 2 or self.top < 1 or self.strip_rows < 1 or self.batch < 1:
            raise ValueError("n_test >= 2, top >= 1, strip_rows >= 1 and batch >= 1")


def parse_steps(text: str) -> list[float]:
    """``-3:3:7`` (start:stop:count, inclusive) or ``-2,0,2``."""
    try:
        if ":" in text:
            a, b, n = text.split(":")
            count = int(n)
            if count < 2:
                raise ValueError
            return [float(a) + (float(b) - float(a)) * i / (count - 1) for i in range(count)]
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(
            f"--steps '{text}': expected start:stop:count (e.g. -3:3:7) or a list (e.g. -2,0,2)."
        ) from None


# -- attributes ------------------------------------------------------------------------------------
class DigitAttributes:
    """Measured attributes of grey images plus the domain classifier's class log-probabilities.

    Ink p = (x + 1) / 2. stroke_mass = mean p; center_x / center_y = the ink's centre of mass in
    [0, 1] image coordinates; width / height = the ink's standard deviation along x / y.
    digit_c = log p(c | x) under the dataset's LeNet (``invbench.metrics.features``).
    """

    def __init__(self, classifier: Any | None = None, num_classes: int = 10) -> None:
        self.classifier = classifier
        digits = tuple(f"digit_{c}" for c in range(num_classes)) if classifier else ()
        self.names = MEASURED + digits

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.detach().float().cpu()
        p = ((x.mean(1) + 1) / 2).clamp(0, 1)  # [B, H, W]
        h, w = p.shape[-2:]
        mass = p.sum((1, 2)).clamp_min(1e-8)
        ys = (torch.arange(h, dtype=p.dtype) + 0.5) / h
        xs = (torch.arange(w, dtype=p.dtype) + 0.5) / w
        px, py = p.sum(1), p.sum(2)  # marginals over y, x
        cx, cy = (px * xs).sum(1) / mass, (py * ys).sum(1) / mass
        out = {
            "stroke_mass": p.mean((1, 2)),
            "center_x": cx,
            "center_y": cy,
            "width": ((px * (xs - cx[:, None]) ** 2).sum(1) / mass).sqrt(),
            "height": ((py * (ys - cy[:, None]) ** 2).sum(1) / mass).sqrt(),
        }
        if self.classifier is not None:
            with torch.no_grad():
                dev = next(self.classifier.parameters()).device
                logp = F.log_softmax(self.classifier.logits(images.to(dev)).float(), 1).cpu()
            out.update({f"digit_{c}": logp[:, c] for c in range(logp.shape[1])})
        return {k: v.double() for k, v in out.items()}

    def posteriors(self, images: torch.Tensor) -> torch.Tensor:
        assert self.classifier is not None
        with torch.no_grad():
            dev = next(self.classifier.parameters()).device
            return F.softmax(self.classifier.logits(images.to(dev)).float(), 1).cpu()


def model_for(inv: Inverter, attributes: DigitAttributes | None = None) -> LatentModel:
    """The generator behind ``inv`` as a directions plugin sees it, with attribute scores."""
    model = LatentModel.from_inverter(inv)
    model.attributes = attributes
    return model


# -- the benchmark ---------------------------------------------------------------------------------
def _decode(model: LatentModel, codes: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat(
        [model.decode(codes[i : i + batch]).cpu() for i in range(0, len(codes), batch)]
    )


def _invert(inv: Inverter, images: torch.Tensor, batch: int) -> Latents:
    from invbench.runner import invert_all

    return invert_all(inv, images.to(inv.device), batch)[0]


def edit_grid(
    model: LatentModel, d: Directions, codes: torch.Tensor, k: int, steps: list[float], batch: int
) -> torch.Tensor:
    """Images [S, B, C, H, W]: every code edited by every step along direction k."""
    return torch.stack([_decode(model, d.edit(codes, k, s), batch) for s in steps])


def save_strip(
    path: Path, originals: torch.Tensor, grid: torch.Tensor, steps: list[float], title: str = ""
) -> None:
    """Rows: images; columns: the original, then one edit per step, headed by its step value."""
    from invbench.plots import save_image_table, step_label

    rows = torch.cat([originals[None], grid]).transpose(0, 1)  # [B, 1 + S, C, H, W]
    cols = ["original", *(f"step {step_label(s)}" for s in steps)]
    save_image_table(path, rows, col_labels=cols, title=title)


def score(
    inv: Inverter,
    d: Directions,
    model: LatentModel,
    test: torch.Tensor,
    steps: list[float],
    cfg: EditConfig,
    feature_net: Any,
    ref: Any,
    attrs: DigitAttributes,
    lpips: Any | None,
) -> dict[str, Any]:
    """The metrics of the module docstring for one inverter x directions pair."""
    from invbench.metrics.distribution import RunningStats, frechet_distance

    t0 = time.perf_counter()
    codes = _invert(inv, test, cfg.batch).tensor.to(inv.device)
    recon = _decode(model, codes, cfg.batch)
    native = _invert(inv, recon, cfg.batch).tensor.to(inv.device)  # re-inverted reconstructions
    if 0.0 not in steps:
        steps = sorted([*steps, 0.0])
    edited = RunningStats()  # fid_edit: every edited image (s != 0) vs the train split
    per_dir: list[dict[str, Any]] = []
    grids: list[torch.Tensor] = []
    target_attr = getattr(d, "normals", None) is not None
    for k in range(min(cfg.top, len(d.basis))):  # type: ignore[arg-type]
        grid = edit_grid(model, d, codes, k, steps, cfg.batch)  # [S, B, ...]
        grids.append(grid)
        again = edit_grid(model, d, native, k, steps, cfg.batch)
        x0 = grid[steps.index(0.0)]
        p0 = attrs.posteriors(x0)
        row: dict[str, Any] = {"k": k, "pix": [], "cls": [], "pres": [], "pres0": None}
        for s, xs, ys in zip(steps, grid, again, strict=True):
            dist = lpips(xs, ys) if lpips is not None else (xs - ys).pow(2).flatten(1).mean(1)
            if s == 0:
                row["pres0"] = float(dist.mean())
                continue
            edited.update(torch.cat([feature_net.features(xs[i : i + cfg.batch]).cpu()
                                     for i in range(0, len(xs), cfg.batch)]))  # fmt: skip
            row["pix"].append(float((xs - x0).abs().mean()) / abs(s))
            tv = 0.5 * (attrs.posteriors(xs) - p0).abs().sum(1).mean()
            row["cls"].append(float(tv) / abs(s))
            row["pres"].append(float(dist.mean()))
        out = {
            "k": k,
            "pixel_change": _mean(row["pix"]),
            "class_change": _mean(row["cls"]),
            "preservation": _mean(row["pres"]),
            "preservation_0": row["pres0"],
        }
        if target_attr:
            out.update(_attribute_slopes(d, k, grid, steps, attrs))
        per_dir.append(out)
    metrics: dict[str, Any] = {
        name: _mean([p[name] for p in per_dir])
        for name in ("pixel_change", "class_change", "preservation", "preservation_0")
    }
    fid_ok = edited.n >= 2
    metrics["fid_edit"] = (
        frechet_distance(edited.mean(), edited.cov(), ref.mu, ref.sigma) if fid_ok else None
    )
    if target_attr:
        metrics["attr_slope"] = _mean([abs(p["attr_slope"]) for p in per_dir])
        leaks = [p["leakage"] for p in per_dir if p.get("leakage") is not None]
        metrics["leakage"] = _mean(leaks) if leaks else None
        bounds = d.info.get("boundaries", {})
        names = d.info.get("attributes", [])[: len(per_dir)]
        metrics["boundary_acc"] = _mean([bounds[a]["validation_accuracy"] for a in names])
    flavors = {
        "fid_edit": f"{feature_net.flavor}/N={edited.n}/ref=train" if fid_ok else "",
        "preservation": f"{'lpips-' + lpips.flavor if lpips is not None else 'mse'}/native=G(z*)",
        "class_change": f"{getattr(attrs.classifier, 'flavor', 'classifier')}/total-variation",
    }
    return {
        "metrics": {k: (None if v is None else round(float(v), 6)) for k, v in metrics.items()},
        "metric_flavors": flavors,
        "per_direction": [{k: _round(v) for k, v in p.items()} for p in per_dir],
        "steps": steps,
        "n_test": len(test),
        "seconds": round(time.perf_counter() - t0, 2),
        "_grids": grids,
    }


def _attribute_slopes(
    d: Directions, k: int, grid: torch.Tensor, steps: list[float], attrs: DigitAttributes
) -> dict[str, Any]:
    """Per-unit-step change of the target attribute and leakage into the others (std units)."""
    names = d.info["attributes"]
    target = names[k]
    others = [c for c in d.info.get("condition", []) if c != target] or [
        a for a in names if a != target
    ]
    std = d.score_std  # type: ignore[attr-defined]
    scores = [attrs(x) for x in grid]
    i0 = steps.index(0.0)

    def slope(a: str) -> float:
        vals = [
            float((sc[a] - scores[i0][a]).mean()) / s / max(std[a], 1e-12)
            for s, sc in zip(steps, scores, strict=True)
            if s != 0
        ]
        return _mean(vals)

    t = slope(target)
    leak = [abs(slope(b)) / max(abs(t), 1e-12) for b in others if b in std]
    return {"attribute": target, "attr_slope": t, "leakage": _mean(leak) if leak else None}


def _mean(v: list[float]) -> float:
    v = [x for x in v if x is not None and math.isfinite(x)]
    return sum(v) / len(v) if v else float("nan")


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


# -- driving it from the command line -------------------------------------------------------------
def prepare(
    method: str, dataset: str, generator: str | None, sets: list[str], seed: int, device: str
) -> Any:
    """The fitted inverter with its data: ``invbench.runner.prepare`` (stage 1 of a run)."""
    from invbench.runner import RunSpec
    from invbench.runner import prepare as prepare_run

    return prepare_run(RunSpec(method, dataset, generator, sets, seed, device, out=None))


def split_sets(items: list[str]) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(run --set items, directions.KEY items, edit.KEY items)."""
    run, dirs, edit = [], {}, {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key.startswith("directions."):
            dirs[key[len("directions.") :]] = value
        elif sep and key.startswith("edit."):
            edit[key[len("edit.") :]] = value
        else:
            run.append(item)
    return run, dirs, edit


def run_edit(
    methods: list[str],
    directions: list[str],
    k: int,
    steps: list[float],
    dataset: str = "digits",
    generator: str | None = None,
    sets: list[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: Path = Path("results/editing"),
) -> list[dict[str, Any]]:
    """Every method x directions pair: scores (JSON) and a strip (PNG) under ``out``; then the
    table ``editing.md`` of every pair recorded under ``out`` (when there are several)."""
    from invbench import artifacts, preflight
    from invbench.config import as_dict, build, config_file, load_yaml, stable_hash
    from invbench.device import select
    from invbench.metrics.features import domain_network, feature_network
    from invbench.metrics.perceptual import Unavailable, load_lpips
    from invbench.metrics.reference import reference
    from invbench.registry import DIRECTIONS
    from invbench.runner import where_measured

    run_sets, dir_sets, edit_sets = split_sets(sets or [])
    ecfg = build(EditConfig, ("--set edit.", edit_sets))
    classes = [DIRECTIONS.get(n) for n in directions]  # fail early on a bad name
    select(device)  # and on a device that is not there, before anything is written
    preflight.check_run(out)  # cache and --out writable, with room, before any training
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for method in methods:
        gen = None if _owns(method) else generator
        prep = prepare(method, dataset, gen, run_sets, seed, device)
        test = prep.splits.take("test", ecfg.n_test)
        net = feature_network(
            prep.splits, prep.data_fp, ecfg.feature_net, ecfg.weights_dir or None, prep.device
        )
        train = prep.splits.loader("train", 500) if prep.splits.lazy else prep.splits.train
        ref = reference(net, train, "train", prep.data_fp)
        attrs = DigitAttributes(domain_network(prep.splits, prep.data_fp, prep.device))
        try:
            lp = load_lpips(prep.device, ecfg.weights_dir or None)
        except Unavailable as e:
            log(f"{e}; preservation uses the pixel MSE")
            lp = None
        model = model_for(prep.inverter, attrs)
        for name, cls in zip(directions, classes, strict=True):
            layers = [("--set directions.", dir_sets)]
            path = config_file("direction", name)
            if path is not None:
                layers.insert(0, (str(path), load_yaml(path)))
            dcfg = build(cls.Config, *layers)
            d = cls(dcfg, seed=seed)
            log(f"editing: {method} x {name}")
            d.directions(model)
            if not 0 <= k < len(d.basis):  # type: ignore[arg-type]
                raise UsageError(f"--k {k}: '{name}' found {len(d.basis)} directions.")  # type: ignore[arg-type]
            ecfg_k = EditConfig(**{**as_dict(ecfg), "top": max(ecfg.top, k + 1)})
            result = score(prep.inverter, d, model, test, steps, ecfg_k, net, ref, attrs, lp)
            grids = result.pop("_grids")
            stem = f"{method}__{name}__{dataset}__s{seed}"
            rows = min(ecfg.strip_rows, len(test))
            save_strip(
                out / f"{stem}__k{k}.png", test[:rows], grids[k][:, :rows], result["steps"],
                f"{method} ({model.space}) x {name}, direction k={k}, {dataset}, seed {seed}",
            )  # fmt: skip
            record = {
                "method": method,
                "directions": name,
                "dataset": dataset,
                "generator": prep.generator or "own",
                "space": model.space,
                "k": k,
                **result,
                "strip": f"{stem}__k{k}.png",
                "directions_info": d.info,
                "inverter_flavor": prep.inverter.flavor(),
                "inverter_diagnostics": prep.inverter.diagnostics(),  # closed-form's residual
                "provenance": where_measured(prep),
                "config": {
                    "directions": {"name": name, **as_dict(dcfg)},
                    "edit": as_dict(ecfg),
                    "run_config_hash": prep.config_hash,
                    "run_sets": run_sets,
                    "seed": seed,
                },
            }
            record["config_hash"] = stable_hash(record["config"])
            artifacts.atomic_write_json(out / f"{stem}.json", record)
            records.append(record)
    everything = load_records(out)  # earlier commands' pairs in ``out`` join the table
    if len(everything) > 1:
        artifacts.atomic_write_text(out / "editing.md", table(everything))
    return records


def load_records(folder: Path) -> list[dict[str, Any]]:
    """The editing records under ``folder``, in a stable order (method, directions); a file that
    cannot be read is skipped with a warning naming it."""
    import sys

    recs = []
    for path in sorted(folder.glob("*.json")):
        try:
            rec = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            print(f"invbench: warning: skipping unreadable {path} ({e})", file=sys.stderr)
            continue
        if isinstance(rec, dict) and "directions" in rec and "per_direction" in rec:
            recs.append(rec)
    return sorted(recs, key=lambda r: (r["method"], r["directions"], _seed(r)))


def _seed(record: dict[str, Any]) -> int:
    return int(record.get("config", {}).get("seed", 0))


def _owns(method: str) -> bool:
    from invbench.registry import METHODS

    return bool(METHODS.get(method).owns_generator)


COLUMNS = (
    ("pixel_change", "pixel change/step ↑"),
    ("class_change", "class change/step ↑"),
    ("fid_edit", "FID edited ↓"),
    ("preservation", "edit gap ↓"),
    ("preservation_0", "edit gap at 0 ↓"),
    ("boundary_acc", "boundary val. acc ↑"),
    ("attr_slope", "attr. slope ↑"),
    ("leakage", "leakage ↓"),
)


def table(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per method x directions pair, the strips linked, claims measured."""

    def fmt(v: Any) -> str:
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

    cols = [c for c in COLUMNS if any(r["metrics"].get(c[0]) is not None for r in records)]
    head = ["method", "seed", "directions", "space"] + [c[1] for c in cols] + ["strip (k)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        sets = r.get("config", {}).get("run_sets") or []
        label = r["method"] + (f" ({', '.join(sets)})" if sets else "")  # reduced budgets show
        cells = [label, str(_seed(r)), r["directions"], r["space"]]
        cells += [fmt(r["metrics"].get(c[0])) for c in cols]
        cells.append(f"[k={r['k']}]({r['strip']})")
        lines.append("| " + " | ".join(cells) + " |")
    flavors = sorted({f"{k}: {v}" for r in records for k, v in r["metric_flavors"].items()})
    notes = [
        "",
        f"Steps {records[0]['steps']}; {records[0]['n_test']} test images; metrics averaged over "
        "the top directions (edit.top) and the non-zero steps. Flavors: " + "; ".join(flavors),
    ]
    notes += [f"- {c}" for c in claims(records)]
    notes.append(f"- {_ran_on(records)}")
    return "\n".join(lines + notes) + "\n"


def _ran_on(records: list[dict[str, Any]]) -> str:
    """The suites' "Ran on" line (``tables.provenance_note``) over the editing records; a record
    written before editing records carried their provenance shows as 'None'."""
    from types import SimpleNamespace

    from invbench.tables import provenance_note

    return provenance_note([SimpleNamespace(provenance=r.get("provenance", {})) for r in records])


def claims(records: list[dict[str, Any]]) -> list[str]:
    """'The SeFa top direction changes images more per unit step than a random unit direction',
    per method and dataset: the gap of each seed is SeFa's k=0 pixel change minus the mean over
    the random directions of the same seed (the same inverter and generator), and the verdict is
    the suites' rule (``invbench.suites``): HELD / DID NOT HOLD when the mean gap is beyond two
    standard errors over seeds, else INCONCLUSIVE (so is a single seed). Not a claim of the
    five seed papers: SeFa (Shen & Zhou, CVPR 2021) finds the directions that change G's output
    most, so it is stated as a sanity check of the directions, with the suites' verdicts."""
    from invbench.suites import _decide, _mean_se, _noise  # the one verdict rule

    gaps: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    by = {(r["method"], r["dataset"], r["directions"], _seed(r)): r for r in records}
    for (method, dataset, name, seed), r in sorted(by.items()):
        rnd = by.get((method, dataset, "random", seed))
        if name != "sefa" or rnd is None:
            continue
        top = r["per_direction"][0]["pixel_change"]
        base = _mean([p["pixel_change"] for p in rnd["per_direction"]])
        gaps.setdefault((method, dataset), []).append((seed, top, base))
    out = []
    for (method, dataset), rows in gaps.items():
        gap, se = _mean_se([top - base for _, top, base in rows])
        verdict = _decide(gap, se)
        seeds = ", ".join(str(s) for s, _, _ in rows)
        top_m, base_m = _mean([t for _, t, _ in rows]), _mean([b for _, _, b in rows])
        how = f"paired over seeds {seeds}"
        out.append(
            f"Claim — not a seed-paper claim (SeFa's directions as a sanity check): the SeFa top "
            f"direction changes images more per unit step than a random unit direction "
            f"({method}, {dataset}): {verdict} ({top_m:.4g} vs {base_m:.4g} mean |dx| per pixel "
            f"per step; {_noise(verdict, gap, se, how)})."
        )
    return out


def dumps(records: list[dict[str, Any]]) -> str:
    return json.dumps(records[0] if len(records) == 1 else records)
