"""The ``invbench`` command line.

    invbench ls [methods|datasets|generators|metrics]
    invbench run --method M --dataset D [--generator G] [--set key=value ...] [--seed S]
                 [--device cpu|cuda] [--out DIR] [--json] [--quiet]
    invbench table [--results DIR] [--format csv|md|latex] [--metrics m1,m2]

Exit codes: 0 ok, 1 a regression or failed check, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from invbench.errors import InvBenchError

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

    ls = sub.add_parser("ls", help="list methods, datasets, generators or metrics")
    ls.add_argument(
        "what",
        nargs="?",
        default="methods",
        choices=["methods", "datasets", "generators", "metrics"],
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
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    r.add_argument("--out", type=Path, default=Path("results"), help="results directory")
    r.add_argument("--json", action="store_true", help="print exactly one JSON record on stdout")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars or logs")

    t = sub.add_parser("table", help="render results as CSV, Markdown or LaTeX")
    t.add_argument("--results", type=Path, default=Path("results"))
    t.add_argument("--format", default="md", choices=["csv", "md", "latex"])
    t.add_argument("--metrics", default=None, help="comma-separated metric names to show")
    t.add_argument("--title", default=None)
    t.add_argument("--output", "-o", type=Path, default=None, help="write to a file (atomically)")
    return p


def _cmd_ls(args: argparse.Namespace) -> int:
    from invbench.config import resolve
    from invbench.metrics import INFO
    from invbench.registry import DATASETS, GENERATORS, METHODS

    if args.what == "metrics":
        for name, info in INFO.items():
            print(f"{name:15s} {'↑' if info.higher_better else '↓'}  {info.meaning}")
        return 0
    reg = {"methods": METHODS, "datasets": DATASETS, "generators": GENERATORS}[args.what]
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
    )
    record = run(spec)
    if args.json:
        print(json.dumps(record))
    else:
        print(render([record], "md"), end="")
        progress.log(f"record and grid written under {args.out}/ ({record['grid']})")
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from invbench.artifacts import atomic_write_text
    from invbench.tables import load_records, render

    metrics = args.metrics.split(",") if args.metrics else None
    text = render(load_records(args.results), args.format, metrics, title=args.title)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        print(text, end="")
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
    handler = {"ls": _cmd_ls, "run": _cmd_run, "table": _cmd_table}[args.cmd]
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
