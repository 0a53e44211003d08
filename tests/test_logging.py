"""Logging: structlog events, quiet by default, debug events only when enabled."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from _support import run_python


def test_debug_events_are_off_by_default_and_on_when_enabled() -> None:
    with capture_logs() as logs:
        s = mtia_sync.Stream()
        s.record_event().synchronize()
    assert logs == []
    mtia.set_debug_logging(True)
    try:
        with capture_logs() as logs:
            s = mtia_sync.Stream(priority=-1)
            s.record_event().synchronize()
    finally:
        mtia.set_debug_logging(False)
    created = [e for e in logs if e["event"] == "stream_created"]
    assert created == [
        {"event": "stream_created", "log_level": "debug", "device": 0, "stream": s.stream_id, "priority": -1}
    ]
    assert any(e["event"] == "mark_reached" for e in logs)
    with pytest.raises(TypeError, match="bool"):
        mtia.set_debug_logging("yes")  # type: ignore[arg-type]


def test_runtime_lifecycle_events() -> None:
    from mtia_async.testing import fresh_runtime

    mtia.set_debug_logging(True)
    try:
        with capture_logs() as logs:
            with fresh_runtime(device_count=1, workers=1):
                mtia.init()
    finally:
        mtia.set_debug_logging(False)
    events = [e["event"] for e in logs]
    assert events.count("runtime_initialized") == 1
    init = next(e for e in logs if e["event"] == "runtime_initialized")
    assert (init["devices"], init["workers"]) == (1, 1)
    assert "runtime_shutdown" in events


def test_library_never_configures_structlog_nor_prints() -> None:
    result = run_python(
        """
        import structlog
        before = structlog.get_config()
        import mtia_async.sync as m
        s = m.Stream(); s.launch(print, "kernel-output"); s.synchronize()
        m.synchronize()
        assert structlog.get_config() == before
        assert not structlog.is_configured()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kernel-output\n"


# Regression (issue 15, defect 5).
def test_a_broken_stdout_never_wedges_a_stream() -> None:
    result = run_python(
        """
        import os, sys
        r, w = os.pipe()
        os.close(r)
        os.dup2(w, 1)  # stdout is now a pipe nobody reads: writing raises BrokenPipeError
        import mtia_async.sync as mtia
        def boom():
            raise ValueError("boom")
        s = mtia.Stream()
        for _ in range(3):
            s.launch(boom)
            try:
                s.synchronize()
            except mtia.KernelError:
                pass
        s.launch(int)
        s.synchronize()
        sys.stderr.write("ALIVE\\n")
        """,
        timeout=30,
    )
    assert "ALIVE" in result.stderr, result.stderr
