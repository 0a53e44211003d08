"""The benchmark harness: statistics (quartiles, the Mann-Whitney U test against known
values and brute force), timing and calibration on fake timers, rows and goals, JSON,
``--compare`` on synthetic samples, tables that fit 100 columns, plots from JSON, and
smoke runs of ``python -m mtia_async bench`` (no timing is asserted). The main job of
``python -m mtia_async`` is in test_cli.py."""

from __future__ import annotations

import gc
import io
import itertools
import json
import math
import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import ROOT, run_module

from mtia_async.bench import GOALS, Baseline, Context, Goal, Row, Stats
from mtia_async.bench._compare import compare, regressions, render_compare
from mtia_async.bench._harness import calibrate, gc_paused, interleave, per_call
from mtia_async.bench._plot import check_plot_path, plot
from mtia_async.bench._registry import SUITES
from mtia_async.bench._results import SCHEMA, load_json, results_document, rows_from_document, write_json
from mtia_async.bench._run import plot_command
from mtia_async.bench._stats import mann_whitney_u, min_p_value, paired_differences, paired_ratios
from mtia_async.bench._table import fmt, markdown_table, num, render_table, table_lines, terminal_width

LATEST = Path(ROOT) / "benchmarks" / "results" / "latest.json"


class FakeClock:
    """An integer nanosecond clock that returns the given readings in order."""

    def __init__(self, *readings: int) -> None:
        self.readings = list(readings)

    def __call__(self) -> int:
        return self.readings.pop(0)


# --- statistics ------------------------------------------------------------------------
def test_stats_median_quartiles_and_stability() -> None:
    s = Stats.of([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (s.median, s.q1, s.q3, s.min, s.max, s.n) == (3.0, 2.0, 4.0, 1.0, 10.0, 5)
    assert s.iqr == 2.0 and s.rel_iqr == pytest.approx(2 / 3) and s.unstable
    steady = Stats.of([100.0, 101.0, 102.0, 103.0, 104.0])
    assert steady.rel_iqr == pytest.approx(2 / 102) and not steady.unstable
    assert Stats.of([4.0, 1.0]).median == 2.5
    one = Stats.of([7.0])
    assert (one.q1, one.q3, one.unstable) == (7.0, 7.0, False)
    assert Stats.of([0.0, 0.0, 0.0]).rel_iqr is None
    with pytest.raises(ValueError, match="no samples"):
        Stats.of([])


def test_paired_ratios_and_differences() -> None:
    assert paired_ratios([2.0, 3.0, 8.0], [1.0, 2.0, 4.0]) == [2.0, 1.5, 2.0]
    assert paired_ratios([2.0, 4.0], [1.0, 2.0, 3.0]) == [3.0 / 2.0]
    assert paired_differences([2.0, 3.0], [0.5, 1.0]) == [1.5, 2.0]
    with pytest.raises(ValueError, match="differ in length: 2 and 1"):
        paired_differences([1.0, 2.0], [1.0])


def test_mann_whitney_u_known_values() -> None:
    # scipy.stats.mannwhitneyu's documented example: U = 17, exact p = 0.1111 (1/9).
    males, females = [19, 22, 16, 29, 24], [20, 11, 17, 12]
    u, p = mann_whitney_u(males, females)
    assert u == 17 and p == pytest.approx(1 / 9)
    # Completely separated samples: the smallest p the exact test can give.
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]) == (0.0, pytest.approx(0.1))
    assert mann_whitney_u(list(range(9)), list(range(10, 19)))[1] == pytest.approx(2 / math.comb(18, 9))
    # With ties the normal approximation (tie and continuity corrections) is used;
    # for the example with a tie added by hand: U = 17.5, z = (7.5 - 0.5) / sigma.
    u, p = mann_whitney_u([19, 22, 16, 29, 24], [20, 11, 16, 12])
    sigma = math.sqrt(5 * 4 / 12 * (10 - (2**3 - 2) / (9 * 8)))
    assert u == 17.5 and p == pytest.approx(math.erfc((7.5 - 0.5) / sigma / math.sqrt(2)))
    # Identical samples: nothing to tell apart.
    assert mann_whitney_u([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])[1] == 1.0
    assert mann_whitney_u([5.0] * 4, [5.0] * 6) == (12.0, 1.0)  # 24 ties, each half a win
    with pytest.raises(ValueError, match="samples on both sides, got 0 and 2"):
        mann_whitney_u([], [1.0, 2.0])


