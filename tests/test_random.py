"""Random numbers: seeding, state, deferred calls, distributions, and launch-order determinism.

Catalogue rows: B9.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from _support import join_all, run_python, seeded

import mtia_async
import mtia_async.sync as mtia_sync
from mtia_async._random import generator as _generator
from mtia_async._random import philox as _philox
from mtia_async.testing import fresh_runtime

mtia = mtia_sync
amtia = mtia_async
BF16 = np.dtype(ml_dtypes.bfloat16)
DEFAULT_SEED = 67280421310721


def philox_normal(seed: int, n: int, dtype: Any = np.float32, counter: int = 0) -> np.ndarray:
    """What numpy's Philox gives for ``n`` normals from ``counter`` (the device's reference)."""
    key = np.random.SeedSequence(seed).generate_state(2, np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=counter)).standard_normal(n, dtype=dtype)


def state_bytes(seed: int, offset: int) -> bytes:
    return struct.pack("<Qq", seed, offset)


# --- reference values and layout --------------------------------------------------------------
def test_first_draws_equal_numpy_philox_of_the_seed() -> None:
    mtia.manual_seed(1234)
    a = mtia.randn(1000).numpy()
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.random.Generator(np.random.Philox(1234)).standard_normal(1000, dtype=np.float32))
    mtia.manual_seed(1234)
    b = mtia.rand(7, 3, dtype=np.float64).numpy()
    np.testing.assert_array_equal(b, np.random.Generator(np.random.Philox(1234)).random((7, 3)))


def test_default_seed_and_state_layout() -> None:
    assert mtia.initial_seed() == DEFAULT_SEED
    state = mtia.get_rng_state()
    assert state.dtype == np.uint8 and state.shape == (16,)
    assert state.tobytes() == state_bytes(DEFAULT_SEED, 0)
    mtia.manual_seed(7)
    mtia.randn(100)  # 100 + 6 + 64 = 170 32-bit words -> 22 blocks
    mtia.rand(9)  # 9 32-bit words -> 2 blocks
    mtia.randint(0, 10, (5,))  # 5 64-bit words -> 2 blocks
    assert mtia.get_rng_state().tobytes() == state_bytes(7, 22 + 2 + 2)
    assert mtia.get_rng_state(1).tobytes() == state_bytes(DEFAULT_SEED, 0)  # other device untouched


def test_seeds_wrap_like_torch_and_bad_seeds_are_refused() -> None:
    before = mtia.get_rng_state().tobytes()
    for bad, exc, match in [
        (2**64, ValueError, r"\[-2\*\*63, 2\*\*64 - 1\]"),
        (-(2**63) - 1, ValueError, "out of range"),
        (1.5, TypeError, "seed must be an int, got float"),
        ("1", TypeError, "got str"),
        (True, TypeError, "got bool"),
        (None, TypeError, "got NoneType"),
    ]:
        with pytest.raises(exc, match=match):
            mtia.manual_seed(bad)
        with pytest.raises(exc):
            mtia.manual_seed_all(bad)
        with pytest.raises(exc):
            mtia.Generator().manual_seed(bad)
    assert mtia.get_rng_state().tobytes() == before
    mtia.manual_seed(-1)  # torch reinterprets negative seeds as two's complement
    assert mtia.initial_seed() == 2**64 - 1
    np.testing.assert_array_equal(mtia.randn(5).numpy(), philox_normal(2**64 - 1, 5))
    mtia.manual_seed(-(2**63))
    assert mtia.initial_seed() == 2**63
    mtia.manual_seed(np.uint64(2**64 - 1))
    assert mtia.initial_seed() == 2**64 - 1


def test_seed_and_seed_all_pick_fresh_53_bit_seeds() -> None:
    s1 = mtia.seed()
    assert isinstance(s1, int) and 0 <= s1 < 2**53
    assert mtia.initial_seed() == s1
    assert mtia.get_rng_state(1).tobytes() == state_bytes(DEFAULT_SEED, 0)
    s2 = mtia.seed_all()
    assert s2 != s1
    assert [bytes(s) for s in mtia.get_rng_state_all()] == [state_bytes(s2, 0)] * 2


# --- determinism: seed and launch order only -------------------------------------------------
def _draws() -> list[np.ndarray]:
    return [
        mtia.randn(1000).numpy(),
        mtia.rand(33, dtype=BF16).numpy(),
        mtia.randint(-5, 5, (17,), dtype=np.int16).numpy(),
        mtia.normal(2.0, 3.0, (5, 5), dtype=np.float64).numpy(),
        mtia.randperm(50).numpy(),
        mtia.bernoulli(0.25, (64,)).numpy(),
        mtia.uniform(-1.0, 1.0, (9,), dtype=np.float16).numpy(),
    ]


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_same_seed_same_numbers_across_streams_and_threads() -> None:
    mtia.manual_seed(99)
    reference = _draws()
    mtia.manual_seed(99)
    with mtia.stream(mtia.Stream()):
        _assert_same(_draws(), reference)
    mtia.manual_seed(99)
    results: list[list[np.ndarray]] = []
    t = threading.Thread(target=lambda: results.append(_draws()))
    t.start()
    join_all([t])
    _assert_same(results[0], reference)


def test_same_seed_same_numbers_in_another_process() -> None:
    result = run_python(
        """
        import numpy as np
        import mtia_async.sync as m
        m.manual_seed(2024)
        a = m.randn(64).numpy()
        b = m.randint(0, 1000, (16,)).numpy()
        print(a.tobytes().hex(), b.tobytes().hex())
        """
    )
    assert result.returncode == 0, result.stderr
    mtia.manual_seed(2024)
    a = mtia.randn(64).numpy()
    b = mtia.randint(0, 1000, (16,)).numpy()
    assert result.stdout.split() == [a.tobytes().hex(), b.tobytes().hex()]


def test_two_streams_interleaved_equal_one_stream_sequential() -> None:
    s1, s2 = mtia.Stream(), mtia.Stream()
    mtia.manual_seed(5)
    arrays = []
    for i in range(20):
        with mtia.stream(s1 if i % 2 else s2):
            arrays.append(mtia.randn(20_000))
    mtia.synchronize()  # reading on the default stream must wait for s1 and s2
    got = [a.numpy() for a in arrays]
    mtia.manual_seed(5)
    expected = [mtia.randn(20_000).numpy() for _ in range(20)]
    _assert_same(got, expected)


def test_concurrent_launches_never_overlap_in_the_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    reserved: list[tuple[int, int]] = []
    lock = threading.Lock()
    real = _generator.Generator._reserve

    def spy(self: Any, blocks: int) -> Any:
        key, start = real(self, blocks)
        with lock:
            reserved.append((start, blocks))
        return key, start

    monkeypatch.setattr(_generator.Generator, "_reserve", spy)
    mtia.manual_seed(77)
    n, per_thread, threads = 5000, 10, 4
    out: list[np.ndarray] = []
    barrier = threading.Barrier(threads)

    def draw() -> None:
        s = mtia.Stream()
        barrier.wait()
        with mtia.stream(s):
            arrays = [mtia.randn(n) for _ in range(per_thread)]
            values = [a.numpy() for a in arrays]  # copies on s, after the draws
        with lock:
            out.extend(values)

    workers = [threading.Thread(target=draw) for _ in range(threads)]
    for t in workers:
        t.start()
    join_all(workers)
    # The reserved ranges tile [0, total) without overlap...
    reserved.sort()
    blocks = _philox.blocks_normal(n, False)
    assert reserved == [(k * blocks, blocks) for k in range(threads * per_thread)]
    assert mtia.get_rng_state().tobytes() == state_bytes(77, threads * per_thread * blocks)
    # ...and each array is exactly one slot's numbers: the draws equal the sequential ones.
    expected = {philox_normal(77, n, counter=k * blocks).tobytes() for k in range(threads * per_thread)}
    assert {a.tobytes() for a in out} == expected
    mtia.manual_seed(77)
    assert {mtia.randn(n).numpy().tobytes() for _ in range(threads * per_thread)} == expected


async def test_async_tasks_drawing_at_once_get_disjoint_numbers() -> None:
    amtia.manual_seed(3)
    n = 10_000

    async def task() -> list[np.ndarray]:
        with amtia.stream(amtia.Stream()):
            arrays = [amtia.randn(n) for _ in range(5)]
            await asyncio.sleep(0)
            return [await a.to_host() for a in arrays]

    results = await asyncio.gather(*(task() for _ in range(4)))
    got = sorted(a.tobytes() for r in results for a in r)
    amtia.manual_seed(3)
    expected = sorted([(await amtia.randn(n).to_host()).tobytes() for _ in range(20)])
    assert got == expected
    assert len(set(got)) == 20


# --- the normal kernels' budget -----------------------------------------------------------------
def test_ziggurat_stays_inside_its_reservation() -> None:
    key = np.random.SeedSequence(0).generate_state(2, np.uint64)
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 10, 100, 1000, 10_000]:
        for wide in (False, True):
            budget = _philox.blocks_normal(n, wide)
            for _ in range(200 if n <= 1000 else 20):
                start = int(rng.integers(0, 2**40))
                bg = np.random.Philox(key=key, counter=start)
                np.random.Generator(bg).standard_normal(n, dtype=np.float64 if wide else np.float32)
                used = int(bg.state["state"]["counter"][0]) - start
                assert (_philox.blocks_u64(n) if wide else _philox.blocks_u32(n)) <= used <= budget


def test_overflowing_the_reservation_falls_back_inside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_philox, "SLACK_SHIFT", 63)  # budget: n + 1 words, below the ziggurat's ~1.022 n
    monkeypatch.setattr(_philox, "SLACK_WORDS", 1)
    n = 100_000
    mtia.manual_seed(11)
    a = mtia.randn(n).numpy()
    offset = mtia.get_rng_state()[8:].view(np.int64)[0]
    assert offset == (n + 1 + 7) // 8
    after = mtia.rand(1000).numpy()  # the next slice is untouched by the overflowing ziggurat
    key = np.random.SeedSequence(11).generate_state(2, np.uint64)
    np.testing.assert_array_equal(
        after, np.random.Generator(np.random.Philox(key=key, counter=int(offset))).random(1000, dtype=np.float32)
    )
    assert not np.array_equal(a, philox_normal(11, n))  # Box-Muller, not the ziggurat
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    mtia.manual_seed(11)
    np.testing.assert_array_equal(mtia.randn(n).numpy(), a)  # still a function of the slice


# --- state get/set --------------------------------------------------------------------------------
def test_state_round_trip_mid_sequence() -> None:
    mtia.manual_seed(42)
    mtia.randn(100)
    state = mtia.get_rng_state()
    b, c = mtia.rand(50).numpy(), mtia.randint(0, 9, (20,)).numpy()
    mtia.manual_seed(0)
    mtia.randn(10)
    mtia.set_rng_state(state)
    np.testing.assert_array_equal(mtia.rand(50).numpy(), b)
    np.testing.assert_array_equal(mtia.randint(0, 9, (20,)).numpy(), c)
    assert mtia.initial_seed() == 42


def test_state_all_round_trip_and_device_argument_forms() -> None:
    mtia.manual_seed_all(8)
    with mtia.device(1):
        mtia.randn(10)
    states = mtia.get_rng_state_all()
    assert [s.tobytes() for s in states] == [state_bytes(8, 0), state_bytes(8, 10)]
    for dev in (1, "mtia:1", mtia_sync.device(1)):
        assert mtia.get_rng_state(dev).tobytes() == state_bytes(8, 10)
    mtia.manual_seed_all(0)
    mtia.set_rng_state_all(states)
    assert [s.tobytes() for s in mtia.get_rng_state_all()] == [state_bytes(8, 0), state_bytes(8, 10)]
    mtia.set_rng_state(states[0], "mtia:1")
    assert mtia.get_rng_state(1).tobytes() == state_bytes(8, 0)
    with pytest.raises(ValueError, match=r"out of index range: expected 0\.\.1"):
        mtia.get_rng_state(2)
    with pytest.raises(ValueError, match="out of index range"):
        mtia.set_rng_state(states[0], 5)
    with pytest.raises(ValueError, match="3 states for 2 devices"):
        mtia.set_rng_state_all(states + states[:1])


_GOOD = np.frombuffer(state_bytes(1, 0), np.uint8)
BAD_STATES = {
    "list": (list(_GOOD), TypeError),
    "str": ("0" * 16, TypeError),
    "bytes": (_GOOD.tobytes(), TypeError),
    "float32-array": (_GOOD.astype(np.float32), TypeError),
    "float64-array": (_GOOD.astype(np.float64), TypeError),
    "bool-array": (_GOOD.astype(bool), TypeError),
    "int8-array": (_GOOD.astype(np.int8), ValueError),
    "uint16-array": (_GOOD.astype(np.uint16), ValueError),
    "truncated": (_GOOD[:15].copy(), ValueError),
    "extended": (np.concatenate([_GOOD, _GOOD[:1]]), ValueError),
    "2-d": (_GOOD.reshape(2, 8).copy(), ValueError),
    "negative-offset": (np.frombuffer(state_bytes(1, 0)[:8] + struct.pack("<q", -5), np.uint8), ValueError),
}


@pytest.mark.parametrize(("bad", "exc"), list(BAD_STATES.values()), ids=list(BAD_STATES))
def test_bad_states_are_refused_and_nothing_changes(bad: object, exc: type[Exception]) -> None:
    mtia.manual_seed(5)
    mtia.randn(3)
    before = [s.tobytes() for s in mtia.get_rng_state_all()]
    with pytest.raises(exc, match="RNG state|offset"):
        mtia.set_rng_state(bad)
    with pytest.raises(exc):
        mtia.set_rng_state_all([mtia.get_rng_state(0), bad])  # the good first state is not applied either
    gen = mtia.Generator().manual_seed(5)
    gen_before = gen.get_state().tobytes()
    with pytest.raises(exc):
        gen.set_state(bad)
    assert gen.get_state().tobytes() == gen_before
    assert [s.tobytes() for s in mtia.get_rng_state_all()] == before


def test_bad_state_before_init_raises_at_the_call_and_queues_nothing() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        mtia.set_rng_state(np.zeros(15, np.uint8))
    with pytest.raises(TypeError):
        mtia.set_rng_state([0] * 16)
    assert not mtia.is_initialized()
    assert mtia.get_rng_state().tobytes() == state_bytes(DEFAULT_SEED, 0)


# --- lazy init -------------------------------------------------------------------------------------
def test_seeding_before_init_is_deferred_and_applied_at_init() -> None:
    mtia.manual_seed(1)
    mtia.manual_seed_all(2)
    mtia.manual_seed(3)  # only the latest of each is kept; the latest call runs last
    with mtia.device(1):
        mtia.manual_seed(4)  # the current device at the call, not at init
    assert not mtia.is_initialized()
    assert [bytes(s) for s in mtia.get_rng_state_all()] == [state_bytes(2, 0), state_bytes(4, 0)]


def test_seed_all_after_seed_before_init_wins() -> None:
    mtia.manual_seed(3)
    mtia.manual_seed_all(2)
    assert not mtia.is_initialized()
    assert [bytes(s) for s in mtia.get_rng_state_all()] == [state_bytes(2, 0)] * 2


def test_set_rng_state_before_init_copies_the_callers_array() -> None:
    state = np.frombuffer(state_bytes(31, 12), np.uint8).copy()
    mtia.set_rng_state(state, device=1)
    state[:] = 0
    assert not mtia.is_initialized()
    assert mtia.get_rng_state(1).tobytes() == state_bytes(31, 12)
    assert mtia.get_rng_state(0).tobytes() == state_bytes(DEFAULT_SEED, 0)


def test_deferred_call_failing_at_init_names_its_call_site() -> None:
    mtia.set_rng_state(np.frombuffer(state_bytes(1, 0), np.uint8), device=1)
    mtia.configure(device_count=1)  # device 1 no longer exists at init
    with pytest.raises(mtia_async.DeferredMtiaCallError) as info:
        mtia.init()
    message = str(info.value)
    assert "failed lazily at initialization" in message
    assert "originally invoked at" in message and "test_random.py" in message
    assert "out of index range" in message
    assert not mtia.is_initialized()


def test_deferred_seeding_in_a_fresh_interpreter() -> None:
    result = run_python(
        """
        import numpy as np
        import mtia_async.sync as m
        api = lambda n: getattr(m, n)
        api("manual_seed")(123)
        print(m.is_initialized())
        print(api("initial_seed")(), m.is_initialized())
        print(api("randn")(4).numpy().tobytes().hex())
        """,
        env={"MTIA_ASYNC_DEVICE_COUNT": "2"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "False"
    assert lines[1] == "123 True"
    assert lines[2] == philox_normal(123, 4).tobytes().hex()


# --- generators --------------------------------------------------------------------------------------
def test_generator_objects() -> None:
    gen = mtia.Generator(device="mtia:1")
    assert not mtia.is_initialized()  # making a generator does not initialise
    assert gen.device == "mtia:1" and gen.initial_seed() == DEFAULT_SEED
    assert gen.manual_seed(9) is gen
    a = mtia.randn(100, generator=gen)
    assert a.device == 1
    np.testing.assert_array_equal(a.numpy(), philox_normal(9, 100))
    assert mtia.get_rng_state(1).tobytes() == state_bytes(DEFAULT_SEED, 0)  # the default one is untouched
    assert gen.get_offset() == _philox.blocks_normal(100, False)
    state = gen.get_state()
    x = mtia.rand(10, generator=gen).numpy()
    assert gen.set_state(state) is gen
    np.testing.assert_array_equal(mtia.rand(10, generator=gen, device=1).numpy(), x)
    with pytest.raises(ValueError, match="generator is on mtia:1 but the output is on mtia:0"):
        mtia.randn(3, generator=gen, device=0)
    with pytest.raises(TypeError, match="generator must be a mtia_async.Generator"):
        mtia.randn(3, generator=np.random.default_rng())
    with pytest.raises(ValueError, match="out of index range"):
        mtia.Generator(device=2)
    s = gen.seed()
    assert gen.initial_seed() == s and gen.get_offset() == 0


def test_generator_reservations_are_atomic() -> None:
    gen = mtia.Generator()
    starts: list[int] = []
    barrier = threading.Barrier(8)

    def reserve() -> None:
        barrier.wait()
        mine = [gen._reserve(3)[1] for _ in range(2000)]
        starts.extend(mine)  # list.extend is atomic

    threads = [threading.Thread(target=reserve) for _ in range(8)]
    for t in threads:
        t.start()
    join_all(threads)
    assert sorted(starts) == list(range(0, 3 * 16000, 3))
    assert gen.get_offset() == 3 * 16000


def test_fresh_runtime_resets_the_generators() -> None:
    mtia.manual_seed(5)
    mtia.randn(10)
    from mtia_async.testing import fresh_runtime

    with fresh_runtime(device_count=1, workers=1):
        assert mtia.get_rng_state().tobytes() == state_bytes(DEFAULT_SEED, 0)


# --- distributions (10**5 samples, fixed seeds) ------------------------------------------------------
N = 100_000


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16], ids=str)
def test_rand_and_randn_distributions(dtype: Any) -> None:
    mtia.manual_seed(100)
    u = mtia.rand(N, dtype=dtype).numpy()
    assert u.dtype == np.dtype(dtype) and u.shape == (N,)
    uf = u.astype(np.float64)
    assert uf.min() >= 0.0 and uf.max() < 1.0
    assert abs(uf.mean() - 0.5) < 0.01 and abs(uf.var() - 1 / 12) < 0.005
    z = mtia.randn(100, 1000, dtype=dtype).numpy().astype(np.float64)
    assert z.shape == (100, 1000)
    assert abs(z.mean()) < 0.02 and abs(z.var() - 1.0) < 0.03


def test_normal_and_uniform_distributions() -> None:
    mtia.manual_seed(101)
    x = mtia.normal(3.0, 2.0, (N,)).numpy()
    assert abs(x.mean() - 3.0) < 0.05 and abs(x.std() - 2.0) < 0.05
    assert np.all(mtia.normal(1.5, 0.0, (10,)).numpy() == 1.5)
    for dtype in (np.float32, np.float64, np.float16, BF16):
        u = mtia.uniform(-2.0, 5.0, (N,), dtype=dtype).numpy().astype(np.float64)
        assert u.min() >= -2.0 and u.max() < 5.0
        assert abs(u.mean() - 1.5) < 0.05 and abs(u.var() - 49 / 12) < 0.1


def test_randint_distribution_and_dtypes() -> None:
    mtia.manual_seed(102)
    r = mtia.randint(-3, 7, (N,)).numpy()
    assert r.dtype == np.int64 and r.min() == -3 and r.max() == 6
    counts = np.bincount(r + 3)
    assert counts.min() > N / 10 * 0.9
    for only_high in (mtia.randint(10, (1000,)), mtia.randint(10, size=1000), mtia.randint(0, 10, size=(1000,))):
        values = only_high.numpy()
        assert values.shape == (1000,) and values.min() == 0 and values.max() == 9
    assert mtia.randint(0, 256, (1000,), dtype=np.uint8).numpy().dtype == np.uint8
    big = mtia.randint(0, 2**64, (1000,), dtype=np.uint64).numpy()
    assert big.max() > 2**63  # the whole range is reachable
    full = mtia.randint(-(2**63), 2**63, (1000,)).numpy()
    assert full.min() < -(2**61) and full.max() > 2**61
    f = mtia.randint(0, 5, (100,), dtype=np.float32).numpy()
    assert f.dtype == np.float32 and set(np.unique(f)) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_randperm_is_a_permutation() -> None:
    mtia.manual_seed(103)
    p = mtia.randperm(N).numpy()
    assert p.dtype == np.int64
    np.testing.assert_array_equal(np.sort(p), np.arange(N))
    assert not np.array_equal(p, np.arange(N))
    assert mtia.randperm(0).numpy().shape == (0,)
    np.testing.assert_array_equal(np.sort(mtia.randperm(200, dtype=np.uint8).numpy()), np.arange(200))


def test_bernoulli_scalar_and_array_p() -> None:
    mtia.manual_seed(104)
    b = mtia.bernoulli(0.3, (N,)).numpy()
    assert b.dtype == np.float32 and set(np.unique(b)) == {0.0, 1.0}
    assert abs(b.mean() - 0.3) < 0.01
    assert mtia.bernoulli(0.0, (100,)).numpy().sum() == 0
    assert mtia.bernoulli(1.0, (100,)).numpy().sum() == 100
    probs = mtia.asarray(np.repeat(np.array([0.0, 0.5, 1.0], np.float32), 20_000).reshape(3, 20_000))
    drawn = mtia.bernoulli(probs)
    assert drawn.shape == (3, 20_000) and drawn.dtype == np.float32
    host = drawn.numpy()
    assert host[0].sum() == 0 and host[2].sum() == 20_000 and abs(host[1].mean() - 0.5) < 0.02
    assert mtia.bernoulli(probs, dtype=bool).numpy().dtype == np.bool_


def test_bernoulli_array_outside_0_1_fails_in_the_kernel() -> None:
    probs = mtia.asarray(np.array([0.5, 1.5], np.float32))
    out = mtia.bernoulli(probs)
    with pytest.raises(mtia_async.KernelError, match=r"in \[0, 1\], found 1\.5"):
        out.numpy()


# --- bad arguments ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: mtia.randn(-1), ValueError, "negative"),
        (lambda: mtia.randn(2.5), TypeError, "shape"),
        (lambda: mtia.rand((2, "3")), TypeError, "shape"),
        (lambda: mtia.randn(3, dtype=np.int64), TypeError, "int64"),
        (lambda: mtia.rand(3, dtype=np.complex64), TypeError, "complex64"),
        (lambda: mtia.rand(3, dtype="nonsense"), TypeError, "nonsense"),
        (lambda: mtia.randn(3, device=5), ValueError, r"out of index range: expected 0\.\.1"),
        (lambda: mtia.randn(3, device="cpu"), ValueError, "Expected a mtia device"),
        (lambda: mtia.randint(5, 5, (3,)), ValueError, "low < high"),
        (lambda: mtia.randint(10), TypeError, "needs a size"),
        (lambda: mtia.randint(1.5, 3, (2,)), TypeError, "low must be an int"),
        (lambda: mtia.randint(0, 300, (2,), dtype=np.uint8), ValueError, "does not fit dtype uint8"),
        (lambda: mtia.randint(-1, 3, (2,), dtype=np.uint32), ValueError, "does not fit"),
        (lambda: mtia.randint(0, 2, (2,), dtype=bool), TypeError, "bool"),
        (lambda: mtia.normal(0.0, -1.0, (2,)), ValueError, "std >= 0"),
        (lambda: mtia.normal(0.0, 1.0), TypeError, "needs a size"),
        (lambda: mtia.normal(float("nan"), 1.0, (2,)), ValueError, "finite"),
        (lambda: mtia.normal("0", 1.0, (2,)), TypeError, "real number"),
        (lambda: mtia.uniform(1.0, 1.0, (2,)), ValueError, "low < high"),
        (lambda: mtia.uniform(2.0, 1.0, (2,)), ValueError, "low < high"),
        (lambda: mtia.bernoulli(1.5, (2,)), ValueError, r"0 <= p <= 1"),
        (lambda: mtia.bernoulli(-0.1, (2,)), ValueError, r"0 <= p <= 1"),
        (lambda: mtia.bernoulli(True, (2,)), TypeError, "real number"),
        (lambda: mtia.randperm(-1), ValueError, "n >= 0"),
        (lambda: mtia.randperm(300, dtype=np.int8), ValueError, "does not fit"),
        (lambda: mtia.randperm(3.0), TypeError, "n must be an int"),
        (lambda: mtia.randn(1 << 30, 4), mtia_async.OutOfMemoryError, "Tried to allocate"),
    ],
)
def test_bad_arguments_raise_at_the_call_and_reserve_nothing(call: Any, exc: type[Exception], match: str) -> None:
    mtia.manual_seed(1)
    before = [s.tobytes() for s in mtia.get_rng_state_all()]
    with pytest.raises(exc, match=match):
        call()
    assert [s.tobytes() for s in mtia.get_rng_state_all()] == before


def test_empty_draws_reserve_nothing() -> None:
    mtia.manual_seed(1)
    for a in (mtia.randn(0), mtia.rand(3, 0), mtia.randint(0, 4, (0,)), mtia.randperm(0), mtia.bernoulli(0.5, (0, 2))):
        assert a.size == 0
    assert mtia.get_rng_state().tobytes() == state_bytes(1, 0)


# --- bad states and seeds, cloned states (B9) ----------------------------------------------------
def test_B9_bad_rng_states_and_seeds_are_refused_byte_identically() -> None:
    """``manual_seed(-1)`` is accepted: it wraps to 2**64 - 1, as torch does (choice)."""
    with seeded(9):
        mtia.randn(7)
        good = mtia.get_rng_state()
        before = [s.tobytes() for s in mtia.get_rng_state_all()]
        bad_states: list[tuple[object, type]] = [
            (good.astype(np.float32), TypeError),
            (good.astype(np.float64), TypeError),
            (list(good), TypeError),
            ("x" * 16, TypeError),
            (good.tobytes(), TypeError),
            (good[:15].copy(), ValueError),
            (np.concatenate([good, good[:1]]), ValueError),
            (good.astype(np.int64), ValueError),
        ]
        for bad, error in bad_states:
            with pytest.raises(error):
                mtia.set_rng_state(bad)
            assert [s.tobytes() for s in mtia.get_rng_state_all()] == before
        for seed, error in ((2**64, ValueError), (-(2**63) - 1, ValueError), (1.5, TypeError), ("1", TypeError),
                            (True, TypeError), (None, TypeError)):  # fmt: skip
            for fn in (mtia.manual_seed, mtia.manual_seed_all):
                with pytest.raises(error):
                    fn(seed)
                assert [s.tobytes() for s in mtia.get_rng_state_all()] == before
        mtia.manual_seed(-1)
        assert mtia.initial_seed() == 2**64 - 1
        # Random bytes: any 16 bytes with a non-negative offset are a state (torch's rule).
        rs = np.random.default_rng(9)
        for _ in range(200):
            raw = rs.integers(0, 256, 16, dtype=np.uint8)
            current = mtia.get_rng_state().tobytes()
            if int.from_bytes(raw[8:].tobytes(), "little", signed=True) < 0:
                with pytest.raises(ValueError, match="offset"):
                    mtia.set_rng_state(raw)
                assert mtia.get_rng_state().tobytes() == current
            else:
                mtia.set_rng_state(raw)
                assert mtia.get_rng_state().tobytes() == raw.tobytes()
        # A get -> set round trip reproduces the sequence.
        state = mtia.get_rng_state()
        x = mtia.randn(100).numpy()
        mtia.randn(5)
        mtia.set_rng_state(state)
        np.testing.assert_array_equal(mtia.randn(100).numpy(), x)


def test_B9_state_set_before_init_is_cloned() -> None:
    with fresh_runtime(device_count=1, workers=2):
        state = np.random.default_rng(3).integers(0, 128, 16, dtype=np.uint8)  # offset byte 15 < 128: >= 0
        expected = state.tobytes()
        mtia.set_rng_state(state)
        state[:] = 0  # mutating the caller's buffer after the call has no effect
        assert not mtia.is_initialized()
        assert mtia.get_rng_state().tobytes() == expected


# Regression (issue 15, defect 4).
@pytest.mark.parametrize(
    ("low", "high", "dtype"),
    [(0.0, 1e5, np.float16), (-3e38, 3e38, np.float32), (0.0, 1e39, np.float32), (-1e5, 0.0, ml_dtypes.bfloat16)],
)
def test_uniform_refuses_a_range_the_dtype_cannot_represent(low: float, high: float, dtype: object) -> None:
    if dtype is ml_dtypes.bfloat16:
        x = mtia_sync.uniform(low, high, (1000,), dtype=dtype)  # bfloat16 reaches 3.4e38: fine
        values = x.numpy().astype(np.float64)
        assert (values >= low).all() and (values < high).all() and len(set(values)) > 10
        return
    with pytest.raises(ValueError, match="out of bounds|exceed"):
        mtia_sync.uniform(low, high, (1000,), dtype=dtype)
