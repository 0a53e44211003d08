"""The benchmark harness: timing and statistics on fake timers, rows and goals, JSON,
``--compare``, tables, and smoke runs of ``python -m mtia_async bench`` (no timing is
asserted). The main job of ``python -m mtia_async`` is in test_cli.py."""

from __future__ import annotations

import gc
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import run_module

from mtia_async.bench import GOALS, Baseline, Context, Goal, Row, Stats
from mtia_async.bench._harness import gc_paused, interleave, paired_ratios, per_call
from mtia_async.bench._report import (
    compare,
    fmt,
    markdown_table,
    plot,
    render_compare,
    render_table,
    table_lines,
)
from mtia_async.bench._results import (
    SCHEMA,
    load_json,
    machine_info,
    results_document,
    rows_from_document,
    write_json,
)


class FakeClock:
    """An integer nanosecond clock that returns the given readings in order."""

    def __init__(self, *readings: int) -> None:
        self.readings = list(readings)

    def __call__(self) -> int:
        return self.readings.pop(0)


# --- statistics and timing -------------------------------------------------------------
def test_stats_median_min_max() -> None:
    assert Stats.of([3.0, 1.0, 2.0, 10.0, 4.0]) == Stats(median=3.0, min=1.0, max=10.0, n=5)
    assert Stats.of([4.0, 1.0]).median == 2.5
    with pytest.raises(ValueError, match="no samples"):
        Stats.of([])


def test_per_call_divides_the_batch_time_by_n_on_a_fake_clock() -> None:
    calls = []
    clock = FakeClock(1_000, 6_000)  # 5,000 ns for the batch
    assert per_call(lambda: calls.append(1), 5, clock=clock) == pytest.approx(1e-6)
    assert len(calls) == 5
    with pytest.raises(ValueError, match="n must be >= 1"):
        per_call(lambda: None, 0)


def test_paired_ratios_pair_by_repetition_and_fall_back_to_medians() -> None:
    assert paired_ratios([2.0, 3.0, 8.0], [1.0, 2.0, 4.0]) == [2.0, 1.5, 2.0]
    assert paired_ratios([2.0, 4.0], [1.0, 2.0, 3.0]) == [3.0 / 2.0]


def test_interleave_warms_up_then_alternates_order_with_gc_off() -> None:
    order: list[str] = []
    gc_states: list[bool] = []

    def variant(name: str, value: float) -> Any:
        def run() -> float:
            order.append(name)
            gc_states.append(gc.isenabled())
            return value

        return run

    reps_seen: list[int] = []
    samples = interleave({"a": variant("a", 1.0), "b": variant("b", 2.0)}, reps=4, warmup=1,
                         on_rep=reps_seen.append)
    assert order == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert samples == {"a": [1.0] * 4, "b": [2.0] * 4}
    assert reps_seen == [0, 1, 2, 3]
    assert gc_states == [False] * len(order)
    assert gc.isenabled()


def test_gc_is_restored_when_a_batch_raises() -> None:
    def boom() -> float:
        raise ZeroDivisionError("in a batch")

    with pytest.raises(ZeroDivisionError):
        interleave({"boom": boom}, reps=1, warmup=0)
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled(), "gc_paused must restore the previous state, not force gc on"
    finally:
        gc.enable()


def test_context_batch_size_and_measure() -> None:
    progress: list[str] = []
    ctx = Context(quick=True, reps=3, warmup=0, progress=progress.append)
    assert ctx.n(1000, 10) == 10
    assert Context(quick=False).n(1000, 10) == 1000
    samples = ctx.measure("x", {"v": lambda: 1.5})
    assert samples == {"v": [1.5, 1.5, 1.5]}
    assert progress == ["x: warm-up", "x: 1/3", "x: 2/3", "x: 3/3"]


# --- rows and goals --------------------------------------------------------------------
def test_goal_operators_and_stretch() -> None:
    goal = Goal("<= 0.5 us", "value", "<=", 0.5, 0.15)
    assert goal.check(0.5) and not goal.check(0.51)
    assert goal.check(0.1, goal.stretch) and not goal.check(0.2, goal.stretch)
    assert Goal(">= 2", "value", ">=", 2.0).check(2.0)
    assert not Goal("< 20", "value", "<", 20.0).check(20.0)


