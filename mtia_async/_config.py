"""Runtime configuration: environment variables, ``configure()``, and their validation.

Settings are read once, when the runtime initialises. ``configure()`` overrides the
environment and must be called before initialisation. A bad environment value never
breaks ``import mtia_async``: it is reported by ``init()`` (or the first call that
needs the configuration) as a ``ValueError`` naming the variable and the value.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["ENV_VARS", "SANITIZE_ENV", "Config", "parse_memory", "resolve_config", "sanitize_mode", "validate_setting"]

ENV_VARS = {
    "device_count": "MTIA_ASYNC_DEVICE_COUNT",
    "device_memory": "MTIA_ASYNC_DEVICE_MEMORY",
    "workers": "MTIA_ASYNC_WORKERS",
    "cluster": "MTIA_ASYNC_CLUSTER",
}
SETTINGS = (*ENV_VARS, "blas_threads", "devices_per_worker", "cluster_timeout")
SANITIZE_ENV = "MTIA_ASYNC_SANITIZE"  # the stream sanitizer at init (not a configure() setting)

MAX_DEVICES = 64
MAX_WORKERS = 256
_DEFAULT_MEMORY = 16 << 30

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 10**3,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 10**6,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 10**9,
    "t": 1 << 40,
    "tib": 1 << 40,
    "tb": 10**12,
}
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
# A Dask address: "tcp://host:port" (any comm scheme Dask knows), or "host:port" (tcp).
_ADDRESS_RE = re.compile(r"^(?:(?:tcp|tls|inproc|ucx|ws|wss)://)?(?:\[[0-9a-fA-F:.]+\]|[\w.-]+)(?::\d{1,5})?(?:/\S*)?$")
MAX_DEVICES_PER_WORKER = 16


@dataclass(frozen=True)
class Config:
    """The settings the runtime was initialised with."""

    device_count: int
    device_memory: int
    workers: int
    blas_threads: int  # BLAS threads per process while the runtime lives; 0 = leave BLAS alone
    cluster: object = None  # None: local devices; else a Dask address, Client or cluster (docs/cluster.md)
    devices_per_worker: int = 1  # with a cluster: devices held by each Dask worker
    cluster_timeout: int = 30  # with a cluster: seconds init may take to reach it
    sanitize: str = ""  # MTIA_ASYNC_SANITIZE: "" (leave the stream sanitizer as it is), "raise" or "warn"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "...'"


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 50


def default_workers() -> int:
    """Return the default number of kernel worker threads per device (cores, at least 2)."""
    return max(2, os.cpu_count() or 2)


def parse_memory(value: object, name: str) -> int:
    """Parse a memory size given as bytes (int) or a string with a unit ("512MiB", "8GiB").

    Raises:
        ValueError: the value is not a positive size the host can back; the message
            names ``name`` and the value.
        TypeError: the value is neither an int nor a str.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(
            f"{name} must be an int (bytes) or a str such as '512MiB', got {type(value).__name__} {_short(value)}"
        )
    if isinstance(value, int):
        nbytes = value
    else:
        match = _MEM_RE.match(value) if len(value) < 64 else None
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"{name}={_short(value)} is not a memory size; use bytes or a number with a unit "
                "(B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. '512MiB' or '8GiB'"
            )
        exact = Fraction(match.group(1)) * _UNITS[unit]  # exact: "4.1GB" is 4_100_000_000 bytes
        if exact.denominator != 1:
            raise ValueError(
                f"{name}={_short(value)} is not a whole number of bytes; use an integer number of "
                "bytes or a unit, e.g. '512MiB' or '1.5GiB'"
            )
        nbytes = int(exact)
    if nbytes <= 0:
        raise ValueError(f"{name}={_short(value)} must be a positive number of bytes, e.g. '8GiB'")
    host = _host_memory()
    if nbytes > host:
        raise ValueError(
            f"{name}={_short(value)} ({nbytes} bytes) is larger than this host can back "
            f"({host} bytes of RAM); choose at most that"
        )
    return nbytes


def _parse_int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,12}", text):
            raise ValueError(f"{name}={_short(value)} is not an integer; expected {low}..{high}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int in {low}..{high}, got {type(value).__name__} {_short(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range; expected {low}..{high}")
    return value


