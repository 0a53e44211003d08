"""Running suites: the registry, progress display, and the ``bench`` command."""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ._harness import Context, Row
from ._report import compare, markdown_table, plot, render_compare, render_table
from ._results import (
    load_json,
    machine_info,
    results_document,
    rows_from_document,
    write_json,
)
from .suites_compute import run_kernels, run_overlap
from .suites_core import run_await, run_launch, run_sync
from .suites_latency import run_responsiveness
from .suites_memory import run_dispatch, run_memory, run_rng

__all__ = ["SUITES", "Suite", "bench_command", "run_suites"]


@dataclass(frozen=True)
class Suite:
    """A named group of measurements."""

    name: str
    run: Callable[[Context], list[Row]]
    summary: str


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("launch", run_launch, "launch cost on the caller, launch+drain, no-op throughput"),
        Suite("sync", run_sync, "drained/pending synchronize vs ping-pong, event query/record, timestamps"),
        Suite("await", run_await, "launch + await vs asyncio.to_thread / run_in_executor / anyio"),
        Suite("overlap", run_overlap, "1/2/4 streams of compute- and memory-bound kernels vs bare threads"),
        Suite("kernels", run_kernels, "small/medium/large np.add through a stream vs direct numpy"),
        Suite("memory", run_memory, "cached allocate + free vs numpy.empty (and torch.empty)"),
        Suite("dispatch", run_dispatch, "a + b, a @ b, reductions on DeviceArrays vs numpy (and torch)"),
        Suite("rng", run_rng, "device randn(1M) vs numpy Philox"),
        Suite("responsiveness", run_responsiveness, "1 ms heartbeat's longest gap while streams work"),
    )
}


class _Reporter:
    """Progress on stderr: a rich bar on a terminal, one line per suite otherwise, or nothing."""

    def __init__(self, total: int, live: Any, lines: bool) -> None:
        self.live = live
        self.lines = lines and live is None
        self.task: Any = None if live is None else live.add_task("bench", total=total)
        self.current = ""

    def start(self, name: str) -> None:
        self.current = name
        if self.live is not None:
            self.live.update(self.task, description=name)
        elif self.lines:
            print(f"bench: running {name} ...", file=sys.stderr, flush=True)

    def update(self, text: str) -> None:
        if self.live is not None:
            self.live.update(self.task, description=text)

    def finish(self, seconds: float) -> None:
        if self.live is not None:
            self.live.advance(self.task)
        elif self.lines:
            print(f"bench: {self.current} done in {seconds:.1f} s", file=sys.stderr, flush=True)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[_Reporter]:
    live = None
    if enabled and sys.stderr.isatty():
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            live = None
        else:
            live = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    if live is None:
        yield _Reporter(total, None, enabled)
        return
    with live:
        yield _Reporter(total, live, enabled)


def run_suites(
    names: Sequence[str], ctx: Context, progress: bool = True, isolate: bool = False
) -> tuple[list[Row], list[str]]:
    """Run the named suites in order.

    A suite that raises is reported (traceback on stderr, a ``FAILED`` row) and the
    others still run.

    Args:
        isolate: run each suite in a fresh interpreter (``python -m mtia_async bench
            SUITE``), so no suite inherits another's state: its allocator's segments,
            imported libraries (PyTorch), warmed or fragmented memory.

    Returns:
        the rows, and the names of the suites that failed.
    """
    rows: list[Row] = []
    failed: list[str] = []
    with _progress(len(names), progress) as reporter:
        ctx.progress = reporter.update
        for name in names:
            reporter.start(name)
            t0 = time.perf_counter()
            if isolate:
                suite_rows, error = _run_in_subprocess(name, ctx)
            else:
                suite_rows, error = _run_here(name, ctx)
            rows += suite_rows
            if error is not None:
                failed.append(name)
                rows.append(Row(f"{name}.error", name, "the suite raised", "", error=error))
            reporter.finish(time.perf_counter() - t0)
    return rows, failed


