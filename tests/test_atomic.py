"""Shared-memory atomics (`mpgo._transport._atomic`), both implementations.

Every test runs against the C extension ("c") and the semaphore fallback
("semaphores"); the C case is skipped only when the optional extension is not
built. Each test attaches its own anonymous mmap and restores the previously
attached arena afterwards.
"""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mpgo._transport import _atomic
from mpgo._transport._atomic import Atomics

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
SIZE = 4096
ROOT = Path(__file__).resolve().parents[1]


def _get(name: str) -> Atomics:
    try:
        return _atomic.implementation(name)
    except ImportError:
        pytest.skip("mpgo._speedups is not built")


@pytest.fixture
def mm() -> Iterator[mmap.mmap]:
    m = mmap.mmap(-1, SIZE)  # anonymous MAP_SHARED: shared with forked children
    yield m


@pytest.fixture(params=["c", "semaphores"])
def impl(request: pytest.FixtureRequest, mm: mmap.mmap) -> Iterator[Atomics]:
    im = _get(request.param)
    prev = im.arena()
    im.attach(mm)
    try:
        yield im
    finally:
        if prev is None:
            im.detach()
        else:
            im.attach(prev)
        mm.close()  # BufferError here would mean the arena export leaked
        assert im.arena() is prev


def word(m: mmap.mmap, off: int) -> int:
    v: int = struct.unpack_from("=q", m, off)[0]
    return v


def put(m: mmap.mmap, off: int, v: int) -> None:
    struct.pack_into("=q", m, off, v)


# -- each operation: return value and effect ---------------------------------


def test_store_writes_exactly_one_word_and_load_reads_it(impl: Atomics, mm: mmap.mmap) -> None:
    assert impl.store(16, 0x0102030405060708) is None
    assert word(mm, 16) == 0x0102030405060708
    assert word(mm, 8) == 0 and word(mm, 24) == 0
    put(mm, 32, -12345)
    assert impl.load(32) == -12345
    assert impl.load(16) == 0x0102030405060708
    assert impl.load(0) == 0


def test_add_returns_new_value(impl: Atomics, mm: mmap.mmap) -> None:
    assert impl.add(8, 5) == 5
    assert impl.add(8, 5) == 10
    assert impl.add(8, -12) == -2
    assert impl.add(8, 0) == -2
    assert word(mm, 8) == -2
    assert word(mm, 0) == 0 and word(mm, 16) == 0


def test_cas_succeeds_only_on_expected_value(impl: Atomics, mm: mmap.mmap) -> None:
    put(mm, 24, 7)
    assert impl.cas(24, 8, 100) is False
    assert word(mm, 24) == 7
    assert impl.cas(24, 7, 100) is True
    assert word(mm, 24) == 100
    assert impl.cas(24, 7, 200) is False
    assert word(mm, 24) == 100
    assert impl.cas(24, 100, -1) is True
    assert word(mm, 24) == -1


def test_swap_returns_old_value(impl: Atomics, mm: mmap.mmap) -> None:
    put(mm, 40, 11)
    assert impl.swap(40, 22) == 11
    assert word(mm, 40) == 22
    assert impl.swap(40, -3) == 22
    assert word(mm, 40) == -3


def test_fetch_or_returns_old_value(impl: Atomics, mm: mmap.mmap) -> None:
    put(mm, 48, 0b0101)
    assert impl.fetch_or(48, 0b0011) == 0b0101
    assert word(mm, 48) == 0b0111
    assert impl.fetch_or(48, INT64_MIN) == 0b0111  # the sign bit
    assert word(mm, 48) == INT64_MIN | 0b0111


def test_fetch_and_returns_old_value(impl: Atomics, mm: mmap.mmap) -> None:
    put(mm, 56, 0b1110)
    assert impl.fetch_and(56, 0b0111) == 0b1110
    assert word(mm, 56) == 0b0110
    put(mm, 56, -1)
    assert impl.fetch_and(56, ~1) == -1  # clear bit 0 with a negative mask
    assert word(mm, 56) == -2


# -- int64 limits --------------------------------------------------------------