def test_row_status_on_value_and_ratio_goals() -> None:
    met = Row("launch.caller", "launch", "launch", "us", samples=[0.3, 0.2, 0.25])
    assert met.goal is GOALS["launch.caller"]
    assert (met.status, met.stretch_met) == ("met", False)
    missed = Row("launch.caller", "launch", "launch", "us", samples=[0.6, 0.7, 0.55])
    assert missed.status == "MISSED"
    # A ratio goal is checked on the median of the paired ratios, not on the value.
    ratio = Row("kernels.medium", "kernels", "add", "us", samples=[110.0, 104.0, 300.0],
                baseline=Baseline("numpy", [100.0, 100.0, 100.0]))
    assert ratio.ratio == Stats(median=1.1, min=1.04, max=3.0, n=3)
    assert ratio.status == "MISSED"
    speedup = Row("overlap.compute.2.speedup", "overlap", "2 streams", "k/s", "higher",
                  samples=[90.0, 95.0, 100.0], baseline=Baseline("1 stream", [50.0, 50.0, 50.0]))
    assert (speedup.status, speedup.stretch_met) == ("met", True)


def test_rows_without_goal_data_are_not_applicable() -> None:
    assert Row("launch.drain", "launch", "drain", "M/s", "higher", samples=[5.0]).status == "n/a"
    skipped = Row("rng.randn", "rng", "randn", "us", skipped="mtia_async.randn is not importable yet")
    assert skipped.goal is not None and skipped.status == "n/a" and skipped.stats is None
    no_baseline = Row("kernels.medium", "kernels", "add", "us", samples=[1.0])
    assert no_baseline.status == "n/a"
    failed = Row("dispatch.error", "dispatch", "the suite raised", "", error="KernelError: boom")
    assert failed.status == "n/a"


# --- JSON ------------------------------------------------------------------------------
def _rows() -> list[Row]:
    return [
        Row("launch.caller", "launch", "no-op launch, caller side", "us", samples=[0.25, 0.3, 0.2]),
        Row("launch.throughput", "launch", "no-op kernels/s", "M/s", "higher", samples=[2.5, 2.6, 2.4]),
        Row("kernels.medium", "kernels", "np.add 1M", "us", samples=[101.0, 102.0, 103.0],
            baseline=Baseline("numpy", [100.0, 100.0, 100.0]), note="50 per batch"),
        Row("rng.randn", "rng", "randn(1M)", "us", skipped="mtia_async.randn is not importable yet"),
    ]


def test_json_document_schema_and_round_trip(tmp_path: Path) -> None:
    rows = _rows()
    ctx = Context(quick=True, reps=3)
    doc = results_document(rows, suites=["launch", "kernels", "rng"], ctx=ctx, duration_s=1.5,
                           machine=machine_info())
    path = tmp_path / "sub" / "run.json"
    write_json(str(path), doc)
    loaded = load_json(str(path))
    assert loaded["schema"] == SCHEMA
    assert loaded["method"]["reps"] == 3 and loaded["method"]["quick"] is True
    machine = loaded["machine"]
    for key in ("platform", "python", "cpu_count", "numpy", "blas", "mtia_async", "config", "libraries"):
        assert key in machine, key
    assert machine["config"] == {"device_count": 2, "device_memory": 1 << 30, "workers": 2}
    first = loaded["rows"][0]
    assert {k: first[k] for k in ("key", "unit", "median", "min", "max", "reps", "status")} == {
        "key": "launch.caller", "unit": "us", "median": 0.25, "min": 0.2, "max": 0.3, "reps": 3, "status": "met",
    }
    assert first["goal"]["limit"] == 0.5 and first["goal"]["ref"] == 1
    medium = loaded["rows"][2]
    assert medium["ratio"]["median"] == pytest.approx(1.02) and medium["status"] == "met"
    assert medium["baseline"]["name"] == "numpy"
    assert loaded["rows"][3]["skipped"] == "mtia_async.randn is not importable yet"
    assert [r.to_dict() for r in rows_from_document(loaded)] == [r.to_dict() for r in rows]


def test_load_json_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a mtia_async bench result"):
        load_json(str(path))


