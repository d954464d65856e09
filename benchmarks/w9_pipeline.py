"""W9: pipelines.

* 3-stage pipeline generate → square → sum over buffered(1024) channels, the
  stages spread over the workers (stage i on worker (i + 1) % M, so with 2
  workers both hops cross processes); peer: 3 processes joined by two
  ``multiprocessing.Queue``.  Timed from the generator's start to the sum.
* fan-out/fan-in: items of ~100 µs of pure-Python CPU each; mpgo: a job channel
  and a result channel, one worker goroutine per worker; peers: serial (for
  the speedup) and ``multiprocessing.Pool.imap`` (default chunksize=1, and
  chunksize=64 as an extra reference).  Timed whole (including
  starting and stopping the workers), as W1.
"""

from __future__ import annotations

import time

from benchmarks._harness import Case, Config, Row, Table, Workload, at_most, vs
from benchmarks._util import fork_ctx, go_on

WORK_LOOPS = 1700  # ≈ 100 µs per item on the 2-core reference machine


def work(x: int) -> int:
    acc = x
    for i in range(WORK_LOOPS):
        acc = (acc * 31 + i) % 1000003
    return x + (acc & 0)


def _expected(n: int, total: int, squares: bool) -> None:
    want = (n - 1) * n * (2 * n - 1) // 6 if squares else n * (n - 1) // 2
    if total != want:
        raise AssertionError(f"total {total}, expected {want}")


# -- 3-stage pipeline ----------------------------------------------------------

def _gen(start, out, n: int) -> None:
    start.recv()
    send = out.send
    for i in range(n):
        send(i)
    out.close()


def _square(inp, out) -> None:
    send = out.send
    for v in inp:
        send(v * v)
    out.close()


def _sum(inp) -> int:
    total = 0
    for v in inp:
        total += v
    return total


def _mpgo_pipeline_main(n: int) -> dict:
    import mpgo

    m = mpgo.num_workers()
    start, a, b = mpgo.Chan(), mpgo.Chan(1024), mpgo.Chan(1024)
    g_sum, w_sum = go_on(3 % m, _sum, b)
    _, w_sq = go_on(2 % m, _square, a, b)
    _, w_gen = go_on(1 % m, _gen, start, a, n)
    t0 = time.perf_counter()
    start.close()
    total = g_sum.join()
    dt = time.perf_counter() - t0
    _expected(n, total, squares=True)
    return {"value": dt / n * 1e6,
            "note": f"generate on worker {w_gen}, square on {w_sq}, sum on {w_sum}"}


def mpgo_pipeline(n: int, workers: int) -> dict:
    import mpgo

    return mpgo.run(_mpgo_pipeline_main, n, workers=workers)


def mp_queue_pipeline(n: int) -> float:
    ctx = fork_ctx()
    q1, q2, go = ctx.Queue(), ctx.Queue(), ctx.Event()

    def gen():
        go.wait()
        put = q1.put
        for i in range(n):
            put(i)
        put(None)

    def square():
        get, put = q1.get, q2.put
        while (v := get()) is not None:
            put(v * v)
        put(None)

    ps = [ctx.Process(target=gen), ctx.Process(target=square)]
    for p in ps:
        p.start()
    get = q2.get
    t0 = time.perf_counter()
    go.set()
    total = 0
    while (v := get()) is not None:
        total += v
    dt = time.perf_counter() - t0
    for p in ps:
        p.join()
    _expected(n, total, squares=True)
    return dt / n * 1e6


# -- fan-out / fan-in ----------------------------------------------------------

def _fan_worker(jobs, results) -> tuple[int, int]:
    import mpgo

    send, done = results.send, 0
    for x in jobs:
        send(work(x))
        done += 1
    return mpgo.worker_id(), done


def _feed(jobs, n: int) -> None:
    send = jobs.send
    for i in range(n):
        send(i)
    jobs.close()


def _mpgo_fan_main(n: int) -> dict:
    import mpgo

    jobs, results = mpgo.Chan(1024), mpgo.Chan(1024)
    workers = [mpgo.go(_fan_worker, jobs, results) for _ in range(mpgo.num_workers())]
    mpgo.go(_feed, jobs, n)
    recv = results.recv
    total = sum(recv() for _ in range(n))
    per = sorted(g.join() for g in workers)
    return {"total": total,
            "note": "items per goroutine, as worker:items: " + " ".join(f"{w}:{k}" for w, k in per)}


def mpgo_fan(n: int, workers: int) -> dict:
    import mpgo

    t0 = time.perf_counter()
    res = mpgo.run(_mpgo_fan_main, n, workers=workers)
    dt = time.perf_counter() - t0
    _expected(n, res["total"], squares=False)
    return {"value": dt, "note": res["note"]}


def serial_fan(n: int) -> float:
    t0 = time.perf_counter()
    total = sum(work(x) for x in range(n))
    dt = time.perf_counter() - t0
    _expected(n, total, squares=False)
    return dt


def pool_imap(n: int, workers: int, chunksize: int = 1) -> float:
    t0 = time.perf_counter()
    with fork_ctx().Pool(workers) as pool:
        total = sum(pool.imap(work, range(n), chunksize=chunksize))
    dt = time.perf_counter() - t0
    _expected(n, total, squares=False)
    return dt


def workload(cfg: Config) -> Workload:
    n_pipe, n_mpq, n_fan = cfg.n(1_000_000), cfg.n(200_000), cfg.n(20_000)
    w = cfg.workers
    cases = [
        Case("mpgo_pipe", "w9_pipeline:mpgo_pipeline", {"n": n_pipe, "workers": w}),
        Case("mpq_pipe", "w9_pipeline:mp_queue_pipeline", {"n": n_mpq}),
        Case("serial_fan", "w9_pipeline:serial_fan", {"n": n_fan}),
        Case("pool_fan", "w9_pipeline:pool_imap", {"n": n_fan, "workers": w}),
        Case("pool_fan64", "w9_pipeline:pool_imap", {"n": n_fan, "workers": w, "chunksize": 64}),
        Case("mpgo_fan", "w9_pipeline:mpgo_fan", {"n": n_fan, "workers": w}),
    ]
    mpq = f"multiprocessing.Queue × 2, 3 processes ({n_mpq:,} items)"
    pipe = Table(
        "3-stage pipeline generate → square → sum", "µs/item", higher_better=False,
        rows=[
            Row(mpq, "mpq_pipe"),
            Row(f"mpgo Chan(1024) × 2, {w} workers ({n_pipe:,} items)", "mpgo_pipe",
                target=at_most(10.0, "≤ 10 µs/item (20× Go's 0.5 µs)")),
        ],
        refs=[("× mp.Queue", [mpq])],
    )
    fan = Table(
        f"fan-out/fan-in: {n_fan:,} items of ~100 µs CPU, {w} processes", "s",
        higher_better=False,
        rows=[
            Row("serial", "serial_fan"),
            Row("multiprocessing.Pool.imap", "pool_fan"),
            Row("Pool.imap chunksize=64 (extra reference)", "pool_fan64"),
            Row(f"mpgo: jobs + results Chan(1024), {w} worker goroutines", "mpgo_fan",
                target=vs("serial", 0.9 * cfg.cores, f"speedup ≥ 0.9 × {cfg.cores} cores")),
        ],
        refs=[("speedup × serial", ["serial"]), ("× Pool.imap", ["multiprocessing.Pool.imap"])],
    )
    return Workload("W9", "pipelines", cases, [pipe, fan],
                    notes=["Go on the reference machine: 0.5 µs/item for the pipeline."])