def test_mann_whitney_exact_p_matches_brute_force() -> None:
    rng = random.Random(17)
    for n1, n2 in ((2, 3), (3, 3), (4, 3), (5, 5), (3, 6)):
        x = [rng.random() for _ in range(n1)]
        y = [rng.random() + 0.3 for _ in range(n2)]
        u_obs, p = mann_whitney_u(x, y)
        pooled = x + y
        us = []
        for idx in itertools.combinations(range(n1 + n2), n1):
            first = [pooled[i] for i in idx]
            second = [pooled[i] for i in range(n1 + n2) if i not in idx]
            us.append(sum(a > b for a in first for b in second))
        low = min(u_obs, n1 * n2 - u_obs)
        tail = sum(u <= low for u in us) / len(us)
        assert p == pytest.approx(min(1.0, 2 * tail)), (n1, n2)


def test_min_p_value() -> None:
    assert min_p_value(3, 3) == pytest.approx(0.1)
    assert min_p_value(5, 5) == pytest.approx(2 / 252)
    assert min_p_value(0, 4) == 1.0


# --- timing and calibration ------------------------------------------------------------
def test_per_call_divides_the_batch_time_by_n_on_a_fake_clock() -> None:
    calls = []
    clock = FakeClock(1_000, 6_000)  # 5,000 ns for the batch
    assert per_call(lambda: calls.append(1), 5, clock=clock) == pytest.approx(1e-6)
    assert len(calls) == 5
    with pytest.raises(ValueError, match="n must be >= 1"):
        per_call(lambda: None, 0)


def test_interleave_warms_up_then_alternates_order_with_gc_off() -> None:
    order: list[str] = []
    gc_states: list[bool] = []

    def variant(name: str, value: float) -> Any:
        def run() -> float:
            order.append(name)
            gc_states.append(gc.isenabled())
            return value

        return run

    steps: list[int] = []
    samples = interleave({"a": variant("a", 1.0), "b": variant("b", 2.0)}, reps=4, warmup=1, on_step=steps.append)
    assert order == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert samples == {"a": [1.0] * 4, "b": [2.0] * 4}
    assert steps == [0, 1, 2, 3, 4]
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


def test_calibrate_grows_the_batch_until_it_lasts_min_time() -> None:
    sizes: list[int] = []

    def timed(n: int) -> float:  # 2 us per op plus a fixed 300 us per batch (a final sync)
        sizes.append(n)
        return n * 2_000 + 300_000

    n = calibrate(timed, min_time=0.01)
    assert sizes[:5] == [1, 1, 2, 5, 10]  # a cold first call, then timeit.autorange's 1, 2, 5, 10, ...
    assert 0.005e9 <= timed(n) and n * 2_000 <= 0.0125e9
    assert calibrate(timed, min_time=0.01, max_n=50) == 50
    assert calibrate(lambda n: 1e9, min_time=0.01) == 1  # one op already lasts long enough
    with pytest.raises(ValueError, match="min_time > 0"):
        calibrate(timed, min_time=0)


def test_context_per_op_reports_us_per_op_batches_and_progress() -> None:
    progress: list[tuple[str, int, int]] = []
    ctx = Context(quick=True, reps=3, warmup=1, progress=lambda *a: progress.append(a))
    assert ctx.n(1000, 10) == 10 and Context(quick=False).n(1000, 10) == 1000
    assert ctx.target_time == 0.01 and Context().target_time == 0.1 and Context(min_time=0.5).target_time == 0.5
    samples = ctx.per_op("g", {"fast": lambda n: n * 1_000.0, "slow": lambda n: n * 4_000.0})
    assert samples == {"fast": [1.0] * 3, "slow": [4.0] * 3}
    batch = ctx.batch("g", "fast")
    assert batch is not None and 5_000 <= batch <= 12_000 and ctx.batch("g", "nope") is None
    assert progress == [("g", 0, 5), ("g", 1, 5), ("g", 2, 5), ("g", 3, 5), ("g", 4, 5), ("g", 5, 5)]


