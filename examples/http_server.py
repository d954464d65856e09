"""A minimal HTTP/1.1 server: one goroutine per connection, on every core.

Every worker process listens on the same port (SO_REUSEPORT) and runs an
accept loop; each connection gets its own goroutine (``mpgo.net.serve``),
which parks while it waits for the socket, so one worker serves thousands
of connections, and the workers together use every core — what Caddy does
with Go's goroutines.

Endpoints (keep-alive, pipelining, Content-Length bodies are skipped):

* ``/``     a fixed small response (``Hello, World!``);
* ``/cpu``  about 2 ms of pure-Python CPU work (counting primes), then its
  result: the case where a single-process event loop is bound to one core.

Run: python examples/http_server.py [--host 127.0.0.1] [--port 8080] [--workers N]
Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

import mpgo
from mpgo import net

CPU_LIMIT = 5000            # primes below this: ~2 ms of pure Python on one core
MAX_HEAD = 64 * 1024        # request line + headers
FIXED_BODY = b"Hello, World!\n"


def count_primes(limit: int = CPU_LIMIT) -> int:
    """Primes below `limit` by trial division: the CPU-heavy endpoint's work."""
    if limit < 3:
        return 0
    c = 1
    for n in range(3, limit, 2):
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            c += 1
    return c


def cpu_body() -> bytes:
    """The body of ``/cpu`` (shared with the gevent server of the benchmark)."""
    return b"primes below %d: %d\n" % (CPU_LIMIT, count_primes(CPU_LIMIT))


def response(status: bytes, body: bytes, keep_alive: bool) -> bytes:
    """A complete HTTP/1.1 response with Content-Length."""
    return b"".join((
        b"HTTP/1.1 ", status, b"\r\nContent-Type: text/plain\r\nContent-Length: ",
        str(len(body)).encode(), b"\r\nConnection: ",
        b"keep-alive" if keep_alive else b"close", b"\r\n\r\n", body,
    ))


FIXED = {True: response(b"200 OK", FIXED_BODY, True),
         False: response(b"200 OK", FIXED_BODY, False)}
NOT_FOUND = {True: response(b"404 Not Found", b"not found\n", True),
             False: response(b"404 Not Found", b"not found\n", False)}
BAD_REQUEST = response(b"400 Bad Request", b"bad request\n", False)
TOO_LARGE = response(b"431 Request Header Fields Too Large", b"headers too large\n", False)
NOT_IMPLEMENTED = response(b"501 Not Implemented", b"not implemented\n", False)


def route(method: bytes, target: bytes, keep_alive: bool) -> bytes:
    """The response to one request."""
    path = target.split(b"?", 1)[0]
    if path == b"/":
        return FIXED[keep_alive]
    if path == b"/cpu":
        return response(b"200 OK", cpu_body(), keep_alive)
    return NOT_FOUND[keep_alive]


def handle(conn: net.Conn) -> None:
    """Serve one connection: requests until the client closes or asks to."""
    recv, sendall = conn.recv, conn.sendall
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                sendall(TOO_LARGE)
                return
            data = recv(65536)
            if not data:
                return                       # the client is gone (or done)
            buf = buf + data if buf else data
            end = buf.find(b"\r\n\r\n")
        lines = buf[:end].split(b"\r\n")
        buf = buf[end + 4:]
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            sendall(BAD_REQUEST)
            return
        method, target, version = parts
        keep_alive = version == b"HTTP/1.1"
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    sendall(BAD_REQUEST)
                    return
            elif name == b"connection":
                v = value.strip().lower()
                if v == b"close":
                    keep_alive = False
                elif v == b"keep-alive":
                    keep_alive = True
            elif name == b"transfer-encoding":
                sendall(NOT_IMPLEMENTED)
                return
        while len(buf) < length:             # a body: read it, ignore it
            data = recv(65536)
            if not data:
                return
            buf += data
        buf = buf[length:]
        sendall(route(method, target, keep_alive))
        if not keep_alive:
            return


def serve_main(host: str, port: int) -> None:
    """The main goroutine: serve on every worker until interrupted."""
    srv = net.serve(host, port, handle)
    try:
        print(f"listening on http://{srv.host}:{srv.port}/ "
              f"({mpgo.num_workers()} workers; Ctrl-C stops)", flush=True)
        mpgo.Chan().recv()                   # park until Ctrl-C (KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        srv.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the CPU count)")
    args = p.parse_args(argv)
    try:
        mpgo.run(serve_main, args.host, args.port, workers=args.workers)
    except KeyboardInterrupt:
        pass
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
