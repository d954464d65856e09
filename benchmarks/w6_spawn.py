"""W6: goroutines spawned in one worker (mpgo workers=1).

Parked: N goroutines that each park (receive on a channel closed at the end):
RSS delta / N (from /proc/self/statm) and the spawn-to-parked rate.
Short: N goroutines that return at once, spawned then all joined: cost each.
Peers: gevent (greenlets waiting on an Event; ``gevent.spawn`` + ``joinall``)
and raw greenlet (each switched into; it parks by switching back).
"""

from __future__ import annotations

import gc
import time

from benchmarks._harness import Case, Config, Row, Table, Workload, at_most, vs
from benchmarks._util import rss_bytes

_parked = 0  # per process: with workers=1 every goroutine runs here


def _parked_result(n: int, rss0: int, dt: float) -> dict:
    if _parked != n:
        raise AssertionError(f"{_parked} of {n} parked")
    gc.collect()
    return {"kb": (rss_bytes() - rss0) / n / 1024, "rate": n / dt / 1000}


def _park(ch, all_parked, n: int) -> None:
    global _parked
    _parked += 1
    if _parked == n:
        all_parked.send(None)  # buffered(1): does not block
    ch.recv()


def _short() -> None:
    return None


def _mpgo_parked_main(n: int) -> dict:
    import mpgo

    ch, all_parked, go = mpgo.Chan(), mpgo.Chan(1), mpgo.go
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    for _ in range(n):
        go(_park, ch, all_parked, n)
    all_parked.recv()  # main parks; the last goroutine to park wakes it
    dt = time.perf_counter() - t0
    res = _parked_result(n, rss0, dt)
    ch.close()
    return res


def mpgo_parked(n: int) -> dict:
    import mpgo

    return mpgo.run(_mpgo_parked_main, n, workers=1)


def gevent_parked(n: int) -> dict:
    import gevent
    from gevent.event import Event

    ev, all_parked = Event(), Event()
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    for _ in range(n):
        gevent.spawn(_park_gevent, ev, all_parked, n)
    all_parked.wait()
    dt = time.perf_counter() - t0
    res = _parked_result(n, rss0, dt)
    ev.set()
    gevent.sleep(0)
    return res


def _park_gevent(ev, all_parked, n: int) -> None:
    global _parked
    _parked += 1
    if _parked == n:
        all_parked.set()
    ev.wait()


def greenlet_parked(n: int) -> dict:
    from greenlet import getcurrent, greenlet

    def park():
        global _parked
        _parked += 1
        getcurrent().parent.switch()

    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    keep = []
    for _ in range(n):
        g = greenlet(park)
        g.switch()
        keep.append(g)
    dt = time.perf_counter() - t0
    return _parked_result(n, rss0, dt)


def _mpgo_short_main(n: int) -> float:
    import mpgo

    go = mpgo.go
    t0 = time.perf_counter()
    gs = [go(_short) for _ in range(n)]
    for g in gs:
        g.join()
    return (time.perf_counter() - t0) / n * 1e6


def mpgo_short(n: int) -> float:
    import mpgo

    return mpgo.run(_mpgo_short_main, n, workers=1)


def gevent_short(n: int) -> float:
    import gevent

    spawn = gevent.spawn
    t0 = time.perf_counter()
    gs = [spawn(_short) for _ in range(n)]
    gevent.joinall(gs)
    return (time.perf_counter() - t0) / n * 1e6


def greenlet_short(n: int) -> float:
    from greenlet import greenlet

    t0 = time.perf_counter()
    for _ in range(n):
        greenlet(_short).switch()
    return (time.perf_counter() - t0) / n * 1e6


def workload(cfg: Config) -> Workload:
    n = cfg.n(100_000)
    cases = [
        Case("mpgo_parked", "w6_spawn:mpgo_parked", {"n": n}),
        Case("gevent_parked", "w6_spawn:gevent_parked", {"n": n}),
        Case("greenlet_parked", "w6_spawn:greenlet_parked", {"n": n}),
        Case("mpgo_short", "w6_spawn:mpgo_short", {"n": n}),
        Case("gevent_short", "w6_spawn:gevent_short", {"n": n}),
        Case("greenlet_short", "w6_spawn:greenlet_short", {"n": n}),
    ]
    gv, gr = "gevent.spawn + Event.wait", "raw greenlet, switched in and parked"
    memory = Table(
        f"parked: memory per goroutine, {n:,} parked", "KB", higher_better=False,
        rows=[Row(gv, "gevent_parked", "kb"), Row(gr, "greenlet_parked", "kb"),
              Row("mpgo.go + Chan.recv (workers=1)", "mpgo_parked", "kb",
                  target=vs(gr, 1 / 1.1, "≤ 1.1× raw greenlet"))],
        refs=[("× raw greenlet", [gr])],
    )
    rate = Table(
        f"parked: spawn-to-parked rate, {n:,}", "k/s", higher_better=True,
        rows=[Row(gv, "gevent_parked", "rate"), Row(gr, "greenlet_parked", "rate"),
              Row("mpgo.go + Chan.recv (workers=1)", "mpgo_parked", "rate",
                  target=vs(gv, 3, "≥ 3× gevent"))],
        refs=[("× gevent", [gv])],
    )
    gs, grs = "gevent.spawn, then joinall", "new raw greenlet, switched into"
    short = Table(
        f"short: {n:,} goroutines that return at once, spawn to completion", "µs each",
        higher_better=False,
        rows=[Row(gs, "gevent_short"), Row(grs, "greenlet_short"),
              Row("mpgo.go, then join each (workers=1)", "mpgo_short",
                  target=at_most(2.0, "≤ 2 µs") & vs(gs, 15, "≥ 15× gevent"))],
        refs=[("× gevent", [gs])],
    )
    return Workload("W6", "many goroutines in one worker", cases, [memory, rate, short],
                    notes=["Memory is the RSS delta (after gc.collect) divided by N, "
                           "measured in the process the goroutines live in.",
                           "Go on the reference machine: 2.7 KB parked; 1–4 µs to spawn "
                           "and run one goroutine."])
