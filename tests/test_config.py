"""Configuration: ``configure()``, the ``MTIA_ASYNC_*`` environment variables, and their
validation (the environment in fresh interpreters).

Catalogue rows: B7, B8.
"""

from __future__ import annotations

import pytest
from _support import run_python

import mtia_async as mtia
from mtia_async._core.runtime import peek_config
from mtia_async.testing import fresh_runtime


def test_blas_threads_are_capped_while_the_runtime_lives_and_restored_after() -> None:
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with fresh_runtime():
        before = blas_threads()
        mtia.configure(workers=2, blas_threads=1)
        mtia.init()
        assert mtia.get_device_properties()["blas_threads"] == 1
        if before:
            assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
    with fresh_runtime():
        mtia.configure(blas_threads=0)
        mtia.init()
        assert blas_threads() == before
    with pytest.raises(ValueError, match="blas_threads"):
        mtia.configure(blas_threads=-1)


# --- configure() (B7) ----------------------------------------------------------------------------
def test_B7_configure_names_the_bad_setting_and_value_and_refuses_after_init() -> None:
    """``1.5`` (a float) raises ``TypeError``, not ``ValueError``: a wrong type (the
    message names the setting and the value all the same)."""
    with fresh_runtime():
        config = peek_config()
        for bad, error in ((-1, ValueError), (0, ValueError), (1.5, TypeError), ("lots", ValueError),
                           ("8XB", ValueError), (10**20, ValueError), ("999999TiB", ValueError)):  # fmt: skip
            with pytest.raises(error, match=f"device_memory.*{bad!r}|device_memory={bad!r}"):
                mtia.configure(device_memory=bad)
            assert peek_config() == config  # nothing changed
        with pytest.raises(ValueError, match="device_count=0"):
            mtia.configure(device_count=0)
        with pytest.raises(ValueError, match="workers=1000000"):
            mtia.configure(workers=10**6)
        with pytest.raises(TypeError, match="unknown setting 'bogus'"):
            mtia.configure(bogus=1)
        with pytest.raises(ValueError):
            mtia.configure(device_count=2, workers=-1)  # all or nothing: device_count is not applied
        assert peek_config() == config
        mtia.configure(device_count=3, device_memory="256MiB", workers=1)
        assert mtia.device_count() == 3
        mtia.init()
        assert mtia.get_device_properties(2)["total_memory"] == 256 << 20
        with pytest.raises(RuntimeError, match="before the runtime initialises"):
            mtia.configure(workers=2)
        assert mtia.get_device_properties()["workers"] == 1


def test_B7_fractional_byte_count_is_refused() -> None:
    with fresh_runtime(), pytest.raises(ValueError, match="device_memory='1.5'"):
        mtia.configure(device_memory="1.5")


def test_B7_env_device_memory_values_are_refused_at_init() -> None:
    result = run_python(
        """
        import os
        import mtia_async as mtia
        from mtia_async.testing import reset_runtime
        for value in ("-1", "0", "lots", "8XB", "999999TiB"):
            os.environ["MTIA_ASYNC_DEVICE_MEMORY"] = value
            try:
                mtia.init()
                print(value, "accepted")
            except ValueError as exc:
                print(value, f"MTIA_ASYNC_DEVICE_MEMORY={value!r}" in str(exc), mtia.is_initialized())
            reset_runtime()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [f"{v} True False" for v in ("-1", "0", "lots", "8XB", "999999TiB")]


# --- environment variables (B8) ------------------------------------------------------------------
BAD_ENV = {
    "negative": "'-1'",
    "non-numeric": "'lots'",
    "absurdly-large": "'9' * 40",
    "1MB-string": "'x' * 1_000_000",
}


@pytest.mark.parametrize("kind", list(BAD_ENV))
@pytest.mark.parametrize("var", ["MTIA_ASYNC_DEVICE_COUNT", "MTIA_ASYNC_DEVICE_MEMORY", "MTIA_ASYNC_WORKERS"])
def test_B8_bad_env_var_never_breaks_import_and_init_names_it(var: str, kind: str) -> None:
    """The value is set inside the child: an exec'd environment string is capped at
    128 KiB by the kernel, ``os.environ`` is not."""
    result = run_python(
        f"""
        import os
        os.environ[{var!r}] = value = {BAD_ENV[kind]}
        import mtia_async
        print("imported")
        try:
            mtia_async.init()
        except ValueError as exc:
            message = str(exc)
            print("ValueError", message.startswith({var!r} + "=") and value[:20] in message, len(message) < 500)
        else:
            print("no error")
        print("initialized", mtia_async.is_initialized())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == ["imported", "ValueError True True", "initialized False"]


def test_B8_empty_env_values_mean_the_defaults() -> None:
    result = run_python(
        """
        import os
        import mtia_async as m
        print(m.device_count(), m.get_device_properties()["total_memory"], m.get_device_properties()["workers"])
        print(os.cpu_count(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "", "MTIA_ASYNC_DEVICE_MEMORY": " ", "MTIA_ASYNC_WORKERS": ""},
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split("\n")[:2]
    count, memory, workers = map(int, first.split())
    cores, host = map(int, second.split())
    assert (count, memory, workers) == (1, min(16 << 30, host), max(2, cores))


def test_B8_good_env_values_configure_the_runtime() -> None:
    result = run_python(
        """
        import mtia_async as m
        print(m.device_count(), m.get_device_properties(2)["total_memory"], m.get_device_properties()["workers"])
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "3", "MTIA_ASYNC_DEVICE_MEMORY": "512MiB", "MTIA_ASYNC_WORKERS": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", str(512 << 20), "3"]


# Regression (issue 15, defect 13).
def test_decimal_memory_sizes_parse_exactly() -> None:
    with fresh_runtime(device_memory="4.1GB", device_count=1):
        assert mtia.get_device_properties()["total_memory"] == 4_100_000_000
    with fresh_runtime(device_memory="1.5GiB", device_count=1):
        assert mtia.get_device_properties()["total_memory"] == 3 << 29
    with pytest.raises(ValueError, match="whole number of bytes"):
        mtia.configure(device_memory="1.0000000001KB")
