"""Random generators: one counter-based Philox generator per device, seeding and state.

The random kernels that draw from them are in ``kernels.py`` (caller side) and
``philox.py`` (worker side).

Generators
    Each device has a default ``Generator``; ``Generator(device)`` makes more. A
    generator is ``(seed, offset)``: the Philox key is derived from the seed exactly as
    ``numpy.random.Philox(seed)`` derives it (``SeedSequence(seed)``), and the offset
    counts the Philox blocks already handed out (one block = one application of
    Philox4x64-10 to the 256-bit counter = four 64-bit words; see ``philox.py`` for
    how many each kernel takes). So the first ``randn(n)`` after ``manual_seed(s)``
    equals ``numpy.random.Generator(numpy.random.Philox(s)).standard_normal(n,
    dtype=numpy.float32)``.

    The seed of a generator nobody seeded is 67280421310721, torch's default seed for
    its accelerator generators. ``seed()`` draws a fresh 53-bit seed from the OS, as
    torch does for accelerators.

Launch order, not timing
    A random kernel reserves its blocks on the caller, under the generator's lock (read
    the offset, add the kernel's block count, release: the only critical section), then
    enqueues a kernel on the current stream of its device that reads exactly those
    blocks. Results depend only on the seed and the order of the launches, never on the
    stream, the worker thread or the timing; two launches never share a block.

State layout (``get_rng_state()``: a 1-D ``numpy.uint8`` array of 16 bytes)
    ======  =====================================================================
    bytes   content
    ======  =====================================================================
    0-7     the seed, unsigned 64-bit little-endian
    8-15    the Philox offset in blocks, signed 64-bit little-endian, >= 0
    ======  =====================================================================

    As torch's 16-byte accelerator state (seed, then offset). ``set_rng_state``
    rejects a non-array or a non-integer array (``TypeError``), another integer dtype,
    another shape or a negative offset (``ValueError``), at the call and without
    touching the generator. Any other 16 bytes are a valid state, as in torch.

Seeds
    An int in ``[-2**63, 2**64)``; negative seeds wrap modulo ``2**64`` (torch reinterprets
    them as two's complement; its docs' ``0xffff_ffff_ffff_ffff + seed`` is off by one).
    bools, floats and strings raise ``TypeError``, out-of-range ints ``ValueError``.

Before initialisation (torch.mtia's lazy init)
    ``manual_seed``, ``manual_seed_all`` and ``set_rng_state(_all)`` do not initialise:
    they validate their arguments at the call, then queue themselves (only the latest
    ``manual_seed`` and the latest ``manual_seed_all`` are kept; a state is decoded,
    i.e. copied, at the call) and run at init, where a failure (a device that no longer
    exists after ``configure()``) raises ``DeferredMtiaCallError`` with the call site.
    ``seed``, ``seed_all``, ``initial_seed``, ``get_rng_state(_all)`` and the kernels
    initialise the runtime. The default generators belong to one runtime (an init hook
    makes fresh ones), so ``mtia_async.testing.fresh_runtime()`` resets them.
"""

from __future__ import annotations

import functools
import operator
import os
import struct
import weakref
from collections.abc import Callable, Iterable

import numpy as np

from .. import _forksafe as forksafe
from .._core.context import check_range, current_device_index, resolve_device
from .._core.runtime import (
    Runtime,
    add_init_hook,
    get_runtime,
    peek_config,
    queue_call,
    state,
)

__all__ = [
    "DEFAULT_SEED",
    "Generator",
    "check_seed",
    "decode_state",
    "default_generators",
    "encode_state",
    "get_rng_state",
    "get_rng_state_all",
    "index_arg",
    "initial_seed",
    "manual_seed",
    "manual_seed_all",
    "seed",
    "seed_all",
    "set_rng_state",
    "set_rng_state_all",
]

DEFAULT_SEED = 67280421310721  # torch's default_rng_seed_val
STATE_SIZE = 16
MAX_OFFSET = (1 << 63) - 1  # the offset is stored as an int64, as in torch
_U64 = 1 << 64
_state_struct = struct.Struct("<Qq")


# --- seeds and states ----------------------------------------------------------------------
def check_seed(seed: object) -> int:
    """Return ``seed`` as an unsigned 64-bit int (negative seeds wrap modulo 2**64).

    Raises:
        TypeError: not an int (bools, floats and strings are refused).
        ValueError: outside ``[-2**63, 2**64)``.
    """
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r:.60}")
    s = int(seed)
    if not -(1 << 63) <= s < _U64:
        raise ValueError(
            f"seed {s} is out of range: it must be in [-2**63, 2**64 - 1] "
            "(negative seeds wrap modulo 2**64, as torch does)"
        )
    return s % _U64


@functools.lru_cache(maxsize=64)
def _key(seed: int) -> np.ndarray:
    """The Philox key of ``seed``: the one ``numpy.random.Philox(seed)`` uses (read-only)."""
    key = np.random.SeedSequence(seed).generate_state(2, np.uint64)
    key.setflags(write=False)
    return key


def _fresh_seed() -> int:
    return int.from_bytes(os.urandom(8), "little") & ((1 << 53) - 1)


