"""W8: Mutex and counters.

* uncontended lock/unlock pairs in one process;
* 2 workers × N locked increments (mpgo: Mutex + AtomicInt load/store, the
  two loops on different workers; peers: 2 processes with
  ``multiprocessing.Value`` under its lock, and a ``posix_ipc`` semaphore if
  installed) — the exact total is checked;
* 2 workers × N ``AtomicInt.add(1)`` (peer: ``multiprocessing.Value`` under its
  lock) — the exact total is checked.
"""

from __future__ import annotations

import threading
import time

from benchmarks._harness import Case, Config, Row, Skip, Table, Workload, vs
from benchmarks._util import fork_ctx, go_on

WARMUP = 1000


def _pairs(lock, unlock, n: int) -> float:
    """ns per lock/unlock pair."""
    for _ in range(WARMUP):
        lock()
        unlock()
    t0 = time.perf_counter()
    for _ in range(n):
        lock()
        unlock()
    return (time.perf_counter() - t0) / n * 1e9


def _mpgo_uncontended_main(n: int) -> float:
    import mpgo

    mu = mpgo.Mutex()
    return _pairs(mu.lock, mu.unlock, n)


def mpgo_uncontended(n: int) -> float:
    import mpgo

    return mpgo.run(_mpgo_uncontended_main, n, workers=2)


def mp_uncontended(n: int) -> float:
    lock = fork_ctx().Lock()
    return _pairs(lock.acquire, lock.release, n)


def threading_uncontended(n: int) -> float:
    lock = threading.Lock()
    return _pairs(lock.acquire, lock.release, n)


def floor_uncontended(n: int) -> float:
    """The same loop calling a builtin method that does nothing (an empty
    dict's clear) twice: what any lock pays to be called from Python."""
    noop = {}.clear
    return _pairs(noop, noop, n)


# -- 2 workers × n operations --------------------------------------------------

def _locked_incr(mu, ctr, n: int) -> None:
    lock, unlock, load, store = mu.lock, mu.unlock, ctr.load, ctr.store
    for _ in range(n):
        lock()
        store(load() + 1)
        unlock()


def _atomic_add(mu, ctr, n: int) -> None:
    add = ctr.add
    for _ in range(n):
        add(1)


def _mpgo_pair(start, body, mu, ctr, n: int) -> None:
    start.recv()  # returns when main closes `start`
    body(mu, ctr, n)


def _mpgo_two_main(n: int, kind: str) -> dict:
    import mpgo

    body = {"locked": _locked_incr, "atomic": _atomic_add}[kind]
    mu, ctr, start = mpgo.Mutex(), mpgo.AtomicInt(0), mpgo.Chan()
    g, wid = go_on(1, _mpgo_pair, start, body, mu, ctr, n)
    t0 = time.perf_counter()
    start.close()
    body(mu, ctr, n)
    g.join()
    dt = time.perf_counter() - t0
    if ctr.load() != 2 * n:
        raise AssertionError(f"total {ctr.load()}, expected {2 * n}")
    return {"value": dt / (2 * n) * 1e6,
            "note": f"loops on workers {mpgo.worker_id()} and {wid}"}


def mpgo_two(n: int, kind: str) -> dict:
    import mpgo

    return mpgo.run(_mpgo_two_main, n, kind, workers=2)


def _two_processes(n: int, make_body) -> float:
    """µs per operation: two forked processes run ``body()`` from one start."""
    ctx = fork_ctx()
    ready, ends = ctx.Barrier(3), ctx.SimpleQueue()
    body, check = make_body(ctx)

    def run():
        ready.wait()
        body()
        ends.put(time.perf_counter())

    ps = [ctx.Process(target=run) for _ in range(2)]
    for p in ps:
        p.start()
    ready.wait()
    t0 = time.perf_counter()
    end = max(ends.get(), ends.get())
    for p in ps:
        p.join()
    check()
    return (end - t0) / (2 * n) * 1e6