def check_cluster(value: object, name: str = "cluster") -> object:
    """Validate the ``cluster`` setting: None, a Dask address, or a distributed Client or cluster.

    Raises:
        ValueError: a str that is not a Dask address (``tcp://host:port``, ``host:port``).
        TypeError: neither None, a str, nor a ``distributed.Client`` / cluster object.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 300 or not _ADDRESS_RE.match(text):
            raise ValueError(
                f"{name}={_short(value)} is not a Dask scheduler address; use 'tcp://HOST:PORT' (e.g. "
                "'tcp://127.0.0.1:8786', as `dask scheduler` prints) or HOST:PORT"
            )
        return text
    module = sys.modules.get("distributed")
    if module is not None and isinstance(value, (module.Client, module.deploy.Cluster)):
        return value
    raise TypeError(
        f"{name} must be a Dask scheduler address (str), a distributed.Client or a distributed.LocalCluster "
        f"(or another distributed cluster object), got {type(value).__name__} {_short(value)}"
    )


def validate_setting(key: str, value: object, name: str | None = None) -> object:
    """Validate one setting and return its normalised value.

    Args:
        key: ``device_count``, ``device_memory``, ``workers``, ``blas_threads``,
            ``cluster``, ``devices_per_worker`` or ``cluster_timeout``.
        value: the raw value (int, or str as found in the environment).
        name: how to name the setting in messages (defaults to ``key``).
    """
    label = name or key
    if key == "cluster":
        return check_cluster(value, label)
    if key == "devices_per_worker":
        return _parse_int(value, label, 1, MAX_DEVICES_PER_WORKER)
    if key == "cluster_timeout":
        return _parse_int(value, label, 1, 3600)
    if key == "device_count":
        return _parse_int(value, label, 1, MAX_DEVICES)
    if key == "workers":
        return _parse_int(value, label, 1, MAX_WORKERS)
    if key == "device_memory":
        return parse_memory(value, label)
    if key == "blas_threads":
        return _parse_int(value, label, 0, MAX_WORKERS)
    raise TypeError(f"unknown setting {key!r}; valid settings are {', '.join(SETTINGS)}")


def sanitize_mode(raw: str) -> str:
    """Parse ``MTIA_ASYNC_SANITIZE``: ``""`` (unset or ``0``), ``"raise"`` (``1`` or ``raise``) or ``"warn"``.

    Raises:
        ValueError: any other value, named in the message with the valid ones.
    """
    text = raw.strip().lower()
    if text in ("", "0"):
        return ""
    if text in ("1", "raise"):
        return "raise"
    if text == "warn":
        return "warn"
    raise ValueError(
        f"{SANITIZE_ENV}={_short(raw)} is not a stream sanitizer setting; use 1 (UnsynchronizedAccessError at "
        "the launch that races), warn (SanitizerWarning instead) or 0 (off)"
    )


def resolve_config(overrides: dict[str, object]) -> Config:
    """Combine ``configure()`` overrides, environment variables and defaults.

    Raises:
        ValueError: an environment variable holds a bad value (named in the message).
    """
    values: dict[str, object] = {}
    for key, env in ENV_VARS.items():
        if key in overrides:
            values[key] = overrides[key]
            continue
        raw = os.environ.get(env, "")
        if raw.strip() == "":
            continue
        try:
            values[key] = validate_setting(key, raw, env)
        except TypeError as exc:  # pragma: no cover - env values are always str
            raise ValueError(str(exc)) from None
    if values.get("cluster") is not None and "device_count" in overrides:
        raise ValueError(
            f"configure(device_count={overrides['device_count']!r}) cannot be combined with a cluster: its workers "
            "decide how many devices there are (workers x devices_per_worker); drop device_count"
        )
    workers = _int(values.get("workers", default_workers()))
    return Config(
        device_count=_int(values.get("device_count", 1)),
        device_memory=_int(values.get("device_memory", min(_DEFAULT_MEMORY, _host_memory()))),
        workers=workers,
        blas_threads=_int(overrides.get("blas_threads", max(1, (os.cpu_count() or 1) // workers))),
        cluster=values.get("cluster"),
        devices_per_worker=_int(overrides.get("devices_per_worker", 1)),
        cluster_timeout=_int(overrides.get("cluster_timeout", 30)),
        sanitize=sanitize_mode(os.environ.get(SANITIZE_ENV, "")),
    )


def _int(value: object) -> int:
    assert isinstance(value, int)  # validated by validate_setting
    return value