def encode_state(seed: int, offset: int) -> np.ndarray:
    """The 16-byte state array of ``(seed, offset)`` (layout in the module docstring)."""
    return np.frombuffer(_state_struct.pack(seed, offset), np.uint8).copy()


def decode_state(new_state: object) -> tuple[int, int]:
    """Validate a state array and return its ``(seed, offset)`` (a copy of its content).

    Raises:
        TypeError: not a numpy array, or not an integer array.
        ValueError: not a 1-D uint8 array of 16 bytes, or a negative offset.
    """
    if not isinstance(new_state, np.ndarray):
        raise TypeError(
            f"an RNG state must be a numpy uint8 array as get_rng_state() returns, "
            f"got {type(new_state).__name__} {new_state!r:.60}"
        )
    if new_state.dtype.kind not in "iu":
        raise TypeError(f"an RNG state must be a numpy uint8 array, got an array of dtype {new_state.dtype}")
    if new_state.dtype != np.uint8 or new_state.shape != (STATE_SIZE,):
        raise ValueError(
            f"an RNG state is a 1-D uint8 array of {STATE_SIZE} bytes (8 for the seed, 8 for "
            f"the offset), got dtype {new_state.dtype} and shape {new_state.shape}"
        )
    seed, offset = _state_struct.unpack(new_state.tobytes())
    if offset < 0:
        raise ValueError(
            f"invalid RNG state: the Philox offset (bytes 8-15, little-endian int64) is {offset}; "
            "it must be >= 0 (use a state from get_rng_state())"
        )
    return seed, offset


