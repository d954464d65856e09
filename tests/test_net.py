"""mpgo.net: real TCP sockets on loopback (127.0.0.1), goroutines that park on them.

Every test runs under the leak check of conftest.py (no child process, fd or
mpgo socket may remain), with real forked workers.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import pickle
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

import mpgo
import mpgo.net as net
from mpgo.testing import go_on

HOST = "127.0.0.1"
pytestmark = pytest.mark.timeout(60)


def echo_tagged(conn: net.Conn) -> None:
    """Echo each chunk back prefixed with the serving worker's id."""
    tag = b"%d:" % mpgo.worker_id()
    while True:
        data = conn.recv(4096)
        if not data:
            return
        conn.sendall(tag + data)


def recv_exactly(conn: net.Conn, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        d = conn.recv(n - len(buf))
        if not d:
            break
        buf += d
    return buf


# -- basics ----------------------------------------------------------------------

def test_listen_dial_accept_roundtrip_and_eof():
    def main():
        with net.listen(HOST, 0) as ln:
            assert ln.addr[0] == HOST and ln.port > 0
            got = mpgo.Chan(1)

            def server():
                with ln.accept() as c:
                    data = recv_exactly(c, 5)
                    buf = bytearray(16)
                    n = c.recv_into(buf)
                    c.sendall(data + bytes(buf[:n]))
                    got.send((c.getpeername()[0], c.recv(10)))   # b"": the client shut down
            mpgo.go_local(server)
            with net.dial(HOST, ln.port, timeout=5) as c:
                assert c.fileno() >= 0
                assert c.send(b"hello") == 5
                mpgo.sleep(0.05)
                c.sendall(memoryview(b"world!"))
                reply = recv_exactly(c, 11)
                c.shutdown()
                peer, eof = got.recv()
                assert c.recv(10) == b""                         # server closed: EOF
            assert c.closed and c.fileno() == -1
            c.close()                                            # idempotent
            return reply, peer, eof
    assert mpgo.run(main, workers=1) == (b"helloworld!", HOST, b"")


def test_sendall_large_payload_with_backpressure():
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)

    def main():
        with net.listen(HOST, 0) as ln:
            def reader():
                with ln.accept() as c:
                    got = bytearray()
                    while True:
                        if len(got) < size // 2:
                            mpgo.sleep(0.0005)           # a slow reader at first
                        d = c.recv(256 * 1024)
                        if not d:
                            return bytes(got)
                        got += d
            g = mpgo.go_local(reader)
            with net.dial(HOST, ln.port) as c:
                c.sendall(payload)
            return g.join() == payload
    assert mpgo.run(main, workers=1)


def test_conn_and_listener_do_not_pickle_so_go_keeps_them_home():
    def use(c):
        return mpgo.worker_id(), c.fileno() >= 0

    def main():
        with net.listen(HOST, 0) as ln:
            with pytest.raises(TypeError):
                pickle.dumps(ln)
            c = net.dial(HOST, ln.port)
            s = ln.accept()
            with pytest.raises(TypeError):
                pickle.dumps(c)
            # an unpicklable argument pins the goroutine where it was spawned (F11)
            out = [mpgo.go(use, c).join() for _ in range(20)]
            c.close()
            s.close()
            return out
    assert set(mpgo.run(main, workers=2)) == {(0, True)}


# -- many connections, every worker -----------------------------------------------

def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _client_batch(port: int, n: int, all_up: mpgo.Chan, release: mpgo.Chan) -> tuple:
    """n client goroutines on this worker; each keeps its connection open
    until `release` is closed, so all n are open at the same moment."""
    up = mpgo.Chan(n)
    done = mpgo.Chan(n)

    def client(i: int) -> None:
        with net.dial(HOST, port, timeout=20) as c:
            c.settimeout(20)
            msg = b"c%d" % i
            c.sendall(msg)
            r1 = c.recv(100)
            up.send(1)
            local_go.recv()
            c.sendall(msg)
            r2 = c.recv(100)
        done.send((r1.split(b":")[0], r1.endswith(msg) and r2.endswith(msg)))

    local_go = mpgo.Chan()
    for i in range(n):
        mpgo.go_local(client, i)
    for _ in range(n):
        up.recv()
    threads = (threading.active_count(), _os_threads())
    all_up.send((mpgo.worker_id(), threads))
    release.recv()                # closed by main once every batch is up
    local_go.close()
    served_by = set()
    ok = 0
    for _ in range(n):
        w, good = done.recv()
        served_by.add(int(w))
        ok += good
    return mpgo.worker_id(), ok, sorted(served_by), threads


