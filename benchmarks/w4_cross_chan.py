"""W4: ints from a goroutine in worker 0 to one in worker 1 (mpgo workers=2).

Peers: ``multiprocessing.Queue``; raw ZeroMQ PUSH/PULL over ipc, one msgpack
int per message; for the unbuffered channel, a raw ZeroMQ ipc REQ/REP round
trip rate.  Timing starts when both ends are up and ends when the receiver
has the last value.
"""

from __future__ import annotations

import time

from benchmarks._harness import Case, Config, Row, Table, Workload, at_least, vs
from benchmarks._util import fork_ctx, go_on, ipc_addr


def _result(n: int, total: int, dt: float) -> float:
    if total != n * (n - 1) // 2:
        raise AssertionError(f"wrong total {total}")
    return n / dt / 1e6  # M ints/s


def _consume(ch) -> int:
    total = 0
    for v in ch:
        total += v
    return total


def _mpgo_main(n: int, cap: int) -> dict:
    import mpgo

    ch = mpgo.Chan(cap)
    g, wid = go_on(1, _consume, ch)
    send = ch.send
    t0 = time.perf_counter()
    for i in range(n):
        send(i)
    ch.close()
    total = g.join()
    rate = _result(n, total, time.perf_counter() - t0)
    return {"value": rate,
            "note": f"producer on worker {mpgo.worker_id()}, consumer on worker {wid}"}


def mpgo_chan(n: int, cap: int) -> dict:
    import mpgo

    return mpgo.run(_mpgo_main, n, cap, workers=2)


def mp_queue(n: int) -> float:
    ctx = fork_ctx()
    q, start = ctx.Queue(), ctx.Event()

    def produce():
        start.wait()
        put = q.put
        for i in range(n):
            put(i)

    p = ctx.Process(target=produce)
    p.start()
    get = q.get
    t0 = time.perf_counter()
    start.set()
    total = 0
    for _ in range(n):
        total += get()
    dt = time.perf_counter() - t0
    p.join()
    return _result(n, total, dt)


def _zmq_pair(kind_here: int, kind_there: int, there):
    """Fork a process that connects a ``kind_there`` socket and runs ``there(s)``,
    then bind a ``kind_here`` socket here (fork first: no ZeroMQ context may
    exist at the fork).  Returns (context, socket, process, done): the child
    keeps its socket open until ``done`` is set (measured: a PUSH socket
    closed with linger=-1 right after its last send lost ~1% of 100,000
    messages here, so the receiver says when it has them all)."""
    import zmq

    addr = ipc_addr("w4")
    done = fork_ctx().Event()

    def child():
        zc = zmq.Context()
        s = zc.socket(kind_there)
        s.connect(addr)
        there(s)
        done.wait(60)
        s.close(linger=-1)
        zc.term()

    p = fork_ctx().Process(target=child)
    p.start()
    zc = zmq.Context()
    s = zc.socket(kind_here)
    s.bind(addr)
    return zc, s, p, done


def zmq_push_pull(n: int) -> float:
    import msgpack
    import zmq

    start = fork_ctx().Event()

    def produce(s):
        send, packb = s.send, msgpack.packb
        send(b"hello")  # the receiver starts the clock once connected
        start.wait()
        for i in range(n):
            send(packb(i))

    zc, s, p, done = _zmq_pair(zmq.PULL, zmq.PUSH, produce)
    recv, unpackb = s.recv, msgpack.unpackb
    recv()
    t0 = time.perf_counter()
    start.set()
    total = 0
    for _ in range(n):
        total += unpackb(recv())
    dt = time.perf_counter() - t0
    done.set()
    p.join()
    s.close(linger=0)
    zc.term()
    return _result(n, total, dt)


def zmq_req_rep(n: int) -> float:
    """Round trips per second (one msgpack int each way)."""
    import msgpack
    import zmq

    def serve(s):
        recv, send = s.recv, s.send
        for _ in range(n + 1):
            send(recv())

    zc, s, p, done = _zmq_pair(zmq.REQ, zmq.REP, serve)
    send, recv, packb, unpackb = s.send, s.recv, msgpack.packb, msgpack.unpackb
    send(b"hello")  # one round trip to connect, untimed
    recv()
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        send(packb(i))
        total += unpackb(recv())
    dt = time.perf_counter() - t0
    done.set()
    p.join()
    s.close(linger=0)
    zc.term()
    return _result(n, total, dt)


def workload(cfg: Config) -> Workload:
    n, n_mpq, n_unbuf = cfg.n(1_000_000), cfg.n(200_000), cfg.n(20_000)
    cases = [
        Case("mpgo_1024", "w4_cross_chan:mpgo_chan", {"n": n, "cap": 1024}),
        Case("mp_queue", "w4_cross_chan:mp_queue", {"n": n_mpq}),
        Case("zmq_push", "w4_cross_chan:zmq_push_pull", {"n": n}),
        Case("mpgo_0", "w4_cross_chan:mpgo_chan", {"n": n_unbuf, "cap": 0}),
        Case("zmq_reqrep", "w4_cross_chan:zmq_req_rep", {"n": n_unbuf}),
    ]
    zpush = "ZeroMQ PUSH/PULL, 1 msgpack int/msg"
    buf = Table(
        "buffered, worker 0 → worker 1", "M ints/s", higher_better=True,
        rows=[
            Row(f"multiprocessing.Queue ({n_mpq:,} ints)", "mp_queue"),
            Row(f"{zpush} ({n:,})", "zmq_push"),
            Row(f"mpgo Chan(1024) ({n:,})", "mpgo_1024",
                target=at_least(1.0, "≥ 1 M ints/s")
                & vs(f"{zpush} ({n:,})", 2.5, "≥ 2.5× ZeroMQ PUSH/PULL")),
        ],
        refs=[("× ZeroMQ PUSH/PULL", [f"{zpush} ({n:,})"])],
    )
    zrr = f"ZeroMQ REQ/REP round trips ({n_unbuf:,})"
    unbuf = Table(
        "unbuffered, worker 0 → worker 1", "M ints/s", higher_better=True,
        rows=[
            Row(zrr, "zmq_reqrep"),
            Row(f"mpgo Chan() ({n_unbuf:,} ints)", "mpgo_0",
                target=vs(zrr, 0.5, "≥ 0.5× the ZeroMQ round-trip rate")),
        ],
        refs=[("× ZeroMQ round trip", [zrr])],
    )
    return Workload("W4", "channel from worker 0 to worker 1", cases, [buf, unbuf],
                    notes=["Rates are per value; sizes differ per row (in brackets) to keep "
                           "slow peers short.",
                           "mpgo's consumer is placed on worker 1 by probing (see "
                           "`benchmarks/_util.py:go_on`); its placement is in the notes."])
