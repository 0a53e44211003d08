"""Helpers shared by the test suite, each defined once here.

``tests/conftest.py`` holds only fixtures and hooks and is never imported by tests;
import helpers from this package instead::

    from _support import MiB, boom, join_all, run_python

It is importable because ``tests/`` has no ``__init__.py``: pytest's default
("prepend") import mode puts ``tests/`` on ``sys.path`` for the test modules.

==============  ==========================================================================
``process``     ``ROOT``, ``SPEC_DIR``, ``run_python``, ``run_module`` (fresh interpreters)
``threads``     ``join_all``, ``wait_until``: waiting under a timeout, failing on a hang
``kernels``     ``boom`` (raises ``ValueError``), ``noop``, ``Payload`` (followed by weakref)
``memory``      ``KiB``/``MiB``/``GiB``; a block's snapshot state; peaks after a reset
``rng``         ``seeded``: seeded randomness, the device generators restored after
``fakes``       ``FakeStream``/``FakeMarker`` for the allocator alone; ``checked``, ``stats_of``
``leakcheck``   ``no_leaks``: device memory, segments and threads as before (catalogue M11)
``sanitizing``  the stream sanitizer: ``held`` (a gated stream), ``race``, ``sanitizer_off``
``cluster``     ``local_cluster``: a real Dask LocalCluster of 2 worker processes (the cluster tests)
``numpy_diff``  the ``test_np_*`` differential helpers: ``device``, ``same``/``close``, ``compare`` (import the module)
==============  ==========================================================================
"""

from __future__ import annotations

from .cluster import local_cluster
from .fakes import FakeMarker, FakeStream, checked, stats_of
from .kernels import Payload, boom, noop
from .leakcheck import LEAK_KEYS, device_usage, no_leaks, settle
from .memory import GiB, KiB, MiB, assert_reset, block_at, block_state, state_at
from .process import ROOT, SPEC_DIR, run_module, run_process, run_python
from .rng import seeded
from .sanitizing import fill_one, held, race, sanitizer_off, source_lines
from .threads import join_all, wait_until

__all__ = [
    "GiB",
    "KiB",
    "LEAK_KEYS",
    "MiB",
    "ROOT",
    "SPEC_DIR",
    "FakeMarker",
    "FakeStream",
    "Payload",
    "assert_reset",
    "block_at",
    "block_state",
    "boom",
    "checked",
    "device_usage",
    "fill_one",
    "held",
    "join_all",
    "local_cluster",
    "no_leaks",
    "noop",
    "race",
    "run_module",
    "run_process",
    "run_python",
    "sanitizer_off",
    "seeded",
    "settle",
    "source_lines",
    "stats_of",
    "state_at",
    "wait_until",
]
