"""Running suites (each in a fresh interpreter), and the ``bench`` commands.

Exit statuses of the commands: 0 fine; 1 a suite failed; 2 a usage error (reported
before anything runs); 3 a regression beyond ``--fail-on-regression``.
"""

from __future__ import annotations

import math
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from ._compare import compare, regressions, render_compare
from ._harness import Context, Row
from ._machine import busy_threshold, machine_info, others_cpu
from ._plot import check_plot_path, plot
from ._progress import Reporter, child_progress, parse_progress, reporter
from ._registry import SUITES, Suite
from ._results import load_json, results_document, rows_from_document, write_json
from ._table import markdown_table, render_table, terminal_width

__all__ = ["SUITES", "Suite", "bench_command", "compare_command", "plot_command", "run_suites"]

EXIT_FAILED, EXIT_USAGE, EXIT_REGRESSION = 1, 2, 3
TRACE_EVENTS = 100_000  # --trace keeps the newest events of each suite (a window, not the whole run)


def _err(text: str) -> None:
    """An error or warning on stderr, wrapped to the terminal's width."""
    width = terminal_width(sys.stderr)
    print("\n".join(textwrap.wrap(text, width, subsequent_indent="    ", break_on_hyphens=False)),
          file=sys.stderr, flush=True)


def run_suites(
    names: Sequence[str], ctx: Context, progress: bool = True, isolate: bool = False,
    busy: dict[str, float | None] | None = None, trace: str | None = None,
) -> tuple[list[Row], list[str]]:
    """Run the named suites in order.

    A suite that raises (or, isolated, exits badly or times out) is reported (its
    traceback on stderr, a ``FAILED`` row) and the others still run.

    Args:
        isolate: run each suite in a fresh interpreter (``python -m mtia_async bench
            SUITE``), so no suite inherits another's state: its allocator's segments,
            imported libraries (PyTorch), warmed or fragmented memory.
        busy: filled with suite -> cores' worth of CPU other processes used just
            before it (measured between suites, while the harness is idle).
        trace: profile each suite and write its trace there (``trace_path``), in the
            interpreter that runs it.

    Returns:
        the rows, and the names of the suites that failed.
    """
    rows: list[Row] = []
    failed: list[str] = []
    estimates = {n: SUITES[n].seconds[1 if ctx.quick else 0] for n in names}
    with reporter(names, estimates, progress) as rep:
        ctx.progress = rep.step
        for i, name in enumerate(names):
            if busy is not None and i > 0:
                busy[name] = others_cpu()
            rep.start(name)
            t0 = time.perf_counter()
            suite_trace = trace_path(trace, name, len(names)) if trace else None
            if isolate:
                suite_rows, error = _run_in_subprocess(name, ctx, rep, timeout=_timeout(name, ctx), trace=suite_trace)
            else:
                suite_rows, error = _run_here(name, ctx, suite_trace)
            rows += suite_rows
            if error is not None:
                failed.append(name)
                rows.append(Row(f"{name}.error", name, "the suite raised", "", error=error))
            rep.finish(time.perf_counter() - t0)
    return rows, failed


def _timeout(name: str, ctx: Context) -> float:
    """Seconds a suite may take before it counts as hung: ten times its estimate, >= 5 min."""
    return max(300.0, 10 * SUITES[name].seconds[1 if ctx.quick else 0] * ctx.reps / (5 if ctx.quick else 9))


def trace_path(path: str, suite: str, suites: int) -> str:
    """Where ``--trace PATH`` puts one suite's trace: PATH itself for one suite, else ``out.SUITE.json``."""
    if suites == 1:
        return path
    for ext in (".json.gz", ".json"):
        if path.endswith(ext):
            return f"{path[: -len(ext)]}.{suite}{ext}"
    return f"{path}.{suite}"


def _run_here(name: str, ctx: Context, trace: str | None = None) -> tuple[list[Row], str | None]:
    try:
        if trace is None:
            return SUITES[name].run(ctx), None
        from mtia_async.profiler import profile

        with profile(max_events=TRACE_EVENTS) as prof:
            rows = SUITES[name].run(ctx)
        prof.export_chrome_trace(trace)
        return rows, None
    except Exception as exc:  # noqa: BLE001 - reported (traceback, FAILED row, exit 1)
        traceback.print_exc()
        return [], f"{type(exc).__name__}: {exc}"


def _child_command(name: str, ctx: Context, path: str, trace: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "mtia_async", "bench", name, "--json", path, "--reps", str(ctx.reps), "--child"]
    if trace is not None:
        cmd += ["--trace", trace]
    if ctx.quick:
        cmd.append("--quick")
    if ctx.min_time is not None:
        cmd += ["--min-time", repr(ctx.min_time)]
    return cmd