def test_two_thousand_concurrent_connections_across_workers_without_threads():
    per_worker = 1000

    def main():
        srv = net.serve(HOST, 0, echo_tagged)
        try:
            assert srv.workers == [0, 1]
            all_up, go_ = mpgo.Chan(2), mpgo.Chan()
            gs = [go_on(w, _client_batch, srv.port, per_worker, all_up, go_) for w in (0, 1)]
            ups = [all_up.recv() for _ in range(2)]    # 2,000 connections open now
            server_threads = [(go_on(w, threading.active_count).join(),
                               go_on(w, _os_threads).join()) for w in (0, 1)]
            go_.close()
            results = [g.join() for g in gs]
        finally:
            srv.close()
        return ups, server_threads, results
    ups, server_threads, results = mpgo.run(main, workers=2)
    assert sorted(w for w, _ in ups) == [0, 1]
    # Python threads: the hub and sysmon; OS threads add ZeroMQ's few. Not one
    # per connection: 2,000 of them are open at this point.
    assert all(py <= 3 and os_ <= 10 for _, (py, os_) in ups), ups
    assert all(py <= 3 and os_ <= 10 for py, os_ in server_threads), server_threads
    assert sum(ok for _, ok, _, _ in results) == 2 * per_worker
    served = set().union(*(set(s) for _, _, s, _ in results))
    assert served == {0, 1}, f"connections were served only by workers {served}"


def _accept_count(ready: mpgo.Chan, stop: mpgo.Chan, port: int) -> tuple:
    ln = net.listen(HOST, port, reuse_port=True)
    ready.send(ln.port)
    count = 0
    conns = []

    def closer():
        stop.recv()
        ln.close()
    mpgo.go_local(closer)
    while True:
        try:
            c = ln.accept()
        except net.ClosedError:
            break
        count += 1
        conns.append(c)
    for c in conns:
        c.close()
    return mpgo.worker_id(), count


def test_listen_on_every_worker_with_reuse_port_each_accepts():
    n = 200

    def main():
        first = net.listen(HOST, 0)          # learn a port, keep it bound meanwhile
        port = first.port
        ready, stop = mpgo.Chan(2), mpgo.Chan()
        gs = [go_on(w, _accept_count, ready, stop, port) for w in (0, 1)]
        assert [ready.recv(), ready.recv()] == [port, port]
        first.close()
        conns = [net.dial(HOST, port, timeout=5) for _ in range(n)]
        mpgo.sleep(0.3)                      # let the accept loops drain their queues
        stop.close()
        counts = dict(g.join() for g in gs)
        for c in conns:
            c.close()
        return counts
    counts = mpgo.run(main, workers=2)
    assert sum(counts.values()) == n
    assert counts[0] > 0 and counts[1] > 0, counts


# -- timeouts and deadlines ---------------------------------------------------------

def test_recv_timeout_and_deadline_then_connection_still_works():
    def main():
        with net.listen(HOST, 0) as ln, net.dial(HOST, ln.port) as c, ln.accept() as s:
            c.settimeout(0.2)
            assert c.gettimeout() == 0.2
            t = time.monotonic()
            with pytest.raises(TimeoutError):
                c.recv(10)
            d1 = time.monotonic() - t
            with pytest.raises(socket.timeout):          # the same class
                c.recv_into(bytearray(4))
            c.settimeout(None)
            c.set_deadline(time.monotonic() + 0.15)
            t = time.monotonic()
            with pytest.raises(TimeoutError):
                c.recv(10)
            d2 = time.monotonic() - t
            c.set_read_deadline(time.monotonic() - 1)    # in the past: fails at once
            t = time.monotonic()
            with pytest.raises(TimeoutError):
                c.recv(10)
            d3 = time.monotonic() - t
            c.set_deadline(None)
            s.sendall(b"late")
            data = c.recv(10)                            # usable after timeouts (as in Go)
            # a write deadline does not bound reads
            c.set_write_deadline(time.monotonic() - 1)
            s.sendall(b"x")
            return d1, d2, d3, data, c.recv(1)
    d1, d2, d3, data, x = mpgo.run(main, workers=1)
    assert 0.18 <= d1 < 1.5
    assert 0.13 <= d2 < 1.5
    assert d3 < 0.1
    assert data == b"late" and x == b"x"


def test_send_timeout_when_peer_does_not_read():
    def main():
        with net.listen(HOST, 0) as ln, net.dial(HOST, ln.port) as c, ln.accept() as s:
            c.settimeout(0.2)
            t = time.monotonic()
            with pytest.raises(TimeoutError):
                c.sendall(b"x" * (64 * 1024 * 1024))     # more than any socket buffer
            assert s.fileno() >= 0
            return time.monotonic() - t
    assert 0.18 <= mpgo.run(main, workers=1) < 2.0