def index_arg(value: object, what: str) -> int:
    """``value`` as an int (``operator.index``); bools, floats and strings raise ``TypeError``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an int, got the bool {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r:.60}") from None


# --- generators ------------------------------------------------------------------------------
class Generator:
    """A counter-based Philox random generator for one device (torch.Generator's API).

    Pass it as ``generator=`` to the random kernels. Thread-safe: each launch reserves
    its slice of the counter under the generator's lock.

    Args:
        device: None (the current device), an int, ``"mtia"``, ``"mtia:N"`` or a device
            object. Making a generator does not initialise the runtime.

    Raises:
        ValueError: a bad device (the message names the valid range).
    """

    __slots__ = ("__weakref__", "_index", "_key", "_lock", "_offset", "_seed")

    def __init__(self, device: object = None) -> None:
        self._setup(resolve_device(device))

    def _setup(self, index: int) -> None:
        self._index = index
        self._lock = forksafe.lock()
        self._seed = DEFAULT_SEED
        self._key = _key(DEFAULT_SEED)
        self._offset = 0

    @classmethod
    def _for_device(cls, index: int) -> Generator:
        gen = object.__new__(cls)
        gen._setup(index)
        return gen

    def __repr__(self) -> str:
        return f"<mtia_async.Generator device=mtia:{self._index} seed={self._seed} offset={self._offset}>"

    @property
    def device(self) -> str:
        """The generator's device, ``"mtia:N"``."""
        return f"mtia:{self._index}"

    def _restore(self, seed: int, offset: int) -> None:
        key = _key(seed)
        with self._lock:
            self._seed, self._key, self._offset = seed, key, offset

    def manual_seed(self, seed: object) -> Generator:
        """Seed the generator (offset back to 0) and return it.

        Raises:
            TypeError: ``seed`` is not an int.
            ValueError: ``seed`` is outside ``[-2**63, 2**64)``.
        """
        self._restore(check_seed(seed), 0)
        return self

    def seed(self) -> int:
        """Seed the generator with a fresh non-deterministic 53-bit seed and return it."""
        s = _fresh_seed()
        self._restore(s, 0)
        return s

    def initial_seed(self) -> int:
        """The seed the generator was last seeded with (an unsigned 64-bit int)."""
        return self._seed

    def get_state(self) -> np.ndarray:
        """The generator's state: 16 ``uint8`` (seed, offset; see the module docs)."""
        with self._lock:
            seed, offset = self._seed, self._offset
        return encode_state(seed, offset)

    def set_state(self, new_state: object) -> Generator:
        """Restore a state from ``get_state()`` and return the generator.

        Raises:
            TypeError / ValueError: a bad state; the generator is left unchanged.
        """
        self._restore(*decode_state(new_state))
        return self

    def get_offset(self) -> int:
        """The Philox offset: how many blocks (4 x 64 bits) launches have reserved."""
        return self._offset

    def set_offset(self, offset: object) -> Generator:
        """Set the Philox offset (in blocks) and return the generator.

        Raises:
            TypeError: not an int.
            ValueError: negative or above 2**63 - 1.
        """
        value = index_arg(offset, "offset")
        if not 0 <= value <= MAX_OFFSET:
            raise ValueError(f"offset must be in [0, 2**63 - 1], got {value}")
        with self._lock:
            self._offset = value
        return self

    def _reserve(self, blocks: int) -> tuple[np.ndarray, int]:
        """Reserve ``blocks`` blocks: return the key and the first counter value."""
        with self._lock:
            start = self._offset
            end = start + blocks
            if end > MAX_OFFSET:
                raise RuntimeError(
                    f"generator offset overflow: {start} + {blocks} blocks exceeds 2**63 - 1; "
                    "reseed it with manual_seed()"
                )
            self._offset = end
            return self._key, start


_defaults: weakref.WeakKeyDictionary[Runtime, list[Generator]] = weakref.WeakKeyDictionary()
_defaults_lock = forksafe.lock()


def _new_defaults(rt: Runtime) -> None:
    with _defaults_lock:
        _defaults[rt] = [Generator._for_device(i) for i in range(rt.device_count)]


add_init_hook(_new_defaults)


def default_generators(rt: Runtime) -> list[Generator]:
    """The default generators of ``rt``'s devices, made at its initialisation."""
    gens = _defaults.get(rt)
    if gens is None:  # rt was initialised before this module was imported
        with _defaults_lock:
            gens = _defaults.get(rt)
            if gens is None:
                gens = _defaults[rt] = [Generator._for_device(i) for i in range(rt.device_count)]
    return gens


def _run_or_queue(fn: Callable[[Runtime], None], key: str | None = None) -> None:
    """Run ``fn(runtime)`` now if initialised, else queue it for init (without initialising)."""
    with state.lock:  # init holds this lock: a call is either queued before it or runs after
        rt = state.runtime
        if rt is None:
            queue_call(fn, key=key)  # the latest call per key runs last, as torch's tracker
            return
    fn(rt)


def _default_at(index: int, rt: Runtime) -> Generator:
    """The default generator of device ``index`` (range checked against ``rt``)."""
    return default_generators(rt)[check_range(index, rt.device_count, index)]


# --- seeding and state API (torch.mtia / torch.cuda) -----------------------------------------
def manual_seed(seed: object) -> None:
    """Seed the current device's generator (deferred, without initialising, before init).

    Raises:
        TypeError: ``seed`` is not an int.
        ValueError: ``seed`` is outside ``[-2**63, 2**64)``.
    """
    s = check_seed(seed)
    index = current_device_index()
    _run_or_queue(lambda rt: _default_at(index, rt)._restore(s, 0), key="manual_seed")


def manual_seed_all(seed: object) -> None:
    """Seed every device's generator (deferred, without initialising, before init).

    Raises:
        TypeError: ``seed`` is not an int.
        ValueError: ``seed`` is outside ``[-2**63, 2**64)``.
    """
    s = check_seed(seed)

    def apply(rt: Runtime) -> None:
        for gen in default_generators(rt):
            gen._restore(s, 0)

    _run_or_queue(apply, key="manual_seed_all")


def seed() -> int:
    """Seed the current device's generator with a fresh random seed; return it."""
    rt = get_runtime()
    return default_generators(rt)[resolve_device(None, rt)].seed()


def seed_all() -> int:
    """Seed every device's generator with one fresh random seed; return it."""
    rt = get_runtime()
    s = _fresh_seed()
    for gen in default_generators(rt):
        gen._restore(s, 0)
    return s


def initial_seed() -> int:
    """The seed of the current device's generator (initialises the runtime)."""
    rt = get_runtime()
    return default_generators(rt)[resolve_device(None, rt)].initial_seed()


def get_rng_state(device: object = "mtia") -> np.ndarray:
    """The state of ``device``'s generator, 16 ``uint8`` (see the module docs).

    Raises:
        ValueError: a bad device.
    """
    rt = get_runtime()
    return default_generators(rt)[resolve_device(device, rt)].get_state()


def get_rng_state_all() -> list[np.ndarray]:
    """The states of every device's generator, by device index."""
    return [gen.get_state() for gen in default_generators(get_runtime())]


def set_rng_state(new_state: object, device: object = "mtia") -> None:
    """Restore ``device``'s generator from ``get_rng_state()`` (deferred before init).

    The state is validated and copied at the call: changing the caller's array later
    has no effect.

    Raises:
        TypeError / ValueError: a bad state or device; no generator changes.
    """
    seed_, offset = decode_state(new_state)
    index = resolve_device(device, state.runtime)
    _run_or_queue(lambda rt: _default_at(index, rt)._restore(seed_, offset))


def set_rng_state_all(new_states: object) -> None:
    """Restore the generators of devices 0, 1, ... from a sequence of states.

    Every state is validated before any is applied.

    Raises:
        TypeError / ValueError: a bad state, or more states than devices.
    """
    if isinstance(new_states, (np.ndarray, str, bytes)) or not isinstance(new_states, Iterable):
        raise TypeError(f"set_rng_state_all expects a list of states, got {type(new_states).__name__}")
    decoded = [decode_state(s) for s in new_states]
    rt = state.runtime
    count = rt.device_count if rt is not None else peek_config().device_count
    if len(decoded) > count:
        raise ValueError(f"set_rng_state_all got {len(decoded)} states for {count} devices")

    def apply(rt: Runtime) -> None:
        gens = [_default_at(i, rt) for i in range(len(decoded))]
        for gen, (s, offset) in zip(gens, decoded):
            gen._restore(s, offset)

    _run_or_queue(apply)