def test_int64_limits_round_trip(impl: Atomics, mm: mmap.mmap) -> None:
    for v in (INT64_MAX, INT64_MIN, -1):
        impl.store(0, v)
        assert word(mm, 0) == v
        assert impl.load(0) == v
    assert impl.swap(0, INT64_MAX) == -1
    assert impl.cas(0, INT64_MAX, INT64_MIN) is True
    assert impl.load(0) == INT64_MIN


def test_add_wraps_at_64_bits(impl: Atomics, mm: mmap.mmap) -> None:
    put(mm, 0, INT64_MAX)
    assert impl.add(0, 1) == INT64_MIN
    assert impl.add(0, -1) == INT64_MAX
    put(mm, 0, INT64_MIN)
    assert impl.add(0, INT64_MIN) == 0


@pytest.mark.parametrize("bad", [INT64_MAX + 1, INT64_MIN - 1, 1 << 100])
def test_values_outside_int64_raise_overflow_and_change_nothing(
    impl: Atomics, mm: mmap.mmap, bad: int
) -> None:
    put(mm, 8, 42)
    calls: list[Callable[[], Any]] = [
        lambda: impl.store(8, bad),
        lambda: impl.add(8, bad),
        lambda: impl.cas(8, bad, 0),
        lambda: impl.cas(8, 42, bad),
        lambda: impl.swap(8, bad),
        lambda: impl.fetch_or(8, bad),
        lambda: impl.fetch_and(8, bad),
    ]
    for call in calls:
        with pytest.raises(OverflowError):
            call()
        assert word(mm, 8) == 42


# -- validation ---------------------------------------------------------------


def _every_op(impl: Atomics, off: int) -> list[Callable[[], Any]]:
    return [
        lambda: impl.load(off),
        lambda: impl.store(off, 1),
        lambda: impl.add(off, 1),
        lambda: impl.cas(off, 0, 1),
        lambda: impl.swap(off, 1),
        lambda: impl.fetch_or(off, 1),
        lambda: impl.fetch_and(off, 1),
    ]


@pytest.mark.parametrize("off", [1, 4, 7, 12, SIZE - 4, -3])
def test_misaligned_offset_raises_value_error(impl: Atomics, mm: mmap.mmap, off: int) -> None:
    for call in _every_op(impl, off):
        with pytest.raises(ValueError, match="multiple of 8"):
            call()
    assert mm[:] == bytes(SIZE)


@pytest.mark.parametrize("off", [SIZE, SIZE + 8, -8, -SIZE, 1 << 40, 1 << 80, -(1 << 80)])
def test_offset_outside_arena_raises_index_error(impl: Atomics, mm: mmap.mmap, off: int) -> None:
    for call in _every_op(impl, off):
        with pytest.raises(IndexError, match="outside the arena"):
            call()
    assert mm[:] == bytes(SIZE)


def test_last_word_is_usable(impl: Atomics, mm: mmap.mmap) -> None:
    assert impl.add(SIZE - 8, 3) == 3
    assert word(mm, SIZE - 8) == 3