def test_accept_timeout_and_deadline():
    def main():
        with net.listen(HOST, 0) as ln:
            ln.settimeout(0.2)
            t = time.monotonic()
            with pytest.raises(TimeoutError):
                ln.accept()
            d1 = time.monotonic() - t
            ln.settimeout(None)
            ln.set_deadline(time.monotonic() + 0.1)
            t = time.monotonic()
            with pytest.raises(TimeoutError):
                ln.accept()
            d2 = time.monotonic() - t
            ln.set_deadline(None)
            with net.dial(HOST, ln.port) as c, ln.accept() as s:
                c.sendall(b"ok")
                return d1, d2, s.recv(2)
    d1, d2, data = mpgo.run(main, workers=1)
    assert 0.18 <= d1 < 1.5 and 0.08 <= d2 < 1.5 and data == b"ok"


def test_dial_timeout_and_refused():
    def main():
        # A listener with a full accept queue never completes a new handshake:
        # the kernel drops the SYNs, so the dial waits until its timeout.
        full = socket.socket()
        full.bind((HOST, 0))
        full.listen(0)
        port = full.getsockname()[1]
        held = []
        elapsed = None
        try:
            for _ in range(8):
                t = time.monotonic()
                try:
                    held.append(net.dial(HOST, port, timeout=0.3))
                except TimeoutError:
                    elapsed = time.monotonic() - t
                    break
        finally:
            for c in held:
                c.close()
            full.close()
        # A port nobody listens on (bound, not listening): refused.
        s = socket.socket()
        s.bind((HOST, 0))
        closed_port = s.getsockname()[1]
        try:
            with pytest.raises(ConnectionRefusedError):
                net.dial(HOST, closed_port, timeout=5)
        finally:
            s.close()
        with pytest.raises(ValueError):
            net.dial(HOST, closed_port, timeout=-1)
        return elapsed
    elapsed = mpgo.run(main, workers=1)
    assert elapsed is not None, "no dial ever timed out"
    assert 0.28 <= elapsed < 2.0


# -- failures of peers ------------------------------------------------------------

def _line_server(report: mpgo.Chan):
    """A handler: read one line, answer it; report what happened to the channel."""
    def handler(conn: net.Conn) -> None:
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                d = conn.recv(1024)
                if not d:
                    report.send(("eof", buf))
                    return
                buf += d
        except ConnectionResetError:
            report.send(("reset", buf))
            return
        conn.sendall(b"re:" + buf)
        report.send(("ok", buf))
    return handler


def test_peer_disconnecting_mid_request_does_not_stop_the_server():
    def ask(port: int, text: bytes) -> bytes:
        with net.dial(HOST, port, timeout=5) as c:
            c.settimeout(5)
            c.sendall(text)
            return c.recv(100)

    def main():
        report = mpgo.Chan(16)
        srv = net.serve(HOST, 0, _line_server(report), workers=[0])
        try:
            before = ask(srv.port, b"first\n")
            # half a request, then a clean close (FIN)
            c = net.dial(HOST, srv.port)
            c.sendall(b"half a req")
            mpgo.sleep(0.05)
            c.close()
            # half a request, then an abortive close (RST)
            c = net.dial(HOST, srv.port)
            c.sendall(b"other half")
            mpgo.sleep(0.05)
            c.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            after = ask(srv.port, b"second\n")
            seen = sorted(report.recv() for _ in range(4))
        finally:
            srv.close()
        return before, after, seen
    before, after, seen = mpgo.run(main, workers=2)
    assert before == b"re:first\n" and after == b"re:second\n"
    assert ("ok", b"first\n") in seen and ("ok", b"second\n") in seen
    assert ("eof", b"half a req") in seen
    assert ("reset", b"other half") in seen or ("eof", b"other half") in seen


def _slow_writer(port: int, report: mpgo.Chan) -> None:
    with net.dial(HOST, port) as c:
        for b in b"slow request\n":
            c.sendall(bytes([b]))
            mpgo.sleep(0.1)             # 1.3 s for one request
        report.send(("slow", c.recv(100)))


def _non_reader(port: int, report: mpgo.Chan, stop: mpgo.Chan) -> None:
    with net.dial(HOST, port) as c:
        c.sendall(b"BIG\n")             # the server answers 64 MiB we never read
        report.send(("nonreader", "sent"))
        stop.recv()


