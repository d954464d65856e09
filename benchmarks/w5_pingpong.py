"""W5: ping-pong round trip over two unbuffered channels.

In one worker (mpgo workers=1) against gevent channels; across two workers
(mpgo workers=2) against a raw ZeroMQ ipc REQ/REP round trip.
"""

from __future__ import annotations

import time

from benchmarks._harness import Case, Config, Row, Table, Workload, vs
from benchmarks._util import go_on
from benchmarks.w4_cross_chan import zmq_req_rep

WARMUP = 100


def _pong(ping, pong) -> None:
    send = pong.send
    for v in ping:
        send(v)


def _rally(ping, pong, n: int) -> float:
    """µs per round trip: main sends on ping, the other side answers on pong."""
    send, recv = ping.send, pong.recv
    for i in range(WARMUP):
        send(i)
        recv()
    t0 = time.perf_counter()
    for i in range(n):
        send(i)
        if recv() != i:
            raise AssertionError("wrong reply")
    dt = time.perf_counter() - t0
    return dt / n * 1e6


def _mpgo_main(n: int, cross: bool) -> dict:
    import mpgo

    ping, pong = mpgo.Chan(), mpgo.Chan()
    if cross:
        g, wid = go_on(1, _pong, ping, pong)
    else:
        g, wid = mpgo.go(_pong, ping, pong), 0
    us = _rally(ping, pong, n)
    ping.close()
    g.join()
    note = f"ping on worker {mpgo.worker_id()}, pong on worker {wid}" if cross else None
    return {"value": us, "note": note} if note else {"value": us}


def mpgo_pingpong(n: int, cross: bool) -> dict:
    import mpgo

    return mpgo.run(_mpgo_main, n, cross, workers=2 if cross else 1)


def gevent_pingpong(n: int) -> float:
    import gevent
    from gevent.queue import Channel

    class Chan:  # the two calls _rally and _pong use, over gevent's Channel
        def __init__(self):
            self.q = Channel()
            self.send, self.recv = self.q.put, self.q.get

        def __iter__(self):
            return iter(self.q)

        def close(self):
            self.q.put(StopIteration)

    ping, pong = Chan(), Chan()
    g = gevent.spawn(_pong, ping, pong)
    us = _rally(ping, pong, n)
    ping.close()
    g.join()
    return us


def zmq_rtt(n: int) -> float:
    return 1 / zmq_req_rep(n)  # M round trips/s -> µs per round trip


def workload(cfg: Config) -> Workload:
    n_local, n_cross = cfg.n(100_000), cfg.n(20_000)
    cases = [
        Case("mpgo_local", "w5_pingpong:mpgo_pingpong", {"n": n_local, "cross": False}),
        Case("gevent", "w5_pingpong:gevent_pingpong", {"n": n_local}),
        Case("mpgo_cross", "w5_pingpong:mpgo_pingpong", {"n": n_cross, "cross": True}),
        Case("zmq", "w5_pingpong:zmq_rtt", {"n": n_cross}),
    ]
    local = Table(
        f"in one worker: {n_local:,} round trips", "µs", higher_better=False,
        rows=[
            Row("gevent Channel × 2", "gevent"),
            Row("mpgo Chan() × 2 (workers=1)", "mpgo_local",
                target=vs("gevent Channel × 2", 2, "≤ ½ gevent")),
        ],
        refs=[("× gevent", ["gevent Channel × 2"])],
    )
    cross = Table(
        f"across two workers: {n_cross:,} round trips", "µs", higher_better=False,
        rows=[
            Row("ZeroMQ ipc REQ/REP", "zmq"),
            Row("mpgo Chan() × 2 (workers=2)", "mpgo_cross",
                target=vs("ZeroMQ ipc REQ/REP", 0.5, "≤ 2× raw ZeroMQ")),
        ],
        refs=[("× ZeroMQ", ["ZeroMQ ipc REQ/REP"])],
    )
    return Workload("W5", "ping-pong round trip", cases, [local, cross],
                    notes=["Go on the reference machine: 0.47 µs in-process."])