# --- compare and tables ----------------------------------------------------------------
def _document(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": SCHEMA, "rows": rows}


def _row_dict(key: str, median: float | None, better: str = "lower", unit: str = "us") -> dict[str, Any]:
    return {"key": key, "suite": key.split(".")[0], "name": key, "unit": unit, "better": better,
            "samples": [] if median is None else [median], "skipped": None if median is not None else "later"}


def test_compare_two_hand_made_files(tmp_path: Path) -> None:
    old = _document([
        _row_dict("launch.caller", 0.6), _row_dict("launch.throughput", 2.0, "higher", "M/s"),
        _row_dict("sync.drained", 0.30), _row_dict("kernels.small", 1.0), _row_dict("rng.randn", None),
        _row_dict("old.gone", 1.0),
    ])
    new = _document([
        _row_dict("launch.caller", 0.3), _row_dict("launch.throughput", 1.5, "higher", "M/s"),
        _row_dict("sync.drained", 0.31), _row_dict("kernels.small", 1.5), _row_dict("rng.randn", 9.0),
        _row_dict("new.row", 2.0),
    ])
    for name, doc in (("old", old), ("new", new)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    lines = compare(load_json(str(tmp_path / "old.json")), load_json(str(tmp_path / "new.json")))
    by_key = {line.key: line for line in lines}
    assert (by_key["launch.caller"].verdict, by_key["launch.caller"].change) == ("better", -0.5)
    assert (by_key["launch.throughput"].verdict, by_key["launch.throughput"].change) == ("worse", -0.25)
    assert by_key["sync.drained"].verdict == "same"  # +3 %: noise
    assert by_key["kernels.small"].verdict == "worse"
    assert by_key["rng.randn"].verdict == "skipped"
    assert by_key["new.row"].verdict == "new" and by_key["old.gone"].verdict == "gone"
    out = io.StringIO()
    render_compare(lines, file=out)
    text = out.getvalue()
    assert "launch.caller" in text and "-50.0%" in text and "better" in text
    assert "launch.throughput" in text and "-25.0%" in text and "worse" in text
    assert "0.6 us" in text and "0.3 us" in text
    assert "MISSED -> met" in text and "met -> MISSED" in text  # launch.caller, launch.throughput


def test_tables_show_values_ratios_goals_and_skips() -> None:
    lines = table_lines(_rows())
    text = "\n".join(lines)
    assert lines[0].split() == ["suite", "row", "median", "min", "..", "max", "baseline", "ratio", "goal", "status"]
    assert "0.25 us" in text and "<= 0.5 us (stretch 0.15)" in text
    assert "1.020x" in text and "100 us numpy" in text
    assert "skipped: mtia_async.randn is not importable yet" in text
    assert "MISSED" not in text
    markdown = markdown_table(_rows())
    assert markdown.splitlines()[0].startswith("| suite | row | median |")
    assert markdown.count("\n") == 2 + len(_rows())
    out = io.StringIO()
    render_table(_rows(), title="t", file=out, plain=True)
    assert "goals: 3 met, 0 missed, 1 n/a (of 4 rows with a goal)" in out.getvalue()
    out = io.StringIO()
    render_table(_rows(), title="t", file=out)  # rich, when installed; plain otherwise
    assert "skipped: mtia_async.randn is not importable yet" in out.getvalue()


def test_fmt() -> None:
    assert fmt(0.24839, "us") == "0.248 us"
    assert fmt(1.0249, "x") == "1.025x"
    assert fmt(12.345, "x") == "12.35x"
    assert fmt(73009.9, "us") == "73,010 us"
    assert fmt(None, "us") == "-"
    assert fmt(0.0) == "0"


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match=r"pip install mtia_async\[bench\]"):
        plot(_rows(), str(tmp_path / "x.png"))


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    plot(_rows(), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the bench command, in fresh interpreters ------------------------------------------
def test_bench_launch_quick_writes_json_and_compares(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_document([_row_dict("launch.caller", 1.0), _row_dict("launch.gone", 1.0)])))
    path = tmp_path / "out" / "launch.json"
    result = run_module(["bench", "launch", "--quick", "--json", str(path), "--compare", str(old)], timeout=50)
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and doc["suites"] == ["launch"] and doc["method"]["quick"] is True
    keys = [row["key"] for row in doc["rows"]]
    assert keys == ["launch.caller", "launch.caller_live", "launch.end_to_end", "launch.throughput",
                    "launch.drain", "launch.two_streams"]
    for row in doc["rows"]:
        assert row["reps"] == 3 and len(row["samples"]) == 3 and row["status"] in ("met", "MISSED", "n/a")
    assert doc["rows"][0]["goal"]["text"].startswith("<= 0.5 us")
    assert "no-op launch, caller side" in result.stdout
    assert "launch.caller" in result.stdout and "launch.gone" in result.stdout and "gone" in result.stdout


def test_bench_usage_errors_exit_2_before_running(tmp_path: Path) -> None:
    result = run_module(["bench", "nosuchsuite"], timeout=30)
    assert result.returncode == 2
    assert "unknown suite(s) nosuchsuite; choose from launch, sync, await" in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = run_module(["bench", "launch", "--compare", str(bad)], timeout=30)
    assert result.returncode == 2 and "not a mtia_async bench result" in result.stderr


def test_isolated_suite_failure_is_reported_not_raised() -> None:
    from mtia_async.bench._run import _run_in_subprocess

    rows, error = _run_in_subprocess("nosuchsuite", Context(quick=True, reps=1))
    assert rows == []
    assert error is not None and "exit status 2" in error and "unknown suite(s) nosuchsuite" in error