def _fast_clients(port: int, n: int) -> list[float]:
    lat = []
    for i in range(n):
        t = time.monotonic()
        with net.dial(HOST, port, timeout=5) as c:
            c.settimeout(5)
            c.sendall(b"q%d\n" % i)
            assert c.recv(100) == b"re:q%d\n" % i
        lat.append(time.monotonic() - t)
    return lat


def slow_or_big_handler(conn: net.Conn) -> None:
    buf = b""
    while not buf.endswith(b"\n"):
        d = conn.recv(1024)
        if not d:
            return
        buf += d
    if buf == b"BIG\n":
        conn.sendall(b"x" * (64 * 1024 * 1024))   # blocks: the client does not read
    else:
        conn.sendall(b"re:" + buf)


def test_slow_clients_do_not_stall_other_connections_of_their_worker():
    def main():
        # every connection is served by worker 0; the clients run on worker 1
        srv = net.serve(HOST, 0, slow_or_big_handler, workers=[0])
        try:
            report, stop = mpgo.Chan(4), mpgo.Chan()
            go_on(1, _slow_writer, srv.port, report)
            go_on(1, _non_reader, srv.port, report, stop)
            assert report.recv() == ("nonreader", "sent")
            mpgo.sleep(0.1)
            t = time.monotonic()
            lat = go_on(1, _fast_clients, srv.port, 100).join()
            fast_total = time.monotonic() - t
            slow = report.recv()
            stop.close()
        finally:
            srv.close()
        return fast_total, max(lat), slow
    fast_total, worst, slow = mpgo.run(main, workers=2)
    assert slow == ("slow", b"re:slow request\n")
    assert fast_total < 1.0, f"100 fast requests took {fast_total:.2f} s next to slow ones"
    assert worst < 0.5


def _flood(port: int, started: mpgo.Chan) -> None:
    with net.dial(HOST, port) as c:
        started.send(1)
        try:
            c.sendall(b"x" * 10_000_000)        # more than the test lets it send
        except ConnectionError:
            pass                                 # the server closed it: expected


def _pings(port: int, started: mpgo.Chan) -> float:
    """On a worker other than the server's: the worst of 5 request round trips
    (connect included) while the flood keeps the server's worker busy."""
    started.recv()
    mpgo.sleep(0.2)
    worst = 0.0
    for _ in range(5):
        t = time.monotonic()
        with net.dial(HOST, port, timeout=10) as c:
            c.settimeout(10)
            c.sendall(b"p")
            assert c.recv(1) == b"P"
        worst = max(worst, time.monotonic() - t)
    return worst


def one_byte_handler(conn: net.Conn) -> None:
    while True:
        d = conn.recv(1)                  # one byte at a time: seconds of work
        if not d:
            return
        if d == b"p":
            conn.sendall(b"P")


def test_busy_connection_does_not_starve_others_of_its_worker():
    """A peer that always has more data ready: recv never waits, yet the
    connection's goroutine must let the other connections of its worker in."""
    def main():
        srv = net.serve(HOST, 0, one_byte_handler, workers=[1])
        try:
            started = mpgo.Chan(1)
            f = go_on(0, _flood, srv.port, started)
            worst = go_on(0, _pings, srv.port, started).join()
        finally:
            srv.close()
        f.join()
        return worst
    assert mpgo.run(main, workers=2) < 0.3


# -- the runtime's view ------------------------------------------------------------

def test_blocked_on_socket_is_io_wait_in_dump_and_never_a_deadlock():
    a, b = socket.socketpair()          # inherited by the workers at the fork
    fd = a.fileno()

    def main():
        conn = net.Conn(socket.socket(fileno=os.dup(fd)))

        def reader():
            return conn.recv(100)
        g = mpgo.go_local(reader)
        mpgo.sleep(0.1)
        text = mpgo.dump()
        # No timer, no runnable goroutine: only the socket can wake anyone. The
        # deadlock detector samples every 100 ms; the data comes after 1 s.
        data = g.join()
        conn.close()
        return text, data

    def late_writer():
        time.sleep(1.0)
        b.sendall(b"finally")
    th = threading.Thread(target=late_writer)
    th.start()
    try:
        text, data = mpgo.run(main, workers=2)
    finally:
        th.join()
        a.close()
        b.close()
    assert data == b"finally"
    assert "[IO wait" in text, text
    assert "reader" in text