def _run_in_subprocess(name: str, ctx: Context, rep: Reporter | None = None,
                       timeout: float = 600.0, trace: str | None = None) -> tuple[list[Row], str | None]:
    import tempfile

    import mtia_async

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(mtia_async.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    other: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mtia-bench-") as tmp:
        path = os.path.join(tmp, f"{name}.json")
        with subprocess.Popen(_child_command(name, ctx, path, trace), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=env) as proc:
            returncode, timed_out = _follow(proc, rep, other, timeout)
        try:
            rows = rows_from_document(load_json(path)) if os.path.exists(path) else []
        except ValueError:
            rows = []
    stderr = "".join(other)
    errors = [r for r in rows if r.error is not None]
    rows = [r for r in rows if r.error is None]
    if timed_out:
        sys.stderr.write(stderr)
        return rows, f"timed out after {timeout:.0f} s (killed)"
    if returncode != 0 or errors:
        sys.stderr.write(stderr)
        detail = errors[0].error if errors else f"exit status {returncode}: {stderr.strip()[-300:]}"
        return rows, detail
    if stderr.strip() and rep is not None:  # warnings a suite printed: pass them on
        rep.note(stderr.rstrip())
    return rows, None


def _follow(proc: subprocess.Popen[str], rep: Reporter | None, other: list[str],
            timeout: float) -> tuple[int, bool]:
    """Read a child suite's stderr (progress lines go to ``rep``) until it exits or times out.

    Returns:
        its exit status, and whether it was killed for taking longer than ``timeout``.
    """
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, name="bench-child-stderr", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        try:
            line = lines.get(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() > deadline:
                timed_out = True
                proc.kill()
                break
            continue
        if line is None:
            break
        event = parse_progress(line)
        if event is None:
            other.append(line)
        elif rep is not None:
            rep.step(*event)
    returncode = proc.wait()
    reader.join(timeout=5)
    return returncode, timed_out


def _busy_note(busy: dict[str, float | None]) -> str | None:
    cores = os.cpu_count() or 1
    limit = busy_threshold(cores)
    loud = {k: v for k, v in busy.items() if v is not None and v > limit}
    if not loud:
        return None
    where = ", ".join(f"{'the start' if k == 'start' else k} ({v:.1f})" for k, v in loud.items())
    return (f"busy machine: other processes used more than {limit:g} of {cores} cores before {where}: "
            "the figures of those suites may be noisy.")


def _check_pct(flag: str, value: float | None, positive: bool) -> str | None:
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a percentage above 0" if positive else "a percentage >= 0"
        return f"{flag} must be {need} (e.g. 10), got {value:g}"
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
    fail_on_regression: float | None = None,
    threshold: float = 5.0,
    min_time: float | None = None,
    child: bool = False,
    trace: str | None = None,
) -> int:
    """Run benchmark suites and report them; the body of ``python -m mtia_async bench``.

    With ``isolate`` (the default) and more than one suite, each suite runs in a fresh
    interpreter; a single suite always runs in this one. ``child`` is how the parent
    runs a suite: in-process, progress as lines on stderr, no table, the JSON only.
    ``trace``: profile each suite in the interpreter that runs it and write its trace
    (Chrome Trace Event Format; the newest ``TRACE_EVENTS`` events): to ``trace`` for
    one suite, else to ``trace`` with the suite's name before ``.json``.

    Returns:
        the exit status (see the module docstring).
    """
    import mtia_async

    names = list(suites) if suites else list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    problems = []
    if unknown:
        problems.append(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if reps is not None and reps < 1:
        problems.append(f"--reps must be >= 1, got {reps}")
    if min_time is not None and not (math.isfinite(min_time) and min_time > 0):
        problems.append(f"--min-time must be a number of seconds above 0, got {min_time:g}")
    problems += [p for p in (_check_pct("--fail-on-regression", fail_on_regression, True),
                             _check_pct("--threshold", threshold, False)) if p]
    if fail_on_regression is not None and compare_path is None:
        problems.append("--fail-on-regression needs --compare OLD.json (the run to compare with)")
    if plot_path is not None:
        problems += [p for p in (check_plot_path(plot_path),) if p]
    if trace is not None and not os.path.isdir(os.path.dirname(os.path.abspath(trace))):
        problems.append(f"--trace {trace}: its folder {os.path.dirname(os.path.abspath(trace))} does not exist")
    old = None
    if compare_path is not None:
        old = next(iter(_load_documents((compare_path,), "compare", problems)), None)
    if _usage_errors(problems):
        return EXIT_USAGE
    ctx = Context(quick=quick, reps=reps or (5 if quick else 9), warmup=1, min_time=min_time)
    if child:
        ctx.progress = child_progress
    mtia_async.init()
    machine = machine_info()
    busy: dict[str, float | None] = {}
    if not child:
        busy["start"] = others_cpu(0.3)
        start = busy["start"]
        if start is not None and start > busy_threshold():
            _err(f"warning: other processes are using {start:.1f} of {os.cpu_count()} cores: expect noisy figures")
    t0 = time.perf_counter()
    if child:  # one suite, here; progress goes to the parent as lines on stderr
        rows, failed = [], []
        for name in names:
            suite_rows, error = _run_here(name, ctx, trace)
            rows += suite_rows
            if error is not None:
                failed.append(name)
                rows.append(Row(f"{name}.error", name, "the suite raised", "", error=error))
    else:
        rows, failed = run_suites(names, ctx, progress, isolate=isolate and len(names) > 1, busy=busy, trace=trace)
    duration = time.perf_counter() - t0
    document = results_document(rows, suites=names, ctx=ctx, duration_s=duration, machine=machine, busy=busy)
    if json_path is not None:
        write_json(json_path, document)
    if child:
        return EXIT_FAILED if failed else 0
    mode = "quick (a smoke run, not for goals)" if quick else "full"
    title = f"mtia_async {mtia_async.__version__} benchmarks: {mode}, {ctx.reps} reps, {duration:.0f} s"
    notes = [SUITES[n].caption for n in names if SUITES[n].caption]
    note = _busy_note(busy)
    if trace is not None:
        notes.append("--trace: every suite ran under the profiler; its figures include the profiler's cost.")
    render_table(rows, title=title, plain=plain, notes=notes + ([note] if note else []))
    if json_path is not None:
        print(f"results written to {json_path}")
    if trace is not None:
        for name in names:
            path = trace_path(trace, name, len(names))
            if os.path.exists(path):
                print(f"trace written to {path} (open it in https://ui.perfetto.dev; docs/profiling.md)")
    status = 0
    if old is not None:
        print()
        status = _report_compare(old, document, f"change since {compare_path}", fail_on_regression, threshold,
                                 plain)
    if markdown_path is not None:
        with open(markdown_path, "w", encoding="utf-8") as f:
            f.write(markdown_table(rows))
        print(f"markdown table written to {markdown_path}")
    if plot_path is not None:
        old_rows = rows_from_document(old) if old is not None else []
        plot(rows, plot_path, old_rows=old_rows, subtitle=_subtitle(document))
        print(f"plot written to {plot_path}")
    if failed:
        _err(f"error: suite(s) failed: {', '.join(failed)}")
        return EXIT_FAILED
    return status


def _report_compare(old: dict[str, Any], new: dict[str, Any], title: str, fail_on_regression: float | None,
                    threshold: float, plain: bool) -> int:
    comparison = compare(old, new, threshold=threshold / 100)
    render_compare(comparison, title=title, plain=plain)
    if fail_on_regression is None:
        return 0
    worse = regressions(comparison, fail_on_regression)
    if worse:
        keys = ", ".join(f"{line.key} ({line.loss:+.0%})" for line in worse)
        _err(f"error: {len(worse)} row(s) significantly worse by more than {fail_on_regression:g}%: {keys}")
        return EXIT_REGRESSION
    print(f"no row significantly worse by more than {fail_on_regression:g}%")
    return 0


def _subtitle(document: dict[str, Any]) -> str:
    method = document.get("method") or {}
    machine = document.get("machine") or {}
    mode = "quick run" if method.get("quick") else "full run"
    return (f"{mode} of {str(document.get('created', '?'))[:16].replace('T', ' ')}, {method.get('reps', '?')} reps; "
            f"{machine.get('cpu_count', '?')} cores, Python {machine.get('python', '?')}, "
            f"numpy {machine.get('numpy', '?')}, torch {(machine.get('libraries') or {}).get('torch') or 'absent'}")


def _load_documents(paths: Sequence[str], verb: str, problems: list[str]) -> list[dict[str, Any]]:
    """The saved runs at ``paths``; each that cannot be read adds "cannot <verb>: <why>" to ``problems``."""
    docs = []
    for path in paths:
        try:
            docs.append(load_json(path))
        except ValueError as exc:
            problems.append(f"cannot {verb}: {exc}")
    return docs


def _usage_errors(problems: list[str]) -> bool:
    """Print ``problems`` as usage errors; True if there were any."""
    for p in problems:
        _err(f"error: {p}")
    return bool(problems)


def compare_command(old_path: str, new_path: str, *, fail_on_regression: float | None = None,
                    threshold: float = 5.0, plain: bool = False) -> int:
    """``bench compare OLD.json NEW.json``: compare two saved runs (exit 3 on a regression)."""
    problems = [p for p in (_check_pct("--fail-on-regression", fail_on_regression, True),
                            _check_pct("--threshold", threshold, False)) if p]
    docs = _load_documents((old_path, new_path), "compare", problems)
    if _usage_errors(problems):
        return EXIT_USAGE
    return _report_compare(docs[0], docs[1], f"{new_path} compared with {old_path}", fail_on_regression,
                           threshold, plain)


def plot_command(results_path: str, out_path: str, *, compare_path: str | None = None) -> int:
    """``bench plot RESULTS.json [--compare OLD.json] -o OUT.png|svg``: draw a saved run."""
    problems = [p for p in (check_plot_path(out_path),) if p]
    paths = (results_path,) if compare_path is None else (results_path, compare_path)
    docs = _load_documents(paths, "plot", problems)
    if _usage_errors(problems):
        return EXIT_USAGE
    old_rows = rows_from_document(docs[1]) if len(docs) > 1 else []
    try:
        plot(rows_from_document(docs[0]), out_path, old_rows=old_rows, subtitle=_subtitle(docs[0]))
    except (ValueError, RuntimeError, OSError) as exc:
        _err(f"error: cannot plot {results_path!r}: {exc}")
        return EXIT_USAGE
    print(f"plot written to {out_path}")
    return 0