# --- rows and goals --------------------------------------------------------------------
def test_goal_operators_stretch_and_short_text() -> None:
    goal = Goal("<= 0.5 us", "value", "<=", 0.5, 0.15)
    assert goal.check(0.5) and not goal.check(0.51)
    assert goal.check(0.1, goal.stretch) and not goal.check(0.2, goal.stretch)
    assert Goal(">= 2", "value", ">=", 2.0).check(2.0)
    assert not Goal("< 20", "value", "<", 20.0).check(20.0)
    assert goal.short == "<= 0.5 (0.15)"
    assert GOALS["ops.add"].short == "<= 2x (1.5x)" and GOALS["overlap.compute.2.threads"].short == ">= 0.9x"


def test_goals_follow_the_performance_goals_page() -> None:
    assert GOALS["responsiveness.drain"].limit == 10.0 and GOALS["responsiveness.drain"].stretch == 5.0
    assert GOALS["overlap.compute.2.threads"].limit == 0.9
    for key in ("ops.add", "ops.mul", "ops.exp", "ops.exp_out", "ops.sum", "ops.matmul", "ops.fill", "ops.empty",
                "ops.launch_exp"):
        assert (GOALS[key].on, GOALS[key].limit, GOALS[key].stretch, GOALS[key].ref) == ("ratio", 2.0, 1.5, 9)
    assert GOALS["ops.launch_da.d1e6"].limit == 0.6 and GOALS["ops.worker.overhead"].limit == 0.5
    assert "ops.launch_noop" not in GOALS and "dispatch.add.16.torch" not in GOALS


def test_row_status_on_value_and_ratio_goals() -> None:
    met = Row("launch.caller", "launch", "launch", "us", samples=[0.3, 0.2, 0.25])
    assert met.goal is GOALS["launch.caller"]
    assert (met.status, met.stretch_met) == ("met", False)
    missed = Row("launch.caller", "launch", "launch", "us", samples=[0.6, 0.7, 0.55])
    assert missed.status == "MISSED"
    ratio = Row("kernels.medium", "kernels", "add", "us", samples=[110.0, 104.0, 300.0],
                baseline=Baseline("numpy", [100.0, 100.0, 100.0]))
    assert ratio.ratio is not None and (ratio.ratio.median, ratio.ratio.min, ratio.ratio.max) == (1.1, 1.04, 3.0)
    assert ratio.status == "MISSED"
    speedup = Row("overlap.compute.2.speedup", "overlap", "2 streams", "k/s", "higher",
                  samples=[90.0, 95.0, 100.0], baseline=Baseline("1 stream", [50.0, 50.0, 50.0]))
    assert (speedup.status, speedup.stretch_met) == ("met", True)


def test_rows_without_goal_data_are_not_applicable() -> None:
    assert Row("launch.drain", "launch", "drain", "M/s", "higher", samples=[5.0]).status == "n/a"
    skipped = Row("rng.randn", "rng", "randn", "us", skipped="mtia_async.randn is not importable yet")
    assert skipped.goal is not None and skipped.status == "n/a" and skipped.stats is None
    no_baseline = Row("ops.add", "ops", "a + b", "us", samples=[1.0], baseline_skipped="torch is not installed")
    assert no_baseline.status == "n/a"
    failed = Row("dispatch.error", "dispatch", "the suite raised", "", error="KernelError: boom")
    assert failed.status == "n/a"
    nan = Row("launch.caller", "launch", "x", "us", samples=[float("nan")])
    assert nan.status == "n/a"


# --- JSON ------------------------------------------------------------------------------
def _rows() -> list[Row]:
    return [
        Row("launch.caller", "launch", "no-op launch, stream held", "us", samples=[0.25, 0.3, 0.2], batch=1000),
        Row("launch.throughput", "launch", "no-op kernels/s, one stream", "M/s", "higher", samples=[2.5, 2.6, 2.4]),
        Row("kernels.medium", "kernels", "np.add 1M via stream vs numpy", "us", samples=[101.0, 102.0, 103.0],
            baseline=Baseline("numpy", [100.0, 100.0, 100.0]), note="50 per batch"),
        Row("ops.add", "ops", "a + b", "us", samples=[3.0, 3.1, 2.9],
            baseline_skipped="torch is not installed (pip install torch to compare with PyTorch CPU eager)"),
        Row("rng.randn", "rng", "randn(1M) vs numpy Philox", "us", skipped="mtia_async.randn is not importable yet"),
    ]