def test_close_wakes_the_goroutine_waiting_on_it():
    def main():
        with net.listen(HOST, 0) as ln:
            c = net.dial(HOST, ln.port)
            s = ln.accept()
            out = mpgo.Chan(2)

            def blocked_reader():
                t = time.monotonic()
                try:
                    c.recv(10)
                    out.send(("returned", 0.0))
                except net.ClosedError as e:
                    out.send((f"closed:{e.errno}", time.monotonic() - t))

            def blocked_acceptor():
                t = time.monotonic()
                try:
                    ln.accept()
                    out.send(("accepted", 0.0))
                except net.ClosedError:
                    out.send(("listener closed", time.monotonic() - t))
            mpgo.go_local(blocked_reader)
            mpgo.go_local(blocked_acceptor)
            mpgo.sleep(0.2)
            c.close()
            ln.close()
            res = sorted([out.recv(), out.recv()])
            with pytest.raises(net.ClosedError):
                c.recv(1)
            with pytest.raises(net.ClosedError):
                c.sendall(b"x")
            s.close()
            return res
    res = mpgo.run(main, workers=1)
    assert [r[0] for r in res] == [f"closed:{errno.EBADF}", "listener closed"]
    assert all(0.15 <= r[1] < 1.0 for r in res), res


def test_server_close_stops_accepting_and_closes_open_connections():
    def main():
        report = mpgo.Chan(8)
        srv = net.serve(HOST, 0, _line_server(report))
        c = net.dial(HOST, srv.port)
        c.sendall(b"no newline yet")
        mpgo.sleep(0.1)
        go_on(1, srv.close).join()                    # from another worker: it pickles
        srv.close()                                   # idempotent
        c.settimeout(5)
        eof = c.recv(10)                              # the server closed our connection
        c.close()
        with pytest.raises(ConnectionRefusedError):
            net.dial(HOST, srv.port, timeout=5)
        return eof
    assert mpgo.run(main, workers=2) == b""


def test_serve_rejects_bad_workers_and_reports_bind_errors():
    def main():
        with pytest.raises(ValueError):
            net.serve(HOST, 0, echo_tagged, workers=[5])
        with net.listen(HOST, 0, reuse_port=False) as taken, pytest.raises(OSError):
            net.serve(HOST, taken.port, echo_tagged)
        return True
    assert mpgo.run(main, workers=2)


def test_net_calls_outside_a_goroutine_raise():
    with pytest.raises(RuntimeError):
        net.listen(HOST, 0)
    with pytest.raises(RuntimeError):
        net.dial(HOST, 1)


# -- the example HTTP server ---------------------------------------------------------

def _load_example():
    path = Path(__file__).resolve().parent.parent / "examples" / "http_server.py"
    mod = sys.modules.get("http_server")
    if mod is None:
        spec = importlib.util.spec_from_file_location("http_server", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["http_server"] = mod
        spec.loader.exec_module(mod)
    return mod


def test_example_http_server_keep_alive_pipelining_and_cpu_endpoint():
    hs = _load_example()

    def client(port: int) -> bytes:
        with net.dial(HOST, port, timeout=5) as c:
            c.settimeout(10)
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /cpu HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"POST /nope HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                      b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            out = b""
            while True:
                d = c.recv(65536)
                if not d:
                    return out
                out += d

    def main():
        srv = net.serve(HOST, 0, hs.handle)
        try:
            return [go_on(w, client, srv.port).join() for w in (0, 1)]
        finally:
            srv.close()
    outs = mpgo.run(main, workers=2)
    want_cpu = b"primes below %d: %d\n" % (hs.CPU_LIMIT, hs.count_primes(hs.CPU_LIMIT))
    for out in outs:
        assert out.count(b"HTTP/1.1 200 OK") == 3
        assert out.count(b"HTTP/1.1 404 Not Found") == 1
        assert out.endswith(b"Connection: close\r\n\r\nHello, World!\n")
        assert want_cpu in out


def test_example_http_server_script_serves_and_stops_on_ctrl_c():
    import signal
    import subprocess

    script = Path(__file__).resolve().parent.parent / "examples" / "http_server.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        with socket.create_connection((HOST, port), timeout=10) as s:
            for _ in range(3):                          # keep-alive: one connection
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                got = b""
                while not got.endswith(b"Hello, World!\n"):
                    d = s.recv(4096)
                    assert d, got
                    got += d
                assert got.startswith(b"HTTP/1.1 200 OK\r\n")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0, out
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_example_parallel_queries_runs_and_removes_its_database(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parent.parent / "examples" / "parallel_queries.py"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([sys.executable, str(script), "--rows", "20000", "--workers", "2"],
                       capture_output=True, text=True, timeout=50, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "speedup" in r.stdout
    assert "worker 0" in r.stdout and "worker 1" in r.stdout, r.stdout
    assert list(tmp_path.iterdir()) == []            # the temporary database is gone
