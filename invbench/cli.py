"""The ``invbench`` command line.

    invbench ls [methods|datasets|generators|metrics|suites|directions]
    invbench run --method M --dataset D [--generator G] [--set key=value ...] [--seed S]
                 [--profile digits|paper]
                 [--device cpu|cuda|auto] [--out DIR] [--save-images] [--json] [--quiet]
    invbench eval-images --real DIR --fake DIR [--paired [--per-image FILE.csv]] [--json]
    invbench train-generator --generator G [--dataset D] [--set key=value ...] [--out DIR]
    invbench edit --method M --directions D [--k K] [--steps A:B:N]
    invbench suite run|show NAME [--only PATTERN] [--executor local[:N]|ray|slurm]
    invbench table [--results DIR] [--suite NAME] [--format csv|md|latex|json] [--metrics m1,m2]
                   [--columns compact|all]
    invbench report [--results DIR] [--suite NAME ...] --out DIR
    invbench plot --suite NAME --x X --y METRIC [--pareto] -o FILE.png
    invbench check --against leaderboards/NAME.json [--results DIR]
    invbench weights [list|check|fetch] [NAME ...] [--json]

Exit codes: 0 ok, 1 a regression or failed check, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from invbench.config import MAX_WIDTH, arg_number, edit_steps_arg
from invbench.errors import InvBenchError, UsageError

EPILOG = """examples:
  invbench run --method creswell --dataset digits
  invbench run --method creswell --dataset digits --set steps=100 --set loss=l2 --json
  invbench run --method creswell --generator dcgan --set generator.z_dim=64
  invbench table --results results --format latex

