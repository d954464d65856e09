"""W1: CPU-bound — count primes below N by pure-Python trial division, 64 ranges.

Every case is timed whole: pool (or mpgo workers) start, the 64 ranges, shutdown.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

from benchmarks._harness import Case, Config, Row, Table, Workload, vs
from benchmarks._util import fork_ctx

N_FULL = 2_900_000  # serial ≈ 10 s here (2.8M: 9.6 s on the 2-core reference machine)
N_QUICK = 550_000  # serial ≈ 1 s
PARTS = 64


def count_primes(lo: int, hi: int) -> int:
    c = 0
    for n in range(max(lo, 2), hi):
        if n < 4:
            c += 1
            continue
        if n % 2 == 0:
            continue
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            c += 1
    return c


def count_range(r: tuple[int, int]) -> int:
    return count_primes(*r)


def ranges(n: int) -> list[tuple[int, int]]:
    return [(i * n // PARTS, (i + 1) * n // PARTS) for i in range(PARTS)]


def pi(n: int) -> int:
    """The expected answer, by a sieve (not timed)."""
    sieve = bytearray([1]) * n
    sieve[:2] = b"\0\0"[:n]
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return sum(sieve)


def _timed(n: int, fn) -> float:
    t0 = time.perf_counter()
    total = fn()
    dt = time.perf_counter() - t0
    if total != pi(n):
        raise AssertionError(f"wrong count {total}, expected {pi(n)}")
    return dt


def serial(n: int) -> float:
    return _timed(n, lambda: sum(count_range(r) for r in ranges(n)))


def ppe_map(n: int, workers: int) -> float:
    def go():
        with ProcessPoolExecutor(workers, mp_context=fork_ctx()) as ex:
            return sum(ex.map(count_range, ranges(n)))

    return _timed(n, go)


def pool_map(n: int, workers: int) -> float:
    def go():
        with fork_ctx().Pool(workers) as pool:
            return sum(pool.map(count_range, ranges(n)))

    return _timed(n, go)


def joblib_loky(n: int, workers: int) -> float:
    from joblib import Parallel, delayed

    def go():
        return sum(Parallel(n_jobs=workers, backend="loky")(
            delayed(count_range)(r) for r in ranges(n)))

    return _timed(n, go)


def _mpgo_spawn_main(n: int) -> int:
    import mpgo

    gs = [mpgo.go(count_primes, lo, hi) for lo, hi in ranges(n)]
    return sum(g.join() for g in gs)


def mpgo_spawn(n: int, workers: int) -> float:
    import mpgo

    return _timed(n, lambda: mpgo.run(_mpgo_spawn_main, n, workers=workers))


def _mpgo_map_fn():
    """``mpgo.map`` (``mpgo._group.map_`` before the facade exports it)."""
    import mpgo._group

    return getattr(mpgo, "map", None) or mpgo._group.map_


def _mpgo_group_cls():
    import mpgo._group

    return getattr(mpgo, "Group", None) or mpgo._group.Group


def _mpgo_map_main(n: int) -> int:
    return sum(_mpgo_map_fn()(count_range, ranges(n)))


def _mpgo_group_main(n: int) -> int:
    g = _mpgo_group_cls()()
    for lo, hi in ranges(n):
        g.go(count_primes, lo, hi)
    return sum(g.wait())


def mpgo_group(n: int, workers: int) -> float:
    import mpgo

    return _timed(n, lambda: mpgo.run(_mpgo_group_main, n, workers=workers))


def mpgo_map(n: int, workers: int) -> float:
    import mpgo

    return _timed(n, lambda: mpgo.run(_mpgo_map_main, n, workers=workers))


def workload(cfg: Config) -> Workload:
    n = N_QUICK if cfg.quick else N_FULL
    kw = {"n": n, "workers": cfg.workers}
    cases = [
        Case("serial", "w1_cpu:serial", {"n": n}),
        Case("ppe", "w1_cpu:ppe_map", kw),
        Case("pool", "w1_cpu:pool_map", kw),
        Case("joblib", "w1_cpu:joblib_loky", kw),
        Case("mpgo_go", "w1_cpu:mpgo_spawn", kw),
        Case("mpgo_map", "w1_cpu:mpgo_map", kw),
        Case("mpgo_group", "w1_cpu:mpgo_group", kw),
    ]
    peers = ["ProcessPoolExecutor.map", "multiprocessing.Pool.map", "joblib (loky)"]
    target = (vs("serial", 0.95 * cfg.cores, f"speedup ≥ 0.95 × {cfg.cores} cores")
              & vs(peers, 1.0, "no slower than the fastest peer"))
    table = Table(
        f"primes below {n:,}, {PARTS} ranges, {cfg.workers} processes", "s",
        higher_better=False,
        rows=[
            Row("serial", "serial"),
            Row(peers[0], "ppe"),
            Row(peers[1], "pool"),
            Row(peers[2], "joblib"),
            Row("mpgo: go × 64 + join", "mpgo_go", target=target),
            Row("mpgo.map", "mpgo_map", target=target),
            Row("mpgo.Group: g.go × 64 + wait", "mpgo_group", target=target),
        ],
        refs=[("speedup × serial", ["serial"]), ("× fastest peer", peers)],
    )
    return Workload("W1", "CPU-bound: primes by trial division on all cores", cases, [table],
                    notes=["Times include starting and stopping the pool / mpgo workers."])
