"""W2: 20,000 tiny tasks (``x + 1``), one by one and batched.

Only the dispatch loop / map call is timed: pools are started and warmed up
with one task first; mpgo's loop runs inside ``main``.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

from benchmarks._harness import Case, Config, Row, Table, Workload, vs
from benchmarks._util import fork_ctx


def inc(x: int) -> int:
    return x + 1


def _check(n: int, total: int, dt: float) -> float:
    if total != n * (n + 1) // 2:
        raise AssertionError(f"wrong total {total}")
    return n / dt / 1000  # k tasks/s


def _mpgo_one_by_one_main(n: int) -> float:
    import mpgo

    go = mpgo.go
    t0 = time.perf_counter()
    total = 0
    for x in range(n):
        total += go(inc, x).join()
    return _check(n, total, time.perf_counter() - t0)


def mpgo_one_by_one(n: int, workers: int) -> float:
    import mpgo

    return mpgo.run(_mpgo_one_by_one_main, n, workers=workers)


def ppe_submit(n: int, workers: int) -> float:
    with ProcessPoolExecutor(workers, mp_context=fork_ctx()) as ex:
        ex.submit(inc, 0).result()
        submit = ex.submit
        t0 = time.perf_counter()
        total = 0
        for x in range(n):
            total += submit(inc, x).result()
        return _check(n, total, time.perf_counter() - t0)


def _mpgo_map_main(n: int) -> float:
    import mpgo._group

    mpgo_map = getattr(mpgo, "map", None) or mpgo._group.map_
    sum(mpgo_map(inc, range(1000)))  # warm up, as the pools are
    t0 = time.perf_counter()
    total = sum(mpgo_map(inc, range(n)))
    return _check(n, total, time.perf_counter() - t0)


def _mpgo_group_main(n: int) -> float:
    import mpgo._group

    group = getattr(mpgo, "Group", None) or mpgo._group.Group
    warm = group()
    for x in range(100):
        warm.go(inc, x)
    warm.wait()
    g = group()
    t0 = time.perf_counter()
    for x in range(n):
        g.go(inc, x)
    total = sum(g.wait())
    return _check(n, total, time.perf_counter() - t0)


def mpgo_group(n: int, workers: int) -> float:
    import mpgo

    return mpgo.run(_mpgo_group_main, n, workers=workers)


def mpgo_map(n: int, workers: int) -> float:
    import mpgo

    return mpgo.run(_mpgo_map_main, n, workers=workers)


def ppe_map(n: int, workers: int, chunksize: int = 1) -> float:
    with ProcessPoolExecutor(workers, mp_context=fork_ctx()) as ex:
        ex.submit(inc, 0).result()
        t0 = time.perf_counter()
        total = sum(ex.map(inc, range(n), chunksize=chunksize))
        return _check(n, total, time.perf_counter() - t0)


def pool_map(n: int, workers: int) -> float:
    with fork_ctx().Pool(workers) as pool:
        pool.apply(inc, (0,))
        t0 = time.perf_counter()
        total = sum(pool.map(inc, range(n)))
        return _check(n, total, time.perf_counter() - t0)


def joblib_map(n: int, workers: int) -> float:
    from joblib import Parallel, delayed

    with Parallel(n_jobs=workers, backend="loky") as par:
        par(delayed(inc)(x) for x in range(workers))  # start the workers
        t0 = time.perf_counter()
        total = sum(par(delayed(inc)(x) for x in range(n)))
        return _check(n, total, time.perf_counter() - t0)


def workload(cfg: Config) -> Workload:
    n = cfg.n(20_000)
    kw = {"n": n, "workers": cfg.workers}
    cases = [
        Case("mpgo_go", "w2_tiny:mpgo_one_by_one", kw),
        Case("ppe_submit", "w2_tiny:ppe_submit", kw),
        Case("mpgo_map", "w2_tiny:mpgo_map", kw),
        Case("mpgo_group", "w2_tiny:mpgo_group", kw),
        Case("ppe_map", "w2_tiny:ppe_map", kw),
        Case("ppe_map500", "w2_tiny:ppe_map", {**kw, "chunksize": 500}),
        Case("pool_map", "w2_tiny:pool_map", kw),
        Case("joblib", "w2_tiny:joblib_map", kw),
    ]
    one = Table(
        f"one by one: {n:,} tasks, each dispatched and awaited", "k tasks/s",
        higher_better=True,
        rows=[
            Row("PPE submit(f, x).result()", "ppe_submit"),
            Row("mpgo.go(f, x).join()", "mpgo_go",
                target=vs("PPE submit(f, x).result()", 10)),
            Row("mpgo.Group: g.go(f, x) × n, then wait()", "mpgo_group"),
        ],
        refs=[("× PPE submit", ["PPE submit(f, x).result()"])],
    )
    peers = ["PPE.map (chunksize=1)", "PPE.map chunksize=500", "Pool.map", "joblib (loky)"]
    batched = Table(
        f"batched: {n:,} tasks in one map", "k tasks/s",
        higher_better=True,
        rows=[
            Row(peers[0], "ppe_map"),
            Row(peers[1], "ppe_map500"),
            Row(peers[2], "pool_map"),
            Row(peers[3], "joblib"),
            Row("mpgo.map", "mpgo_map",
                target=vs(peers[0], 10, "≥ 10× PPE.map (default chunksize)")
                & vs(peers[1:], 1.0, "no slower than the fastest chunked map")),
        ],
        refs=[("× Pool.map", ["Pool.map"]), ("× fastest peer", peers)],
    )
    return Workload("W2", f"{n:,} tiny tasks (x + 1)", cases, [one, batched],
                    notes=["Pools are started and warmed up before timing; "
                           "mpgo times its loop inside main."])