def _value_under_lock(n: int):
    def make(ctx):
        v = ctx.Value("q", 0)

        def body():
            lock = v.get_lock()
            for _ in range(n):
                with lock:
                    v.value += 1

        return body, lambda: _check(v.value, 2 * n)

    return make


def _check(total: int, expected: int) -> None:
    if total != expected:
        raise AssertionError(f"total {total}, expected {expected}")


def mp_value(n: int) -> float:
    return _two_processes(n, _value_under_lock(n))


def posix_ipc_sem(n: int) -> float:
    try:
        import posix_ipc
    except ImportError:
        raise Skip("posix_ipc not installed")

    def make(ctx):
        v = ctx.Value("q", 0, lock=False)
        sem = posix_ipc.Semaphore(None, posix_ipc.O_CREX, initial_value=1)
        sem.unlink()  # the name goes now; the forked children keep the handle

        def body():
            acquire, release = sem.acquire, sem.release
            for _ in range(n):
                acquire()
                v.value += 1
                release()

        return body, lambda: _check(v.value, 2 * n)

    return _two_processes(n, make)


def workload(cfg: Config) -> Workload:
    n_pairs, n_locked, n_atomic = 10_000, cfg.n(100_000), cfg.n(1_000_000)
    cases = [
        Case("mpgo_unc", "w8_sync:mpgo_uncontended", {"n": n_pairs}),
        Case("mp_unc", "w8_sync:mp_uncontended", {"n": n_pairs}),
        Case("th_unc", "w8_sync:threading_uncontended", {"n": n_pairs}),
        Case("floor_unc", "w8_sync:floor_uncontended", {"n": n_pairs}),
        Case("mpgo_locked", "w8_sync:mpgo_two", {"n": n_locked, "kind": "locked"}),
        Case("mp_locked", "w8_sync:mp_value", {"n": n_locked}),
        Case("posix_locked", "w8_sync:posix_ipc_sem", {"n": n_locked}),
        Case("mpgo_atomic", "w8_sync:mpgo_two", {"n": n_atomic, "kind": "atomic"}),
        Case("mp_atomic", "w8_sync:mp_value", {"n": n_atomic}),
    ]
    mpl = "multiprocessing.Lock"
    unc = Table(
        f"uncontended lock/unlock, {n_pairs:,} pairs", "ns/pair", higher_better=False,
        rows=[Row(mpl, "mp_unc"), Row("threading.Lock", "th_unc"),
              Row("floor: the same loop calling {}.clear twice", "floor_unc"),
              Row("mpgo.Mutex", "mpgo_unc", target=vs(mpl, 2))],
        refs=[("× multiprocessing.Lock", [mpl])],
    )
    mpv = "2 processes: mp.Value + its lock"
    locked = Table(
        f"2 workers × {n_locked:,} locked increments (exact total checked)", "µs/op",
        higher_better=False,
        rows=[Row(mpv, "mp_locked"),
              Row("2 processes: posix_ipc semaphore + mp.Value", "posix_locked"),
              Row("mpgo: Mutex + AtomicInt load/store, 2 workers", "mpgo_locked",
                  target=vs(mpv, 1, "no slower than mp.Value + lock"))],
        refs=[("× mp.Value + lock", [mpv])],
    )
    atomic = Table(
        f"2 workers × {n_atomic:,} atomic adds (exact total checked)", "µs/op",
        higher_better=False,
        rows=[Row(mpv, "mp_atomic"),
              Row("mpgo: AtomicInt.add(1), 2 workers", "mpgo_atomic",
                  target=vs(mpv, 1, "no slower than mp.Value + lock"))],
        refs=[("× mp.Value + lock", [mpv])],
    )
    return Workload("W8", "Mutex and counters", cases, [unc, locked, atomic],
                    notes=["Per-op times are wall time from the common start to the last "
                           "loop's end, divided by all operations of both loops.",
                           "Go on the reference machine: 6 ns uncontended pair; 10 ns/op "
                           "locked increments; 7 ns atomic add."])
