"""Logging: structlog events delivered through ``logging`` (logger ``mtia_async``), quiet
on stdout, debug events only when enabled, and a failing log write never felt by the runtime."""

from __future__ import annotations

import logging

import pytest

import mtia_async as mtia
import mtia_async.sync as mtia_sync
from _support import boom, run_python


def _events(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "mtia_async"]


def test_kernel_failure_goes_through_logging_and_never_to_stdout(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)  # debug events stay off: only the error comes
    s = mtia_sync.Stream()
    s.launch(boom, "logged")
    with pytest.raises(mtia_sync.KernelError):
        s.synchronize()
    records = _events(caplog)
    assert [(r.levelname, r.event) for r in records] == [("ERROR", "kernel_failed")]  # type: ignore[attr-defined]
    record = records[0]
    assert record.getMessage() == (
        f"kernel_failed device=0 stream={s.stream_id} kernel='boom' error='ValueError: logged'"
    )
    # every field is an attribute of the record, for structured handlers
    assert (record.device, record.stream, record.kernel, record.error) == (  # type: ignore[attr-defined]
        0, s.stream_id, "boom", "ValueError: logged"
    )
    out, err = capfd.readouterr()
    assert out == ""
    assert "kernel_failed" not in err  # pytest's handlers took it; nothing fell back to stderr


def test_debug_events_are_off_by_default_and_on_when_enabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mtia_async")
    s = mtia_sync.Stream()
    s.record_event().synchronize()
    assert _events(caplog) == []
    mtia.set_debug_logging(True)
    try:
        s = mtia_sync.Stream(priority=-1)
        s.record_event().synchronize()
    finally:
        mtia.set_debug_logging(False)
    records = _events(caplog)
    created = [r for r in records if r.event == "stream_created"]  # type: ignore[attr-defined]
    assert [(r.levelname, r.getMessage()) for r in created] == [
        ("DEBUG", f"stream_created device=0 stream={s.stream_id} priority=-1")
    ]
    assert any(r.event == "mark_reached" for r in records)  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="bool"):
        mtia.set_debug_logging("yes")  # type: ignore[arg-type]


def test_debug_events_follow_the_logger_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mtia_async")  # the application filters DEBUG out
    mtia.set_debug_logging(True)
    try:
        mtia_sync.Stream().synchronize()
    finally:
        mtia.set_debug_logging(False)
    assert _events(caplog) == []


def test_runtime_lifecycle_events(caplog: pytest.LogCaptureFixture) -> None:
    from mtia_async.testing import fresh_runtime

    caplog.set_level(logging.DEBUG, logger="mtia_async")
    mtia.set_debug_logging(True)
    try:
        with fresh_runtime(device_count=1, workers=1):
            mtia.init()
    finally:
        mtia.set_debug_logging(False)
    records = _events(caplog)
    events = [r.event for r in records]  # type: ignore[attr-defined]
    assert events.count("runtime_initialized") == 1
    init = next(r for r in records if r.event == "runtime_initialized")  # type: ignore[attr-defined]
    assert (init.devices, init.workers) == (1, 1)  # type: ignore[attr-defined]
    assert "runtime_shutdown" in events


def test_a_handler_that_raises_never_reaches_the_runtime(caplog: pytest.LogCaptureFixture) -> None:
    class Hostile(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler down")

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
            raise RuntimeError("handleError down too")

    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("repr down")

    from mtia_async._log import emit

    logger = logging.getLogger("mtia_async")
    handler = Hostile()
    logger.addHandler(handler)
    try:
        s = mtia_sync.Stream()
        for _ in range(3):
            s.launch(boom, "x")
            with pytest.raises(mtia_sync.KernelError):
                s.synchronize()
        emit("error", "kernel_failed", kernel=BadRepr())  # dropped, not raised
        out: list[int] = []
        s.launch(out.append, 1)
        s.synchronize()
        assert out == [1]
    finally:
        logger.removeHandler(handler)


def test_a_field_named_like_a_record_attribute_is_renamed(caplog: pytest.LogCaptureFixture) -> None:
    from mtia_async._log import emit

    caplog.set_level(logging.ERROR, logger="mtia_async")
    emit("error", "custom", name="n", process=7)
    (record,) = _events(caplog)
    assert record.name == "mtia_async" and record.name_ == "n" and record.process_ == 7  # type: ignore[attr-defined]
    assert record.getMessage() == "custom name='n' process=7"


def test_library_never_configures_structlog_nor_logging_nor_prints() -> None:
    result = run_python(
        """
        import logging, structlog
        before = structlog.get_config()
        import mtia_async.sync as m
        s = m.Stream(); s.launch(print, "kernel-output"); s.synchronize()
        def boom():
            raise ValueError("handled")
        s.launch(boom)
        try:
            s.synchronize()
        except m.KernelError:
            pass
        m.synchronize()
        assert structlog.get_config() == before
        assert not structlog.is_configured()
        lib = logging.getLogger("mtia_async")
        assert lib.handlers == [] and lib.level == logging.NOTSET and lib.propagate
        assert logging.getLogger().handlers == []
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "kernel-output\n"
    # With no logging configuration at all, Python's last-resort handler shows errors on stderr.
    assert "kernel_failed device=0" in result.stderr and "error='ValueError: handled'" in result.stderr


def test_basic_config_receives_the_events() -> None:
    result = run_python(
        """
        import logging, sys
        logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format="%(name)s|%(levelname)s|%(message)s")
        import mtia_async.sync as m
        m.set_debug_logging(True)
        def boom():
            raise ValueError("seen")
        s = m.Stream()
        s.launch(boom)
        try:
            s.synchronize()
        except m.KernelError:
            pass
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "mtia_async|ERROR|kernel_failed device=0 stream=1 kernel='boom' error='ValueError: seen'" in lines
    assert any(line.startswith("mtia_async|DEBUG|runtime_initialized ") for line in lines)
    assert any(line.startswith("mtia_async|DEBUG|stream_created ") for line in lines)


# Regression (issue 15, defect 5).
def test_a_broken_stdout_never_wedges_a_stream() -> None:
    result = run_python(
        """
        import os, sys
        r, w = os.pipe()
        os.close(r)
        os.dup2(w, 1)  # stdout is now a pipe nobody reads: writing raises BrokenPipeError
        os.dup2(w, 2)  # and so is stderr, where the last-resort handler would write
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
        os._exit(42)
        """,
        timeout=30,
    )
    assert result.returncode == 42, result.stderr