def test_json_document_schema_and_round_trip(tmp_path: Path) -> None:
    rows = _rows()
    ctx = Context(quick=True, reps=3)
    from mtia_async.bench._machine import machine_info

    doc = results_document(rows, suites=["launch", "kernels", "ops", "rng"], ctx=ctx, duration_s=1.5,
                           machine=machine_info(), busy={"start": 0.1, "kernels": 0.7})
    path = tmp_path / "sub" / "run.json"
    write_json(str(path), doc)
    loaded = load_json(str(path))
    assert loaded["schema"] == SCHEMA and loaded["busy"] == {"start": 0.1, "kernels": 0.7}
    assert loaded["method"]["reps"] == 3 and loaded["method"]["quick"] is True
    assert loaded["method"]["min_time_s"] == 0.01
    machine = loaded["machine"]
    for key in ("platform", "python", "cpu_count", "numpy", "blas", "mtia_async", "config", "libraries", "source"):
        assert key in machine, key
    assert machine["config"] == {"device_count": 2, "device_memory": 1 << 30, "workers": 2}
    first = loaded["rows"][0]
    assert {k: first[k] for k in ("key", "unit", "median", "q1", "q3", "min", "max", "reps", "batch", "status")} == {
        "key": "launch.caller", "unit": "us", "median": 0.25, "q1": 0.225, "q3": 0.275, "min": 0.2, "max": 0.3,
        "reps": 3, "batch": 1000, "status": "met",
    }
    assert first["goal"]["limit"] == 0.5 and first["goal"]["ref"] == 1 and first["unstable"] is True
    medium = loaded["rows"][2]
    assert medium["ratio"]["median"] == pytest.approx(1.02) and medium["status"] == "met"
    assert loaded["rows"][3]["baseline_skipped"].startswith("torch is not installed")
    assert loaded["rows"][4]["skipped"] == "mtia_async.randn is not importable yet"
    assert [r.to_dict() for r in rows_from_document(loaded)] == [r.to_dict() for r in rows]


def test_load_json_explains_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_json(str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="is a directory"):
        load_json(str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"is not valid JSON \(line 1, column 2"):
        load_json(str(bad))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a mtia_async bench result"):
        load_json(str(other))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema": SCHEMA, "rows": [{"key": "a.b", "samples": ["x"]}]}))
    with pytest.raises(ValueError, match="holds a bad row 'a.b'"):
        load_json(str(broken))
    old = tmp_path / "v1.json"  # schema 1 (no quartiles, no batch sizes) is still read
    old.write_text(json.dumps({"schema": "mtia_async.bench/1", "rows": [
        {"key": "launch.caller", "suite": "launch", "name": "x", "unit": "us", "samples": [0.3]}]}))
    assert rows_from_document(load_json(str(old)))[0].stats == Stats.of([0.3])


# --- compare ---------------------------------------------------------------------------
def _document(rows: list[dict[str, Any]], quick: bool = False, suites: list[str] | None = None) -> dict[str, Any]:
    return {"schema": SCHEMA, "method": {"quick": quick}, "rows": rows,
            "suites": suites if suites is not None else sorted({r["suite"] for r in rows})}


def _row_dict(key: str, samples: list[float] | None, better: str = "lower", unit: str = "us") -> dict[str, Any]:
    return {"key": key, "suite": key.split(".")[0], "name": key, "unit": unit, "better": better,
            "samples": samples or [], "skipped": None if samples else "later"}


def _noisy(center: float, rel: float, n: int, rng: random.Random) -> list[float]:
    return [center * (1 + rng.gauss(0, rel)) for _ in range(n)]


KEYS = [f"{suite}.row{i}" for suite in ("launch", "sync", "ops", "dispatch") for i in range(15)]


def test_identical_runs_compare_as_not_significant_on_every_row() -> None:
    rng = random.Random(2026)
    rows = [_row_dict(k, _noisy(1.0 + i, 0.2, 9, rng)) for i, k in enumerate(KEYS)]
    same = compare(_document(rows), _document(json.loads(json.dumps(rows))))
    assert {line.verdict for line in same.lines} == {"not significant"}
    assert all(line.p == 1.0 for line in same.lines)
    # Two runs drawn from the same distributions (2 % noise, 9 repetitions each).
    old = [_row_dict(k, _noisy(1.0 + i, 0.02, 9, rng)) for i, k in enumerate(KEYS)]
    new = [_row_dict(k, _noisy(1.0 + i, 0.02, 9, rng)) for i, k in enumerate(KEYS)]
    again = compare(_document(old), _document(new))
    assert [line.verdict for line in again.lines] == ["not significant"] * len(KEYS)
    assert not regressions(again, 1.0) and not again.warnings