--set key=value overrides any hyper-parameter. An unprefixed key goes to the first component
that declares it, in the order method, eval, dataset, generator; prefix it to choose:
--set generator.steps=500, --set eval.n_test=100, --set dataset.resolution=64.
`invbench ls methods` lists methods with their hyper-parameters and defaults.
"""

DEVICE_HELP = "cpu (default), cuda[:N], or auto (the first GPU if one is visible)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"invbench: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="invbench",
        description="invbench: a unified benchmark suite for GAN inversion.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    ls = sub.add_parser(
        "ls", help="list methods, datasets, generators, metrics, suites, directions or leaderboards"
    )
    ls.add_argument(
        "what",
        nargs="?",
        default="methods",
        choices=["methods", "datasets", "generators", "metrics", "suites", "directions",
                 "leaderboards"],
    )  # fmt: skip
    ls.add_argument(
        "--md", action="store_true", help="metrics, leaderboards: as the README's Markdown table"
    )
    ls.add_argument(
        "--dir", type=Path, default=Path("leaderboards"), help="leaderboards: the tables' folder"
    )

    r = sub.add_parser(
        "run",
        help="run one method on one dataset and print its leaderboard row",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--method", "-m", required=True, help="inversion method (invbench ls methods)")
    r.add_argument("--dataset", "-d", default="digits", help="dataset (default: digits)")
    r.add_argument(
        "--generator", "-g", default=None, help="generator from the zoo (default: dcgan)"
    )
    r.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyper-parameter (repeatable); prefix with method./dataset./generator./eval. if ambiguous",
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--profile",
        default=None,
        help="scale profile: digits or paper (the papers' architectures and schedules); "
        "default: the dataset's scale (ffhq, celeba, lsun: paper)",
    )
    r.add_argument("--device", default="cpu", help=DEVICE_HELP)
    r.add_argument("--out", type=Path, default=Path("results"), help="results directory")
    r.add_argument("--json", action="store_true", help="print exactly one JSON record on stdout")
    r.add_argument(
        "--save-images", action="store_true", help="also write every reconstruction as a PNG"
    )
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars or logs")

    e = sub.add_parser(
        "eval-images",
        help="metrics between two image folders (the benchmark's metric code)",
        description="FID/KID, SWD and, with --paired, mse/mae/psnr/ssim/lpips between the images "
        "of two folders (any format Pillow reads: PNG, JPEG, WebP, ...). Images must share one "
        "size; grey is repeated to RGB when the other side is colour. Without Inception-v3 "
        "weights, --dataset NAME selects that dataset's own feature network for FID/KID.",
    )
    e.add_argument("--real", type=Path, required=True, help="folder of reference images")
    e.add_argument("--fake", type=Path, required=True, help="folder of images to score")
    e.add_argument("--paired", action="store_true", help="match files by name; per-image metrics")
    e.add_argument(
        "--per-image", type=Path, default=None, metavar="FILE.csv",
        help="with --paired: write every image's values to this CSV",
    )  # fmt: skip
    e.add_argument("--dataset", default=None, help="feature network of this dataset for FID/KID")
    e.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="an eval setting, e.g. --set fid_small_n=100 --set feature_net=domain",
    )  # fmt: skip
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu", help=DEVICE_HELP)
    e.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")

    t = sub.add_parser("table", help="render results as CSV, Markdown, LaTeX or a gate reference")
    t.add_argument(
        "--results", type=Path, default=None, help="default: results/ (or results/suites/NAME)"
    )
    t.add_argument("--suite", default=None, help="label rows and check claims as suite NAME does")
    t.add_argument(
        "--format",
        default="md",
        choices=["csv", "md", "latex", "json"],
        help="json = the reference `invbench check` compares against",
    )
    t.add_argument("--metrics", default=None, help="comma-separated metric names to show")
    t.add_argument(
        "--columns",
        default="compact",
        choices=["compact", "all"],
        help="md/latex: the paper's compact columns (default) or every metric (CSV keeps all)",
    )
    t.add_argument("--title", default=None)
    t.add_argument("--note", action="append", default=[], help="a footnote line (repeatable)")
    t.add_argument("--output", "-o", type=Path, default=None, help="write to a file (atomically)")

    rp = sub.add_parser(
        "report",
        help="a static HTML site of the results (opens from disk: no server, no network)",
        description="One page per suite (sortable leaderboard, claims, Pareto and dimension "
        "plots) and per run (labelled images, per-image scores). Example: invbench report "
        "--results leaderboards/records --out report && open report/index.html",
    )
    rp.add_argument(
        "--results", type=Path, default=Path("results"),
        help="records: DIR/suites/NAME or DIR/NAME per suite, loose runs in DIR (default results)",
    )  # fmt: skip
    rp.add_argument("--suite", action="append", default=None, help="only this suite (repeatable)")
    rp.add_argument("--out", type=Path, required=True, help="the site's folder (replaced)")

    pl = sub.add_parser(
        "plot",
        help="a PNG: a metric against a config value per series, or a quality/cost Pareto chart",
        description="Examples: invbench plot --suite latent-dim --x generator.z_dim --y mse "
        "--series method.name,eval.split -o dim.png; invbench plot --results results/methods "
        "--pareto --x sec_per_image --y mse --logx -o pareto.png. x and series take a metric "
        "or a dotted configuration path of the records; seeds of one setting are averaged.",
    )
    pl.add_argument("--results", type=Path, default=None, help="default: results/ (or the suite's)")
    pl.add_argument("--suite", default=None, help="take the records and row labels of suite NAME")
    pl.add_argument("--x", required=True, help="metric or config path, e.g. generator.z_dim")
    pl.add_argument("--y", required=True, help="metric, e.g. mse")
    pl.add_argument("--series", default="", help="comma-separated config paths, one line each")
    pl.add_argument("--pareto", action="store_true", help="scatter with the Pareto front")
    pl.add_argument("--logx", action="store_true", help="logarithmic x axis")
    pl.add_argument("--title", default=None)
    pl.add_argument("--output", "-o", type=Path, required=True, help="the PNG to write")

    su = sub.add_parser("suite", help="run a declared suite of runs (configs/suites/NAME.yaml)")
    su.add_argument("action", choices=["run", "show"])
    su.add_argument("name", help="suite name (invbench ls suites) or a path to a suite YAML")
    su.add_argument("--results", type=Path, default=None, help="default: results/suites/NAME")
    su.add_argument("--device", default="cpu", help=DEVICE_HELP)
    su.add_argument(
        "--only",
        default=None,
        metavar="PATTERN",
        help="only the runs whose label matches this shell pattern, e.g. '*dcgan*' (the table "
        "shows every finished cell; a claim on a missing row says 'not measured')",
    )
    su.add_argument(
        "--executor",
        default="local",
        help="where the cells run: local[:N] (a pool of N processes; default local:1, this "
        "process), ray[:ADDRESS] (Ray tasks), slurm (one Slurm array task per cell, submitit) "
        "or slurm:local (submitit's local executor)",
    )
    su.add_argument("--cpus", type=int, default=None, help="CPUs (threads) per cell")
    su.add_argument("--gpus", type=int, default=None, help="GPUs per cell (ray, slurm)")
    su.add_argument("--mem-gb", type=float, default=None, help="memory per cell (ray, slurm)")
    su.add_argument("--time-min", type=int, default=None, help="time limit per cell (slurm)")
    su.add_argument("--partition", default=None, help="Slurm partition")
    su.add_argument("--quiet", "-q", action="store_true")

    ck = sub.add_parser("check", help="regression gate: fresh results vs a committed reference")
    ck.add_argument("--against", type=Path, required=True, help="a leaderboards/*.json reference")
    ck.add_argument("--results", type=Path, default=None, help="default: results/suites/SUITE")

    tg = sub.add_parser(
        "train-generator", help="train a zoo generator (or find it cached); write a sample grid"
    )
    tg.add_argument("--generator", "-g", required=True, help="generator (invbench ls generators)")
    tg.add_argument("--dataset", "-d", default="digits", help="dataset (default: digits)")
    tg.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyper-parameter (repeatable); unprefixed keys go to the generator "
        "first, dataset.KEY to the dataset",
    )
    tg.add_argument("--device", default="cpu", help=DEVICE_HELP)
    tg.add_argument("--out", type=Path, default=Path("results/generators"), help="grid folder")
    tg.add_argument("--samples", type=arg_number(int, ge=1, le=4096), default=64,
                    help="images in the grid (default 64)")  # fmt: skip
    tg.add_argument("--quiet", "-q", action="store_true", help="no progress bars or logs")

    ed = sub.add_parser(
        "edit",
        help="edit inverted test images along latent directions; a PNG strip and the scores",
        description="Invert test images with each --method, edit the codes along each "
        "--directions plugin (sefa, steerability, ganspace, interfacegan, random) by every "
        "step, write a PNG strip per pair (rows: images, columns: original then steps) and the "
        "editing scores (invbench.editing); several pairs also give the table editing.md. "
        "--set directions.KEY=V and --set edit.KEY=V configure the plugin and the benchmark.",
    )
    ed.add_argument("--method", "-m", required=True, help="method(s), comma-separated")
    ed.add_argument("--directions", "-D", required=True, help="plugin(s), comma-separated")
    ed.add_argument("--k", type=arg_number(int, ge=0, le=MAX_WIDTH), default=0,
                    help="direction shown in the strip (default 0)")  # fmt: skip
    ed.add_argument("--steps", default="-3:3:7", type=edit_steps_arg,
                    help="start:stop:count or a list (default -3:3:7)")  # fmt: skip
    # Let `--steps -3:3:7` read as a value: argparse's own matcher knows only plain negatives.
    ed._negative_number_matcher = re.compile(r"^-\d[\d.:,-]*$")
    ed.add_argument("--dataset", "-d", default="digits")
    ed.add_argument("--generator", "-g", default=None, help="zoo generator (default: dcgan)")
    ed.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ed.add_argument("--seed", type=int, default=0)
    ed.add_argument("--device", default="cpu", help=DEVICE_HELP)
    ed.add_argument("--out", type=Path, default=Path("results/editing"))
    ed.add_argument("--json", action="store_true", help="print the score record(s) as JSON")
    ed.add_argument("--quiet", "-q", action="store_true", help="no progress bars or logs")

    w = sub.add_parser("weights", help="list, check or fetch pretrained weight files")
    w.add_argument("action", nargs="?", default="list", choices=["list", "check", "fetch"])
    w.add_argument("names", nargs="*", help="entries (default: all; fetch needs names)")
    w.add_argument("--json", action="store_true", help="print one JSON list on stdout")
    return p


def _cmd_ls(args: argparse.Namespace) -> int:
    from invbench.config import resolve
    from invbench.metrics import METRICS, markdown_table
    from invbench.registry import DATASETS, DIRECTIONS, GENERATORS, METHODS

    if args.what == "leaderboards":
        from invbench import summary

        if not args.dir.is_dir():
            raise UsageError(f"--dir {args.dir}: no such folder (the committed tables' folder).")
        print(summary.markdown(args.dir), end="")
        return 0
    if args.what == "metrics" and args.md:
        print(markdown_table(), end="")
        return 0
    if args.what == "metrics":
        for spec in METRICS.specs():
            where = f"{spec.needs}, {spec.track} track" if spec.track else spec.needs
            extra = "" if spec.gated else "; not gated"
            extra += f"; flavor: {spec.flavor}" if spec.flavor else ""
            print(f"{spec.name:16s} {spec.arrow}  {spec.meaning}")
            print(f"{'':19s}{spec.group}; {where}{extra}")
        return 0
    if args.what == "suites":
        from invbench import suites

        for name in suites.names():
            s = suites.load(name)
            print(f"{name}: {s.description} ({len(s.runs)} runs x {len(s.seeds)} seeds)")
        return 0
    reg = {"methods": METHODS, "datasets": DATASETS, "generators": GENERATORS}
    reg = {**reg, "directions": DIRECTIONS}[args.what]
    for name, cls in reg.items():
        doc = (cls.__module__ and sys.modules[cls.__module__].__doc__ or "").strip().splitlines()
        summary = doc[0] if doc else ""
        print(f"{name}: {summary}")
        if args.what == "generators":
            print(f"    latent spaces: {', '.join(cls.latent_spaces)}")
        kind = args.what[:-1]
        cfg = resolve(cls.Config, kind, name)
        print("    " + ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(cfg).items()))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from invbench import progress
    from invbench.runner import RunSpec, run
    from invbench.tables import render

    progress.set_quiet(args.quiet)
    spec = RunSpec(
        method=args.method,
        dataset=args.dataset,
        generator=args.generator,
        sets=args.sets,
        seed=args.seed,
        device=args.device,
        out=args.out,
        save_images=args.save_images,
        profile=args.profile,
    )
    record = run(spec)
    if args.json:
        print(json.dumps(record.to_dict(), allow_nan=False))
    else:
        print(render([record], "md"), end="")
        progress.log(f"record, per-image scores, latents and grid written under {args.out}/")
    return 0


def _suite_results(name: str, results: Path | None) -> Path:
    return results if results is not None else Path("results") / "suites" / name


def _render_table(args: argparse.Namespace) -> str:
    from invbench import suites
    from invbench.record import load_records
    from invbench.tables import provenance_note, render, render_suite

    names = args.metrics.split(",") if args.metrics else None
    if args.suite:
        suite = suites.load(args.suite)
        results = _suite_results(suite.name, args.results)
        return render_suite(suite, results, args.format, names, args.title, columns=args.columns)
    records = load_records(args.results or Path("results"))
    notes = [*args.note, provenance_note(records)]
    return render(records, args.format, names, title=args.title, notes=notes, columns=args.columns)


def _cmd_eval_images(args: argparse.Namespace) -> int:
    from invbench.metrics import METRICS
    from invbench.metrics.images import evaluate_folders

    result = evaluate_folders(
        args.real, args.fake, args.paired, args.dataset, args.sets, args.device, args.seed,
        per_image=args.per_image,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, allow_nan=False))
        return 0
    print(f"real: {result['real']} ({result['n_real']} images)")
    print(f"fake: {result['fake']} ({result['n_fake']} images)")
    for name, value in result["metrics"].items():
        spec = METRICS.find(name)
        text = "n/a" if value is None else (spec.format(value) if spec else f"{value:.4f}")
        ci = result["ci"].get(name)
        text += f"  [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        print(f"{name:15s} {text:28s} {result['metric_flavors'].get(name, '')}")
    if args.per_image:
        print(f"per-image values: {args.per_image}")
    for msg in dict.fromkeys(result["unavailable"].values()):
        print(f"note: {msg}", file=sys.stderr)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from invbench import progress
    from invbench.report import build

    index = build(args.results, args.out, args.suite)
    progress.log(f"report written: {index}")
    print(index)
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from invbench.artifacts import atomic_write_text
    from invbench.preflight import check_output_file

    if args.output:
        check_output_file(args.output)
    text = _render_table(args)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        print(text, end="")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from invbench import suites
    from invbench.plots import plot
    from invbench.record import load_records
    from invbench.tables import suite_records

    labels = None
    if args.suite:
        suite = suites.load(args.suite)
        records, labels = suite_records(suite, _suite_results(suite.name, args.results))
    else:
        records = load_records(args.results or Path("results"))
    series = [s for s in args.series.split(",") if s]
    path = plot(records, args.x, args.y, args.output, series, labels, args.pareto, args.logx,
                args.title)  # fmt: skip
    print(path)
    return 0


def _cmd_suite(args: argparse.Namespace) -> int:
    from invbench import progress, suites
    from invbench.tables import render_suite

    progress.set_quiet(args.quiet)
    suite = suites.load(args.name)
    results = _suite_results(suite.name, args.results)
    if args.action == "show":
        for run, seed, _spec, path in suites.select(
            suites.cells(suite, results, args.device), args.only
        ):
            state = "done" if path.is_file() else "todo"
            print(f"{state}  {run.label:30s} seed={seed}  {path.name}")
        return 0
    res = {"cpus": args.cpus, "gpus": args.gpus, "mem_gb": args.mem_gb}
    res.update(time_min=args.time_min, partition=args.partition)
    ran, done = suites.run_suite(suite, results, args.device, args.only, args.executor, res)
    progress.log(f"suite {suite.name}: {ran} cells run, {done} were already done ({results})")
    print(render_suite(suite, results, "md"), end="")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from invbench import check

    ok, text = check.gate(args.against, args.results)
    print(text)
    return 0 if ok else 1


def _cmd_train_generator(args: argparse.Namespace) -> int:
    from invbench import progress
    from invbench.device import select
    from invbench.generators.train import train_generator

    progress.set_quiet(args.quiet)
    device = str(select(args.device))  # the runner's choice and messages for --device
    info, png = train_generator(
        args.generator, args.dataset, args.sets, args.out, device, args.samples
    )
    how = "found in the cache" if info["cached"] else "trained"
    secs = info["train_seconds"]
    took = "training time unknown" if secs is None else f"{secs:.1f} s of training"
    print(f"{args.generator} on {args.dataset}: {how} (key {info['key']}, {took}); samples: {png}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    """list: status of every file; check: exit 1 if one is bad (or named and missing); fetch."""
    from invbench import weights as W
    from invbench.errors import UsageError

    entries = [W.get(n) for n in args.names] if args.names else list(W.ENTRIES)
    if args.action == "fetch":
        if not args.names:
            raise UsageError("invbench weights fetch needs names, e.g. `weights fetch alexnet`.")
        for e in entries:
            print(f"{e.name}: {W.fetch(e)}")
        return 0
    states = [W.status(e) for e in entries]
    if args.json:
        rows = [
            {"name": s.entry.name, "status": s.state, "path": str(s.path) if s.path else None,
             "detail": s.detail, "files": list(s.entry.files), "purpose": s.entry.purpose,
             "searched": [str(d) for d in s.searched]}
            for s in states
        ]  # fmt: skip
        print(json.dumps(rows, indent=2))
    else:
        print("\n".join(W.format_status(s) for s in states))
    failed = any(s.state == "bad" or (args.names and s.state == "missing") for s in states)
    return 1 if args.action == "check" and failed else 0


def _cmd_edit(args: argparse.Namespace) -> int:
    from invbench import editing, progress

    progress.set_quiet(args.quiet)
    records = editing.run_edit(
        [m for m in args.method.split(",") if m],
        [d for d in args.directions.split(",") if d],
        args.k,
        editing.parse_steps(args.steps),
        args.dataset,
        args.generator,
        args.sets,
        args.seed,
        args.device,
        args.out,
    )
    if args.json:
        print(editing.dumps(records))
    else:
        print(editing.table(records), end="")
        progress.log(f"scores and strips written under {args.out}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from invbench import __version__

        print(__version__)
        return 0
    if not args.cmd:
        parser.print_help()
        return 2
    handler = {
        "ls": _cmd_ls,
        "run": _cmd_run,
        "table": _cmd_table,
        "report": _cmd_report,
        "plot": _cmd_plot,
        "eval-images": _cmd_eval_images,
        "suite": _cmd_suite,
        "check": _cmd_check,
        "weights": _cmd_weights,
        "train-generator": _cmd_train_generator,
        "edit": _cmd_edit,
    }[args.cmd]
    try:
        return handler(args)
    except InvBenchError as e:
        print(f"invbench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("invbench: interrupted; nothing half-written was kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
