"""``python -m mtia_async``: describe the device, run a short demo and a quick benchmark.

Subcommands::

    python -m mtia_async                      # the main job: info, demo, quick benchmark summary
    python -m mtia_async info                 # the devices only
    python -m mtia_async demo                 # info and the demo
    python -m mtia_async bench [SUITES...] [--quick] [--json PATH] [--compare OLD.json] [--plot PATH.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

#: Suites of the main job's quick summary (responsiveness is left to ``bench``: the demo
#: already shows a heartbeat staying live, and the suite takes seconds even when quick).
MAIN_JOB_SUITES = ("launch", "sync", "await", "overlap", "kernels", "memory", "dispatch", "rng")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m mtia_async``."""
    from mtia_async.bench import SUITES

    parser = argparse.ArgumentParser(
        prog="python -m mtia_async",
        description="mtia_async: torch.mtia emulated in software, async-first. Without a command: "
        "describe the device, run a short demo and a quick benchmark summary.",
    )
    parser.add_argument("--no-bench", action="store_true", help="main job: skip the quick benchmark summary")
    parser.add_argument("--plain", action="store_true", help="plain-text tables (no rich)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="print the devices and the host")
    sub.add_parser("demo", help="print the devices and run the demo")
    bench = sub.add_parser(
        "bench",
        help="run benchmark suites",
        description="Run benchmark suites (all by default): "
        + "; ".join(f"{name}: {s.summary}" for name, s in SUITES.items()),
    )
    bench.add_argument("suites", nargs="*", metavar="SUITE", help=f"suites to run, from: {', '.join(SUITES)}")
    bench.add_argument("--quick", action="store_true", help="small batches, 3 repetitions (a smoke run)")
    bench.add_argument("--reps", type=int, default=None, help="timed repetitions (default 9, quick 3)")
    bench.add_argument("--json", dest="json_path", metavar="PATH", help="write the results and machine to PATH")
    bench.add_argument("--compare", dest="compare_path", metavar="OLD.json", help="print the change per row since OLD")
    bench.add_argument("--plot", dest="plot_path", metavar="PATH.png", help="draw the results (needs matplotlib)")
    bench.add_argument("--markdown", dest="markdown_path", metavar="PATH.md", help="write the table as Markdown")
    bench.add_argument("--plain", action="store_true", help="plain-text table (no rich)")
    bench.add_argument("--no-progress", action="store_true", help="no progress display")
    bench.add_argument("--in-process", action="store_true",
                       help="run every suite in this interpreter (default: a fresh one per suite)")
    bench.add_argument("--list", action="store_true", help="list the suites and exit")
    return parser


def _main_job(args: argparse.Namespace) -> int:
    from mtia_async.bench import bench_command
    from mtia_async._cli.demo import describe, run_demo

    t0 = time.perf_counter()
    describe()
    print()
    run_demo()
    status = 0
    if not args.no_bench:
        print()
        print("quick benchmark summary (python -m mtia_async bench for the full run; docs/performance.md)")
        sys.stdout.flush()
        status = bench_command(MAIN_JOB_SUITES, quick=True, plain=args.plain)
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command is None:
        return _main_job(args)
    if args.command == "info":
        from mtia_async._cli.demo import describe

        describe()
        return 0
    if args.command == "demo":
        from mtia_async._cli.demo import describe, run_demo

        describe()
        print()
        run_demo()
        return 0
    from mtia_async.bench import SUITES, bench_command

    if args.list:
        for name, suite in SUITES.items():
            print(f"{name:<15} {suite.summary}")
        return 0
    return bench_command(
        args.suites,
        quick=args.quick,
        reps=args.reps,
        json_path=args.json_path,
        compare_path=args.compare_path,
        plot_path=args.plot_path,
        markdown_path=args.markdown_path,
        plain=args.plain,
        progress=not args.no_progress,
        isolate=not args.in_process,
    )