def test_compare_needs_a_real_and_significant_difference() -> None:
    rng = random.Random(7)
    old = _document([
        _row_dict("launch.caller", _noisy(1.0, 0.02, 9, rng)),
        _row_dict("launch.throughput", _noisy(2.0, 0.02, 9, rng), "higher", "M/s"),
        _row_dict("sync.drained", _noisy(1.0, 0.02, 9, rng)),
        _row_dict("sync.noisy", _noisy(1.0, 0.5, 9, rng)),
        _row_dict("kernels.tiny", _noisy(1.0, 0.001, 9, rng)),
    ])
    new = _document([
        _row_dict("launch.caller", _noisy(0.7, 0.02, 9, rng)),  # 30 % faster
        _row_dict("launch.throughput", _noisy(1.5, 0.02, 9, rng), "higher", "M/s"),  # rate down 25 %
        _row_dict("sync.drained", _noisy(1.4, 0.02, 9, rng)),  # 40 % slower
        _row_dict("sync.noisy", _noisy(1.2, 0.5, 9, rng)),  # 20 % slower, lost in the noise
        _row_dict("kernels.tiny", _noisy(1.02, 0.001, 9, rng)),  # significant but under the 5 % threshold
    ])
    result = compare(old, new)
    by_key = {line.key: line for line in result.lines}
    assert by_key["launch.caller"].verdict == "better" and by_key["launch.caller"].p < 0.001
    assert by_key["launch.throughput"].verdict == "worse" and by_key["launch.throughput"].loss > 0.2
    assert by_key["sync.drained"].verdict == "worse"
    assert by_key["sync.noisy"].verdict == "not significant"
    assert by_key["kernels.tiny"].verdict == "not significant" and by_key["kernels.tiny"].p < 0.05
    assert [line.key for line in regressions(result, 20)] == ["launch.throughput", "sync.drained"]
    assert [line.key for line in regressions(result, 32)] == ["sync.drained"]
    assert compare(old, new, threshold=0.01).lines[4].verdict == "worse"
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        compare(old, new, threshold=-0.1)


def test_compare_warns_on_quick_vs_full_and_too_few_repetitions() -> None:
    old = _document([_row_dict("launch.caller", [1.0, 1.1, 0.9])], quick=False)
    new = _document([_row_dict("launch.caller", [2.0, 2.1, 1.9])], quick=True)
    result = compare(old, new)
    assert result.lines[0].verdict == "not significant"  # 3 vs 3: p >= 0.1 whatever the data
    text = " ".join(result.warnings)
    assert "comparing a quick run with a full run" in text
    assert "with 3 and 3 repetitions no difference can be significant" in text and "--reps 5" in text


def test_compare_a_subset_run_leaves_other_suites_out() -> None:
    old = _document([_row_dict("launch.caller", [1.0] * 5), _row_dict("launch.gone", [1.0] * 5),
                     _row_dict("sync.drained", [1.0] * 5), _row_dict("rng.randn", [1.0] * 5)])
    new = _document([_row_dict("launch.caller", [1.0] * 5), _row_dict("launch.new", [1.0] * 5),
                     _row_dict("ops.add", None)], suites=["launch", "ops"])
    result = compare(old, new)
    verdicts = {line.key: line.verdict for line in result.lines}
    assert verdicts == {"launch.caller": "not significant", "launch.new": "new", "ops.add": "new",
                        "launch.gone": "gone"}
    assert result.not_run == ["sync", "rng"]
    out = io.StringIO()
    render_compare(result, file=out, plain=True, width=100, warn=io.StringIO())
    text = out.getvalue()
    assert "not compared (suites not run this time): sync, rng." in text
    assert "compare: 1 not significant, 2 new, 1 gone." in text


