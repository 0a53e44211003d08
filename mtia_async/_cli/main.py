"""``python -m mtia_async``: describe the device, run a short demo and a quick benchmark.

Subcommands::

    python -m mtia_async [--cluster ADDRESS] [--trace OUT.json]   # the main job: info, demo, quick benchmark summary
    python -m mtia_async info                 # the devices only
    python -m mtia_async demo [--trace OUT.json]  # info and the demo (--trace: its profile, for Perfetto)
    python -m mtia_async bench [SUITES...] [--quick] [--json PATH] [--compare OLD.json] [--plot OUT.png]
                               [--trace OUT.json]
    python -m mtia_async bench --cluster ADDRESS [SUITES...]   # on a Dask cluster's devices (docs/cluster.md)
    python -m mtia_async bench compare OLD.json NEW.json [--fail-on-regression PCT]
    python -m mtia_async bench plot RESULTS.json [--compare OLD.json] -o OUT.png|svg

Every table is fitted to the terminal (or ``COLUMNS``; 100 columns into a pipe).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

#: Suites ``bench --cluster`` runs when none is named: the cluster suite measures the cluster's
#: devices against Dask's own calls; the local suites' baselines and goals are for local devices.
CLUSTER_SUITES = ("cluster",)

#: Suites of the main job's quick summary (responsiveness is left to ``bench``: the demo
#: already shows a heartbeat staying live; dispatch's size sweep adds nothing to a
#: summary that ``ops`` does not show).
MAIN_JOB_SUITES = ("launch", "sync", "await", "overlap", "kernels", "memory", "ops", "rng")

_EXIT_CODES = "exit status: 0 fine, 1 a suite failed, 2 a usage error, 3 a regression (--fail-on-regression)"


def _compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fail-on-regression", type=float, metavar="PCT", default=None,
                        help="exit 3 when a row is significantly worse by more than PCT percent (for CI)")
    parser.add_argument("--threshold", type=float, metavar="PCT", default=5.0,
                        help="a change of the median under PCT percent is never a difference (default 5)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m mtia_async``."""
    import mtia_async
    from mtia_async.bench import SUITES

    parser = argparse.ArgumentParser(
        prog="python -m mtia_async",
        description="mtia_async: torch.mtia emulated in software, async-first. Without a command: "
        "describe the device, run a short demo and a quick benchmark summary.",
    )
    parser.add_argument("--version", action="version", version=f"mtia_async {mtia_async.__version__}")
    parser.add_argument("--no-bench", action="store_true", help="main job: skip the quick benchmark summary")
    parser.add_argument("--plain", action="store_true", help="plain-text tables (no rich)")
    parser.add_argument("--trace", metavar="OUT.json", default=None,
                        help="profile the demo and write its trace (open it in https://ui.perfetto.dev)")
    parser.add_argument("--cluster", metavar="ADDRESS", default=None,
                        help="use the devices of the Dask cluster at ADDRESS (tcp://HOST:PORT; docs/cluster.md)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="print the devices and the host")
    demo = sub.add_parser("demo", help="print the devices and run the demo")
    demo.add_argument("--trace", metavar="OUT.json", default=argparse.SUPPRESS,
                      help="profile the demo and write its trace (open it in https://ui.perfetto.dev)")
    bench = sub.add_parser(
        "bench",
        help="run benchmark suites; 'bench compare', 'bench plot' work on saved runs",
        description="Run benchmark suites (all by default; --list says what each measures). "
        "Also: 'bench compare OLD.json NEW.json' and 'bench plot RESULTS.json -o OUT.png' "
        "(see their --help).",
        epilog=_EXIT_CODES,
    )
    bench.add_argument("suites", nargs="*", metavar="SUITE", help=f"suites to run, from: {', '.join(SUITES)}")
    bench.add_argument("--quick", action="store_true", help="small batches, 5 repetitions (a smoke run)")
    bench.add_argument("--reps", type=int, default=None, help="timed repetitions (default 9, quick 5)")
    bench.add_argument("--min-time", type=float, default=None, metavar="SECONDS",
                       help="how long one calibrated batch lasts (default 0.1, quick 0.01)")
    bench.add_argument("--json", dest="json_path", metavar="PATH", help="write the results and machine to PATH")
    bench.add_argument("--compare", dest="compare_path", metavar="OLD.json",
                       help="print the change per row since OLD (significance-tested)")
    _compare_options(bench)
    bench.add_argument("--plot", dest="plot_path", metavar="OUT.png",
                       help="draw the results, .png or .svg (needs matplotlib)")
    bench.add_argument("--markdown", dest="markdown_path", metavar="PATH.md", help="write the table as Markdown")
    bench.add_argument("--plain", action="store_true", help="plain-text table (no rich)")
    bench.add_argument("--no-progress", action="store_true", help="no progress display")
    bench.add_argument("--in-process", action="store_true",
                       help="run every suite in this interpreter (default: a fresh one per suite)")
    bench.add_argument("--trace", metavar="OUT.json", default=None,
                       help="profile each suite (its newest 100,000 events) and write its trace: OUT.json for one "
                       "suite, OUT.SUITE.json for several; the figures then include the profiler's cost")
    bench.add_argument("--cluster", metavar="ADDRESS", default=argparse.SUPPRESS,
                       help=f"measure the devices of the Dask cluster at ADDRESS (default suites: "
                       f"{', '.join(CLUSTER_SUITES)}; a suite named runs on the cluster's devices)")
    bench.add_argument("--list", action="store_true", help="list the suites and exit")
    bench.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # how the parent runs a suite
    return parser


def _saved_run_parser(command: str) -> argparse.ArgumentParser:
    """The parsers of ``bench compare`` and ``bench plot`` (they take no suites)."""
    prog = f"python -m mtia_async bench {command}"
    if command == "compare":
        parser = argparse.ArgumentParser(
            prog=prog, epilog=_EXIT_CODES,
            description="Compare two saved runs row by row: a row is better or worse only when its median "
            "moved by more than the threshold and the Mann-Whitney U test on the samples says p < 0.05.")
        parser.add_argument("old", metavar="OLD.json", help="the earlier run (bench --json)")
        parser.add_argument("new", metavar="NEW.json", help="the later run")
        _compare_options(parser)
    else:
        parser = argparse.ArgumentParser(
            prog=prog, description="Draw a saved run: one small multiple per suite and unit, goals drawn.")
        parser.add_argument("results", metavar="RESULTS.json", help="a run saved with bench --json")
        parser.add_argument("--compare", dest="compare_path", metavar="OLD.json",
                            help="also draw an older run's medians")
        parser.add_argument("-o", "--output", required=True, metavar="OUT.png|OUT.svg", help="the picture to write")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS if command == "plot" else
                        "plain-text table (no rich)")
    return parser


