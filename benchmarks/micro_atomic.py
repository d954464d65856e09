"""Micro-benchmark: shared-memory atomics, C vs semaphore fallback vs multiprocessing.

Run from anywhere:  python benchmarks/micro_atomic.py [--n 200000] [--rounds 5]

Measures, alternating the contenders inside each round and reporting the
median of the rounds:

* uncontended, ns per operation (Python loop overhead included, shown apart):
  - ``add(off, 1)`` for the C extension and the semaphore fallback, against
    ``multiprocessing.Value('q')`` incremented under its lock;
  - a lock/unlock pair built on atomics (``cas(off, 0, 1)`` then
    ``store(off, 0)``), against a ``multiprocessing.Lock`` acquire/release pair;
* contended: two forked processes each doing N operations (wall time from the
  moment both start until both finish, divided by the 2N operations):
  ``add`` on one shared word, for C, the fallback, and
  ``multiprocessing.Value`` + its lock; and a lock/unlock pair, a ``cas`` spin
  lock for C and the fallback against ``multiprocessing.Lock``.
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpgo._transport import _atomic  # noqa: E402

CTX = multiprocessing.get_context("fork")
WORD = 0  # the counter word
LOCK_WORD = 64  # the lock word of the cas/store pair (another 64-byte slot)
T_OFF = 512  # where children write their start / end timestamps
READY = 1024  # start barrier


# -- uncontended ----------------------------------------------------------------


def loop_overhead(n: int) -> float:
    f = int
    t = time.perf_counter_ns()
    for _ in range(n):
        f()
    return (time.perf_counter_ns() - t) / n


def atomic_add(impl: Any) -> Callable[[int], float]:
    def run(n: int) -> float:
        add = impl.add
        t = time.perf_counter_ns()
        for _ in range(n):
            add(WORD, 1)
        return (time.perf_counter_ns() - t) / n

    return run


def atomic_lock_pair(impl: Any) -> Callable[[int], float]:
    def run(n: int) -> float:
        cas, store = impl.cas, impl.store
        t = time.perf_counter_ns()
        for _ in range(n):
            if not cas(LOCK_WORD, 0, 1):
                raise AssertionError("lock word not free")
            store(LOCK_WORD, 0)
        return (time.perf_counter_ns() - t) / n

    return run


def mp_lock_pair(lock: Any) -> Callable[[int], float]:
    def run(n: int) -> float:
        acquire, release = lock.acquire, lock.release
        t = time.perf_counter_ns()
        for _ in range(n):
            acquire()
            release()
        return (time.perf_counter_ns() - t) / n

    return run


def mp_value_incr(value: Any) -> Callable[[int], float]:
    def run(n: int) -> float:
        lock = value.get_lock()
        t = time.perf_counter_ns()
        for _ in range(n):
            with lock:
                value.value += 1
        return (time.perf_counter_ns() - t) / n

    return run


# -- contended ------------------------------------------------------------------


def two_process(incr_factory: Callable[[], Callable[[], None]], times: mmap.mmap, n: int) -> float:
    """ns per op: 2 forked processes x n increments, from common start to last end."""
    times[:] = bytes(len(times))
    pids = []
    for k in range(2):
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                incr = incr_factory()
                # start barrier on the timestamp page (not the measured part)
                struct.pack_into("=q", times, READY + 8 * k, 1)
                while any(struct.unpack_from("=q", times, READY + 8 * j)[0] == 0 for j in (0, 1)):
                    pass
                t0 = time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable across processes
                for _ in range(n):
                    incr()
                t1 = time.perf_counter_ns()
                struct.pack_into("=qq", times, T_OFF + 16 * k, t0, t1)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("benchmark child failed")
    s0, e0, s1, e1 = struct.unpack_from("=qqqq", times, T_OFF)
    span: int = max(e0, e1) - min(s0, s1)
    return span / (2 * n)


def atomic_incr(impl: Any) -> Callable[[], Callable[[], None]]:
    def factory() -> Callable[[], None]:
        add = impl.add
        return lambda: add(WORD, 1)

    return factory


def atomic_pair(impl: Any) -> Callable[[], Callable[[], None]]:
    def factory() -> Callable[[], None]:
        cas, store = impl.cas, impl.store

        def pair() -> None:
            while not cas(LOCK_WORD, 0, 1):
                pass
            store(LOCK_WORD, 0)

        return pair

    return factory


def lock_pair(lock: Any) -> Callable[[], Callable[[], None]]:
    def factory() -> Callable[[], None]:
        acquire, release = lock.acquire, lock.release

        def pair() -> None:
            acquire()
            release()

        return pair

    return factory


def value_incr(value: Any) -> Callable[[], Callable[[], None]]:
    def factory() -> Callable[[], None]:
        lock = value.get_lock()

        def incr() -> None:
            with lock:
                value.value += 1

        return incr

    return factory


# -- main -------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="operations per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (median is reported)")
    args = ap.parse_args()
    n, rounds = args.n, args.rounds

    impls: dict[str, Any] = {}
    try:
        impls["c"] = _atomic.implementation("c")
    except ImportError:
        print("note: mpgo._speedups not built; C column missing", file=sys.stderr)
    impls["semaphores"] = _atomic.implementation("semaphores")  # before any fork

    arenas = {name: mmap.mmap(-1, 4096) for name in impls}
    for name, im in impls.items():
        im.attach(arenas[name])
    times = mmap.mmap(-1, 4096)
    mp_lock = CTX.Lock()
    mp_value = CTX.Value("q", 0)

    cases: dict[str, Callable[[int], float]] = {"loop overhead": loop_overhead}
    for name, im in impls.items():
        cases[f"add/{name}"] = atomic_add(im)
        cases[f"pair/{name}"] = atomic_lock_pair(im)
    cases["add/mp"] = mp_value_incr(mp_value)
    cases["pair/mp"] = mp_lock_pair(mp_lock)
    contended: dict[str, Callable[[], Callable[[], None]]] = {
        f"2proc/{name}": atomic_incr(im) for name, im in impls.items()
    }
    contended["2proc/mp"] = value_incr(mp_value)
    for name, im in impls.items():
        contended[f"2pair/{name}"] = atomic_pair(im)
    contended["2pair/mp"] = lock_pair(mp_lock)

    results: dict[str, list[float]] = {k: [] for k in [*cases, *contended]}
    for _ in range(rounds):  # alternate: every contender once per round
        for key, fn in cases.items():
            results[key].append(fn(n))
        for key, factory in contended.items():
            before = _word(key, impls, arenas, mp_value)
            results[key].append(two_process(factory, times, n))
            after = _word(key, impls, arenas, mp_value)
            if key.startswith("2proc/") and after - before != 2 * n:
                raise AssertionError(f"{key}: lost updates ({after - before} != {2 * n})")

    med = {k: statistics.median(v) for k, v in results.items()}
    print(
        f"mpgo atomics micro-benchmark: n={n:,}, median of {rounds} alternating rounds, "
        f"ns per op; selected IMPLEMENTATION={_atomic.IMPLEMENTATION!r}"
    )
    print(f"python loop overhead (empty call): {med['loop overhead']:.0f} ns (included below)")
    print()
    header = f"{'operation':<44}{'c':>8}{'semaphores':>12}{'mp':>9}{'sem/c':>8}{'mp/c':>8}"
    print(header)
    print("-" * len(header))
    rows = [
        ("add (mp: Value('q') += 1 under its lock)", "add"),
        ("lock+unlock (cas,store | mp.Lock acq,rel)", "pair"),
        ("2 procs x n add, wall/op (mp: Value+lock)", "2proc"),
        ("2 procs x n lock+unlock, wall/op (spin | mp)", "2pair"),
    ]
    for label, key in rows:
        c = med.get(f"{key}/c")
        s = med[f"{key}/semaphores"]
        m = med[f"{key}/mp"]
        cs = f"{c:8.0f}" if c is not None else f"{'-':>8}"
        r1 = f"{s / c:8.1f}" if c else f"{'-':>8}"
        r2 = f"{m / c:8.1f}" if c else f"{'-':>8}"
        print(f"{label:<44}{cs}{s:12.0f}{m:9.0f}{r1}{r2}")

    for im in impls.values():
        im.detach()


def _word(key: str, impls: dict[str, Any], arenas: dict[str, mmap.mmap], value: Any) -> int:
    name = key.split("/", 1)[1]
    if name == "mp":
        v: int = value.value
        return v
    w: int = struct.unpack_from("=q", arenas[name], WORD)[0]
    return w


if __name__ == "__main__":
    main()