def test_render_compare_fits_100_columns_and_says_why() -> None:
    rng = random.Random(3)
    rows = [r.to_dict() for r in _latest_rows() if r.samples]
    new = json.loads(json.dumps(rows))
    for row in new:
        row["samples"] = [x * (1 + rng.gauss(0, 0.3)) for x in row["samples"]]
    result = compare(_document(rows), _document(new))
    for plain in (True, False):
        out, warn = io.StringIO(), io.StringIO()
        render_compare(result, title="change since old.json", file=out, plain=plain, width=100, warn=warn)
        lines = out.getvalue().splitlines() + warn.getvalue().splitlines()
        assert max(len(line) for line in lines) <= 100, max(lines, key=len)
        assert "Mann-Whitney U test" in out.getvalue()


# --- tables ----------------------------------------------------------------------------
def _latest_rows() -> list[Row]:
    return rows_from_document(load_json(str(LATEST)))


def _without_torch(rows: list[Row]) -> list[Row]:
    reason = "torch is not installed (pip install torch to compare with PyTorch CPU eager)"
    out = []
    for row in rows:
        if row.baseline is not None and row.baseline.name == "torch":
            row = Row.from_dict({**row.to_dict(), "baseline": None, "baseline_skipped": reason})
        out.append(row)
    return out


@pytest.mark.parametrize("torch_present", [True, False], ids=["torch", "no-torch"])
@pytest.mark.parametrize("plain", [False, True], ids=["rich", "plain"])
def test_every_suite_renders_within_100_columns(torch_present: bool, plain: bool) -> None:
    rows = _latest_rows()
    if not torch_present:
        rows = _without_torch(rows)
    out = io.StringIO()
    render_table(rows, title="mtia_async 0.1.0 benchmarks: full, 9 reps, 143 s", file=out, plain=plain, width=100,
                 notes=[s.caption for s in SUITES.values() if s.caption])
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    header = next(line for line in lines if line.startswith("row"))
    assert header.split() == ["row", "unit", "median", "IQR", "%", "base", "ratio", "goal", "status"]
    text = out.getvalue()
    assert "(1.5x)" in text  # the stretch goals fit at the design width (long names fold instead)
    a_b = next(line for line in lines if line.lstrip().startswith("a + b 16 vs numpy"))
    assert len(a_b.split()) == 11, a_b  # name (5 words), unit, median, IQR, base, ratio: no column dropped
    if not torch_present:
        assert "[1] torch is not installed" in text and re.search(r"skipped +\[1\]", text)


def test_narrow_terminals_drop_columns_rather_than_wrap() -> None:
    rows = _without_torch(_latest_rows())
    for width in (80, 60):
        for plain in (True, False):
            out = io.StringIO()
            render_table(rows, title="t", file=out, plain=plain, width=width)
            lines = out.getvalue().splitlines()
            assert max(len(line) for line in lines) <= width, (width, plain, max(lines, key=len))
            assert any(line.lstrip().startswith("a + b") for line in lines)  # one line per row


def test_plain_fallback_respects_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "70")
    assert terminal_width(io.StringIO()) == 70
    out = io.StringIO()
    render_table(_rows(), title="t", file=out, plain=True)
    assert max(len(line) for line in out.getvalue().splitlines()) <= 70
    monkeypatch.delenv("COLUMNS")
    assert terminal_width(io.StringIO()) == 100  # a pipe or a file: the design width


def test_tables_show_values_ratios_goals_and_footnoted_skips() -> None:
    lines = table_lines(_rows())
    text = "\n".join(lines)
    assert lines[0].split() == ["row", "unit", "median", "IQR", "%", "base", "ratio", "goal", "status"]
    assert "launch" in lines and "ops" in lines  # suites are section headings
    caller = next(line for line in lines if "stream held" in line)
    assert caller.split()[-7:] == ["us", "0.25", "20!", "<=", "0.5", "(0.15)", "met"]
    assert "1.020x" in text and "<= 1.03x (1.01x)" in text
    assert re.search(r"skipped +\[1\]", text) and "[1] torch is not installed (pip install torch" in text
    assert re.search(r"skipped +\[2\]", text) and "[2] mtia_async.randn is not importable yet" in text
    assert "goals: 3 met, 0 missed, 2 n/a (of 5 rows with a goal)" in text
    markdown = markdown_table(_rows())
    assert markdown.splitlines()[0].startswith("| suite | row | unit | median |")
    assert "| 100 numpy |" in markdown and "[1] torch is not installed" in markdown
    out = io.StringIO()
    render_table(_rows(), title="t", file=out)  # rich, when installed; plain otherwise
    assert re.search(r"skipped +\[1\]", out.getvalue())
    assert not any(line.rstrip().endswith("met*") for line in out.getvalue().splitlines())