def _demo(trace: str | None) -> None:
    """Describe the devices and run the demo; with ``trace``, under the profiler, writing its trace there."""
    from mtia_async._cli.demo import describe, run_demo

    if trace is None:
        describe()
        print()
        run_demo()
        return
    from mtia_async.profiler import profile, record_function

    with profile(record_shapes=True, profile_memory=True) as prof:
        describe()
        print()
        with record_function("demo"):
            run_demo()
    prof.export_chrome_trace(trace)
    print(f"\ntrace written to {trace} (open it in https://ui.perfetto.dev; docs/profiling.md)")


def _main_job(args: argparse.Namespace, suites: Sequence[str] = MAIN_JOB_SUITES,
              header: str = "quick benchmark summary (python -m mtia_async bench for the full run; "
                            "docs/performance.md)") -> int:  # fmt: skip
    """The demo, then (unless ``--no-bench``) a quick run of ``suites`` under ``header``."""
    from mtia_async.bench import bench_command

    t0 = time.perf_counter()
    _demo(args.trace)
    status = 0
    if not args.no_bench:
        print()
        print(header)
        sys.stdout.flush()
        status = bench_command(suites, quick=True, plain=args.plain)
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return status


def _saved_run_command(argv: list[str]) -> int | None:
    """Run ``bench compare``/``bench plot`` when ``argv`` asks for one (else None)."""
    words = [a for a in argv if not a.startswith("-")]
    if len(words) < 2 or words[0] != "bench" or words[1] not in ("compare", "plot"):
        return None
    at = argv.index(words[1])
    if argv[:at] != [a for a in argv[:at] if a in ("bench", "--plain")]:
        return None  # an option between `bench` and the word: a suite list, not a command
    command = words[1]
    args = _saved_run_parser(command).parse_args(argv[at + 1:])
    plain = args.plain or "--plain" in argv[:at]
    from mtia_async.bench import compare_command, plot_command

    if command == "compare":
        return compare_command(args.old, args.new, fail_on_regression=args.fail_on_regression,
                               threshold=args.threshold, plain=plain)
    return plot_command(args.results, args.output, compare_path=args.compare_path)


def _use_cluster(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int | None:
    """``--cluster ADDRESS``: every device of this run (and of the bench's child processes) is the cluster's."""
    import mtia_async

    try:
        mtia_async.configure(cluster=args.cluster)
    except (TypeError, ValueError) as exc:
        parser.error(f"--cluster: {exc}")
    os.environ["MTIA_ASYNC_CLUSTER"] = args.cluster  # the suites run in child interpreters
    if args.command == "bench" and not args.suites and not args.list:
        args.suites = list(CLUSTER_SUITES)
    if args.command is None and not args.no_bench:
        return _main_job(args, CLUSTER_SUITES,
                         "quick benchmark summary on the cluster (python -m mtia_async bench --cluster ADDRESS)")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    saved = _saved_run_command(argv)
    if saved is not None:
        return saved
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "demo") and args.trace is not None:
        folder = os.path.dirname(os.path.abspath(args.trace))
        if not os.path.isdir(folder):
            parser.error(f"--trace {args.trace}: its folder {folder} does not exist")
    if args.cluster is not None:
        status = _use_cluster(parser, args)
        if status is not None:
            return status
    if args.command is None:
        return _main_job(args)
    if args.command == "info":
        from mtia_async._cli.demo import describe

        describe()
        return 0
    if args.command == "demo":
        _demo(args.trace)
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
        fail_on_regression=args.fail_on_regression,
        threshold=args.threshold,
        min_time=args.min_time,
        child=args.child,
        trace=args.trace,
    )