def _run_here(name: str, ctx: Context) -> tuple[list[Row], str | None]:
    try:
        return SUITES[name].run(ctx), None
    except Exception as exc:  # noqa: BLE001 - reported (traceback, FAILED row, exit 1)
        traceback.print_exc()
        return [], f"{type(exc).__name__}: {exc}"


def _run_in_subprocess(name: str, ctx: Context) -> tuple[list[Row], str | None]:
    import subprocess
    import tempfile

    import mtia_async

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(mtia_async.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="mtia-bench-") as tmp:
        path = os.path.join(tmp, f"{name}.json")
        cmd = [sys.executable, "-m", "mtia_async", "bench", name, "--json", path, "--reps", str(ctx.reps),
               "--plain", "--no-progress", "--in-process"]
        if ctx.quick:
            cmd.append("--quick")
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        rows = rows_from_document(load_json(path)) if os.path.exists(path) else []
    errors = [r for r in rows if r.error is not None]
    rows = [r for r in rows if r.error is None]
    if result.returncode != 0 or errors:
        sys.stderr.write(result.stderr)
        detail = errors[0].error if errors else f"exit status {result.returncode}: {result.stderr.strip()[-300:]}"
        return rows, detail
    return rows, None


def _warn_if_busy(load: list[float] | None, what: str) -> None:
    """Warn on stderr when the 1-minute load average exceeds half the cores."""
    cores = os.cpu_count() or 1
    if load and load[0] > 0.5 * cores:
        print(f"warning: the machine {what} (1-minute load {load[0]} on {cores} cores): expect noisy figures",
              file=sys.stderr)


def _check_plot_available() -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib, which is not installed: pip install mtia_async[bench]"
    return None


def bench_command(
    suites: Sequence[str] | None = None,
    *,
    quick: bool = False,
    reps: int | None = None,
    json_path: str | None = None,
    compare_path: str | None = None,
    plot_path: str | None = None,
    markdown_path: str | None = None,
    plain: bool = False,
    progress: bool = True,
    isolate: bool = True,
) -> int:
    """Run benchmark suites and report them; the body of ``python -m mtia_async bench``.

    With ``isolate`` (the default) and more than one suite, each suite runs in a fresh
    interpreter; a single suite always runs in this one.

    Returns:
        the exit status: 0, 1 if a suite raised, 2 for a usage error (before running).
    """
    import mtia_async

    names = list(suites) if suites else list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"error: unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}", file=sys.stderr)
        return 2
    if plot_path is not None:
        problem = _check_plot_available()
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    old = None
    if compare_path is not None:
        try:
            old = load_json(compare_path)
        except (OSError, ValueError) as exc:
            print(f"error: cannot compare with {compare_path!r}: {exc}", file=sys.stderr)
            return 2
    if reps is not None and reps < 1:
        print(f"error: --reps must be >= 1, got {reps}", file=sys.stderr)
        return 2
    ctx = Context(quick=quick, reps=reps or (3 if quick else 9), warmup=1)
    mtia_async.init()
    machine = machine_info()
    _warn_if_busy(machine["loadavg_at_start"], "is busy")
    t0 = time.perf_counter()
    rows, failed = run_suites(names, ctx, progress, isolate=isolate and len(names) > 1)
    duration = time.perf_counter() - t0
    mode = "quick (smoke run, not for goals)" if quick else "full"
    title = f"mtia_async {mtia_async.__version__} benchmarks: {mode}, {ctx.reps} reps, {duration:.0f} s"
    render_table(rows, title=title, plain=plain)
    document = results_document(rows, suites=names, ctx=ctx, duration_s=duration, machine=machine)
    _warn_if_busy(document["loadavg_at_end"], "was busy during the run")
    if json_path is not None:
        write_json(json_path, document)
        print(f"results written to {json_path}")
    if old is not None:
        print(f"\nchange since {compare_path} (a change under 5% is reported as 'same'):")
        render_compare(compare(old, document))
    if markdown_path is not None:
        with open(markdown_path, "w", encoding="utf-8") as f:
            f.write(markdown_table(rows))
        print(f"markdown table written to {markdown_path}")
    if plot_path is not None:
        plot(rows, plot_path)
        print(f"plot written to {plot_path}")
    if failed:
        print(f"error: suite(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