def test_row_names_with_brackets_are_printed_as_written() -> None:
    """rich reads "[idx]" as markup: a row name must reach the terminal literally."""
    pytest.importorskip("rich")
    rows = [Row("ops.np.getitem_int", "ops", "a[idx] (host int array)", "us", samples=[1.0]),
            Row("ops.np.concatenate", "ops", "np.concatenate([a, b])", "us", samples=[2.0])]
    out = io.StringIO()
    render_table(rows, title="t", file=out, plain=False, width=100)
    assert "a[idx] (host int array)" in out.getvalue() and "np.concatenate([a, b])" in out.getvalue()


def test_fmt_and_num() -> None:
    assert fmt(0.24839, "us") == "0.248 us"
    assert fmt(1.0249, "x") == "1.025x"
    assert fmt(12.345, "x") == "12.35x"
    assert fmt(73009.9, "us") == "73,010 us"
    assert fmt(None, "us") == "-"
    assert num(0.0) == "0" and num(58.34) == "58.3" and num(123.4) == "123" and num(float("nan")) == "-"


# --- plots -----------------------------------------------------------------------------
def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match=r"pip install 'mtia_async\[bench\]'"):
        plot(_rows(), str(tmp_path / "x.png"))
    assert "matplotlib" in (check_plot_path(str(tmp_path / "x.png")) or "")


def test_bench_plot_renders_a_saved_run_as_png_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "bench.png", tmp_path / "bench.svg"
    assert plot_command(str(LATEST), str(png)) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as image:
        # 100 dpi, readable at 100 % zoom: 1,300 px wide; two columns of panels, so on average well
        # under 30 px of height per row (0.27 inch per row in a column, plus each panel's bands)
        rows = len(_latest_rows())
        assert image.size[0] == 1300 and 800 < image.size[1] < 30 * rows, (image.size, rows)
    assert plot_command(str(LATEST), str(svg), compare_path=str(LATEST)) == 0
    assert svg.read_text().lstrip().startswith("<?xml")
    assert f"plot written to {svg}" in capsys.readouterr().out


def test_bench_plot_refuses_bad_input_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    cases = [
        (str(tmp_path / "missing.json"), str(tmp_path / "o.png"), "does not exist"),
        (str(bad), str(tmp_path / "o.png"), "is not valid JSON"),
        (str(LATEST), str(tmp_path / "o.jpg"), "must end in .png or .svg"),
        (str(LATEST), str(tmp_path / "no" / "o.png"), "does not exist"),
    ]
    for results, out, message in cases:
        assert plot_command(results, out) == 2
        assert message in " ".join(capsys.readouterr().err.split())
    skipped = tmp_path / "skipped.json"
    skipped.write_text(json.dumps(_document([_row_dict("launch.caller", None)])))
    assert plot_command(str(skipped), str(tmp_path / "o.png")) == 2
    assert "nothing to plot" in " ".join(capsys.readouterr().err.split())


# --- the bench command, in fresh interpreters ------------------------------------------
def _check_width(text: str, width: int = 100) -> None:
    for line in text.splitlines():
        assert len(line) <= width, line


