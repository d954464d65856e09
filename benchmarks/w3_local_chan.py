"""W3: 1M ints through a channel between two goroutines of one worker.

mpgo runs with workers=1; peers: gevent ``Channel`` / ``Queue(1024)``, and
pygolang's ``chan`` when it is installed.  The producer binds ``send`` to a
local name in every case; the consumer iterates until the channel closes.
"""

from __future__ import annotations

import time

from benchmarks._harness import Case, Config, Row, Skip, Table, Workload, vs


def _result(n: int, total: int, dt: float) -> float:
    if total != n * (n - 1) // 2:
        raise AssertionError(f"wrong total {total}")
    return n / dt / 1e6  # M ints/s


def _produce(ch, n: int) -> None:
    send = ch.send
    for i in range(n):
        send(i)
    ch.close()


def _mpgo_main(n: int, cap: int) -> float:
    import mpgo

    ch = mpgo.Chan(cap)
    t0 = time.perf_counter()
    mpgo.go(_produce, ch, n)
    total = 0
    for v in ch:
        total += v
    return _result(n, total, time.perf_counter() - t0)


def mpgo_chan(n: int, cap: int) -> float:
    import mpgo

    return mpgo.run(_mpgo_main, n, cap, workers=1)


def gevent_chan(n: int, cap: int) -> float:
    import gevent
    from gevent.queue import Channel, Queue

    q = Channel() if cap == 0 else Queue(cap)

    def produce():
        put = q.put
        for i in range(n):
            put(i)
        put(StopIteration)  # ends `for v in q`

    t0 = time.perf_counter()
    gevent.spawn(produce)
    total = 0
    for v in q:
        total += v
    return _result(n, total, time.perf_counter() - t0)


def pygolang_chan(n: int, cap: int) -> float:
    try:
        from golang import chan, go
    except ImportError:
        raise Skip("pygolang not installed")
    ch = chan(cap)

    def produce():
        send = ch.send
        for i in range(n):
            send(i)
        ch.close()

    t0 = time.perf_counter()
    go(produce)
    total = 0
    while True:
        v, ok = ch.recv_()
        if not ok:
            break
        total += v
    return _result(n, total, time.perf_counter() - t0)


def workload(cfg: Config) -> Workload:
    n = cfg.n(1_000_000)
    cases = []
    for cap in (0, 1024):
        cases += [
            Case(f"mpgo_{cap}", "w3_local_chan:mpgo_chan", {"n": n, "cap": cap}),
            Case(f"gevent_{cap}", "w3_local_chan:gevent_chan", {"n": n, "cap": cap}),
            Case(f"pygolang_{cap}", "w3_local_chan:pygolang_chan", {"n": n, "cap": cap}),
        ]
    unbuf = Table(
        f"unbuffered: {n:,} ints", "M ints/s", higher_better=True,
        rows=[
            Row("gevent Channel()", "gevent_0"),
            Row("pygolang chan()", "pygolang_0"),
            Row("mpgo Chan() (workers=1)", "mpgo_0", target=vs("gevent Channel()", 2)),
        ],
        refs=[("× gevent (mpgo ÷ gevent)", ["gevent Channel()"])],
    )
    buf = Table(
        f"buffered(1024): {n:,} ints", "M ints/s", higher_better=True,
        rows=[
            Row("gevent Queue(1024)", "gevent_1024"),
            Row("pygolang chan(1024)", "pygolang_1024"),
            Row("mpgo Chan(1024) (workers=1)", "mpgo_1024",
                target=vs("gevent Queue(1024)", 1)),
        ],
        refs=[("× gevent (mpgo ÷ gevent)", ["gevent Queue(1024)"])],
    )
    return Workload("W3", "channel between two goroutines of one worker", cases, [unbuf, buf],
                    notes=["Go on the reference machine: 4.1 M/s unbuffered, 12–16 M/s "
                           "buffered(1024)."])