def test_non_integer_offset_or_value_raises_type_error(impl: Atomics, mm: mmap.mmap) -> None:
    with pytest.raises(TypeError):
        impl.load(8.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.add(8, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        impl.store(8, "1")  # type: ignore[arg-type]
    assert mm[:] == bytes(SIZE)


def test_no_arena_attached_raises_runtime_error(impl: Atomics) -> None:
    impl.detach()
    assert impl.arena() is None
    for call in _every_op(impl, 0):
        with pytest.raises(RuntimeError, match="no arena"):
            call()


# -- attach -------------------------------------------------------------------


def test_attach_switches_arena(impl: Atomics, mm: mmap.mmap) -> None:
    assert impl.arena() is mm
    other = mmap.mmap(-1, SIZE)
    impl.attach(other)
    assert impl.arena() is other
    assert impl.add(0, 9) == 9
    assert word(other, 0) == 9 and word(mm, 0) == 0
    mm.close()  # the previous arena's export was released
    impl.detach()
    other.close()  # and detach releases the current one


def test_buffer_length_is_rounded_down_to_whole_words(impl: Atomics) -> None:
    buf = bytearray(20)
    impl.attach(buf)
    assert impl.add(8, 1) == 1
    with pytest.raises(IndexError):
        impl.load(16)  # bytes 16..23 are not all inside the 20-byte buffer


def test_attach_rejects_unusable_buffers(impl: Atomics, mm: mmap.mmap) -> None:
    with pytest.raises(BufferError):
        impl.attach(b"\0" * 64)  # read-only
    with pytest.raises(ValueError, match="8-byte boundary"):
        impl.attach(memoryview(bytearray(64))[1:])
    with pytest.raises(ValueError, match="at least one"):
        impl.attach(bytearray(7))
    assert impl.arena() is mm  # a failed attach keeps the current arena
    assert impl.add(0, 1) == 1 and word(mm, 0) == 1


# -- selection ------------------------------------------------------------------


def test_unknown_implementation_name() -> None:
    with pytest.raises(ValueError):
        _atomic.implementation("spinlocks")


def _selected_in_subprocess(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("MPGO_PURE_PYTHON", None)
    if env_value is not None:
        env["MPGO_PURE_PYTHON"] = env_value
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = (
        "from mpgo._transport import _atomic as a\n"
        "impl = a.implementation(a.IMPLEMENTATION)\n"
        "names = ['attach', 'detach', 'arena', 'load', 'store', 'add', 'cas', 'swap',"
        " 'fetch_or', 'fetch_and']\n"
        "assert all(getattr(a, n) == getattr(impl, n) for n in names)\n"
        "print(a.IMPLEMENTATION)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_pure_python_env_var_forces_fallback() -> None:
    assert _selected_in_subprocess("1") == "semaphores"


def test_c_selected_when_built() -> None:
    _get("c")
    assert _selected_in_subprocess(None) == "c"
    assert _selected_in_subprocess("0") == "c"


def test_module_functions_are_the_c_functions_themselves() -> None:
    c = _get("c")
    if _atomic.IMPLEMENTATION != "c":
        pytest.skip("MPGO_PURE_PYTHON is set")
    assert _atomic.add is c.add and _atomic.cas is c.cas and _atomic.load is c.load


# -- across processes -----------------------------------------------------------

N_ADD = 100_000
N_CAS = 20_000
N_MIXED = 10_000


BARRIER = 256  # a word the children meet on, so that their loops overlap


def _start_together(impl: Atomics) -> None:
    import os
    import time
    impl.add(BARRIER, 1)
    deadline = time.monotonic() + 20
    while impl.load(BARRIER) < 2:
        if time.monotonic() > deadline:   # never outlive a failed test
            os._exit(3)


def _child(impl: Atomics) -> int:
    """Count on shared words by add, CAS loops and both; 0 if all went right."""
    _start_together(impl)
    last = 0
    for _ in range(N_ADD):
        new = impl.add(0, 1)
        if new <= last:  # add must return the new, strictly growing value
            return 2
        last = new
    for _ in range(N_CAS):
        while True:
            cur = impl.load(8)
            if impl.cas(8, cur, cur + 1):
                break
    # add and CAS mixed on one word: both must exclude each other
    for _ in range(N_MIXED):
        impl.add(16, 1)
        while True:
            cur = impl.load(16)
            if impl.cas(16, cur, cur + 1):
                break
    # another slot (another stripe in the fallback)
    for _ in range(1000):
        impl.add(128, 1)
    return 0


@pytest.mark.timeout(60)
def test_two_forked_processes_count_exactly(impl: Atomics, mm: mmap.mmap) -> None:
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                code = _child(impl)
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert impl.load(0) == 2 * N_ADD
    assert impl.load(8) == 2 * N_CAS
    assert impl.load(16) == 2 * 2 * N_MIXED
    assert impl.load(128) == 2000
    assert word(mm, 0) == 2 * N_ADD


@pytest.mark.timeout(60)
def test_cas_spinlock_gives_mutual_exclusion_across_processes(impl: Atomics, mm: mmap.mmap) -> None:
    # word 0: lock (cas 0 -> 1, store 0); word 8: counter updated non-atomically
    rounds = 5_000
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                _start_together(impl)
                for _ in range(rounds):
                    while not impl.cas(0, 0, 1):
                        pass
                    v = word(mm, 8)
                    put(mm, 8, v + 1)
                    impl.store(0, 0)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert word(mm, 8) == 2 * rounds
    assert impl.load(0) == 0