@pytest.mark.timeout(120)
def test_bench_quick_run_compares_with_itself_as_not_significant(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(_document([_row_dict("launch.caller", [1.0] * 5), _row_dict("launch.gone", [1.0] * 5),
                                         _row_dict("sync.drained", [1.0] * 5)], suites=["launch", "sync"])))
    path = tmp_path / "out" / "launch.json"
    result = run_module(["bench", "launch", "--quick", "--json", str(path), "--compare", str(old)], timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_width(result.stdout)
    _check_width(result.stderr)
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and doc["suites"] == ["launch"] and doc["method"]["quick"] is True
    assert "start" in doc["busy"]
    keys = [row["key"] for row in doc["rows"]]
    assert keys == ["launch.caller", "launch.caller_live", "launch.end_to_end", "launch.throughput",
                    "launch.drain", "launch.two_streams"]
    for row in doc["rows"]:
        assert row["reps"] == 5 and len(row["samples"]) == 5 and row["status"] in ("met", "MISSED", "n/a")
        assert row["batch"] >= 1
    assert doc["rows"][0]["goal"]["text"].startswith("<= 0.5 us")
    assert "no-op launch, stream held" in result.stdout
    assert "gone" in result.stdout and "not compared (suites not run this time): sync." in result.stdout
    # The run against itself: no row differs.
    same = run_module(["bench", "compare", str(path), str(path), "--fail-on-regression", "5"], timeout=30)
    assert same.returncode == 0, same.stderr
    verdicts = [line.split()[-2:] for line in same.stdout.splitlines()
                if line.startswith("  ") and not line.startswith("   ")]  # rows; footnotes go on with 4 spaces
    assert verdicts == [["not", "significant"]] * len(keys)
    assert "compare: 6 not significant." in same.stdout and "no row significantly worse" in same.stdout
    # A run made 50 % slower on every sample fails the CI gate.
    slow = json.loads(path.read_text())
    for row in slow["rows"]:
        factor = 0.5 if row["better"] == "higher" else 1.5
        row["samples"] = [x * factor for x in row["samples"]]
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps(slow))
    gate = run_module(["bench", "compare", str(path), str(worse), "--fail-on-regression", "10"], timeout=30)
    assert gate.returncode == 3, gate.stdout + gate.stderr
    assert "row(s) significantly worse by more than 10%" in gate.stderr


def test_bench_usage_errors_exit_2_before_running(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    cases = [
        (["bench", "nosuchsuite"], "unknown suite(s) nosuchsuite; choose from launch, sync, await"),
        (["bench", "launch", "--compare", str(bad)], "not a mtia_async bench result"),
        (["bench", "launch", "--compare", str(bad), "--fail-on-regression", "-5"],
         "--fail-on-regression must be a percentage above 0 (e.g. 10), got -5"),
        (["bench", "launch", "--fail-on-regression", "10"], "--fail-on-regression needs --compare OLD.json"),
        (["bench", "launch", "--plot", str(tmp_path / "x.gif")], "must end in .png or .svg"),
        (["bench", "launch", "--reps", "0"], "--reps must be >= 1, got 0"),
        (["bench", "compare", str(bad), str(tmp_path / "nope.json")], "does not exist"),
        (["bench", "compare", str(LATEST), str(LATEST), "--threshold", "nan"], "--threshold must be"),
    ]
    for args, message in cases:
        result = run_module(args, timeout=30)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        _check_width(result.stderr)
    missing = run_module(["bench", "plot", str(LATEST)], timeout=30)
    assert missing.returncode == 2 and "the following arguments are required: -o/--output" in missing.stderr


def test_bench_list_and_help_fit_100_columns() -> None:
    listed = run_module(["bench", "--list"], timeout=30)
    assert listed.returncode == 0 and "ops" in listed.stdout
    _check_width(listed.stdout)
    for args in (["bench", "--help"], ["bench", "plot", "--help"], ["bench", "compare", "--help"]):
        result = run_module(args, timeout=30)
        assert result.returncode == 0
        _check_width(result.stdout)


def test_isolated_suite_failure_is_reported_not_raised() -> None:
    from mtia_async.bench._run import _run_in_subprocess

    rows, error = _run_in_subprocess("nosuchsuite", Context(quick=True, reps=1))
    assert rows == []
    assert error is not None and "exit status 2" in error and "unknown suite(s) nosuchsuite" in error


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_suites_no_other_test_runs_work_at_quick_scale(tmp_path: Path) -> None:
    """dispatch, responsiveness and graphs: the main job's summary leaves them out (test_cli runs it),
    and no other test runs them; every other suite has a test that runs it (service, profiler,
    sanitizer, cluster in their own test files)."""
    path = tmp_path / "run.json"
    suites = ["dispatch", "responsiveness", "graphs"]
    result = run_module(["bench", *suites, "--quick", "--reps", "1", "--no-progress", "--plain", "--json", str(path)],
                        timeout=200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads(path.read_text())
    assert doc["suites"] == suites
    rows = doc["rows"]
    assert {row["suite"] for row in rows} == set(suites)
    assert [row["key"] for row in rows if row["error"]] == []
    assert all(row["median"] > 0 for row in rows if not row["skipped"])
