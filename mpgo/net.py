"""TCP sockets that park only the calling goroutine (Go's ``net`` package, small).

What
----
* `listen(host, port)` -> `Listener`: a listening TCP socket in the calling
  worker. With ``reuse_port=True`` (the default) every worker may listen on
  the same port at once; the kernel spreads incoming connections over the
  workers' sockets (``SO_REUSEPORT``), and each worker accepts on its own.
* `dial(host, port, timeout=None)` -> `Conn`: a connected TCP socket.
* `Conn`: ``recv``, ``recv_into``, ``send``, ``sendall``, ``shutdown``,
  ``close``, ``settimeout`` and Go-style deadlines (``set_deadline``,
  ``set_read_deadline``, ``set_write_deadline``); a context manager.
* `serve(host, port, handler)` -> `Server`: an accept loop on every worker,
  one goroutine per connection (``handler(conn)``), stopped by
  ``Server.close()``.

Strategy
--------
Every socket is non-blocking. An operation first tries the system call; on
``EAGAIN`` the goroutine waits with `mpgo.wait_readable` /
`mpgo.wait_writable`, i.e. the fd joins its worker's one epoll and the
goroutine parks as ``IO wait`` while the other goroutines of the worker run
(Go's netpoller). There is no thread per connection and no busy loop; a
goroutine waiting here is never counted as deadlocked.

mpgo has no preemption and its hub polls the fds only when nothing is
runnable, so a connection whose data is always there already (recv never
waits) could keep its worker for ever. `accept`, `recv` and `recv_into`
therefore yield through the poller once the calling goroutine has run for
a slice (1 ms) without a switch; see `_fair`.

Invariants
----------
* A socket lives in the worker process that opened or accepted it. `Conn`,
  `Listener` cannot be pickled, so ``mpgo.go(handler, conn)`` never ships
  one to another worker (the goroutine is pinned where it was spawned);
  `mpgo.go_local` says the same thing explicitly.
* At most one goroutine reads and one writes a socket at a time (as Go's
  netpoller; a second concurrent reader or writer gets ``RuntimeError``).
* ``close()`` first wakes the goroutines waiting on the socket (they raise
  `ClosedError`), then closes the fd: a closed fd number is never left in
  the worker's epoll.
* Timeouts raise ``TimeoutError`` (``socket.timeout`` is the same class), as
  the `socket` module does; end of stream is ``b""``.

Who may call
------------
Everything here must be called from a goroutine (inside `mpgo.run`), in the
worker that owns the socket. Host names are resolved with
``socket.getaddrinfo``, which blocks the worker while it resolves (numeric
addresses such as ``127.0.0.1`` never do).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from ._core import _sched
from ._core._chan import Chan, select
from ._runtime._goroutine import go_local, go_on, num_workers, worker_id
from ._runtime._io import forget_fd, wait_readable, wait_writable
from ._runtime._worker import current_worker

__all__ = ["ClosedError", "Conn", "Listener", "Server", "dial", "listen", "serve"]

_monotonic = time.monotonic
_NONBLOCK = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC


class ClosedError(OSError):
    """Use of a closed connection or listener (Go's ``net.ErrClosed``).

    Raised in a goroutine whose socket was closed while it waited on it, or
    that uses a socket after ``close()``. An `OSError` with errno ``EBADF``.
    """

    def __init__(self, what: str = "network connection") -> None:
        super().__init__(errno.EBADF, f"use of closed {what}")


# ---------------------------------------------------------------------------
# Fairness: mpgo has no preemption, and the hub polls the fds only when no
# goroutine is runnable. A connection whose peer always has the next request
# ready (recv never waits) would keep its worker for ever and starve every
# other connection of that worker. So an accept/recv that finds its goroutine
# running for more than _SLICE without a switch first parks it on an
# always-readable eventfd: the hub's next poll wakes it together with, and
# after, the fds that became ready meanwhile (Go gets the same from its
# preemption plus netpoll checks in the scheduler).
# ---------------------------------------------------------------------------

_SLICE = 0.001           # seconds a goroutine may run I/O without yielding
_slice_tick = -1         # the scheduler tick when the current slice started
_slice_start = 0.0
_yield_fds: list[int] = []   # always-readable eventfds of this worker, free
_yield_pid = 0


def _fair() -> None:
    """Yield through the poller when the running goroutine used its slice.

    Cheap when not: one clock read. Goroutine only.
    """
    global _slice_tick, _slice_start
    tick = _sched._tick
    now = _monotonic()
    if tick != _slice_tick:
        _slice_tick = tick
        _slice_start = now
        return
    if now - _slice_start >= _SLICE:
        _yield_to_poller()


def _yield_to_poller() -> None:
    global _yield_pid
    pid = os.getpid()
    if _yield_pid != pid:       # a fresh worker: nothing of a parent's is ours
        _yield_fds.clear()
        _yield_pid = pid
    fd = _yield_fds.pop() if _yield_fds else os.eventfd(1, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    wait_readable(fd)
    # Not in a finally: if the wait raised (an interrupt, the end of the run)
    # the poller may still name this goroutine as the fd's reader (see the
    # report on _io.Poller.wait), so the fd is dropped (left open) rather
    # than reused.
    _yield_fds.append(fd)


def _timed_out() -> TimeoutError:
    return TimeoutError("timed out")


def _deadline(timeout: float | None, deadline: float | None) -> float | None:
    """The earlier of now + `timeout` and the absolute `deadline` (None: none)."""
    if timeout is None:
        return deadline
    d = _monotonic() + timeout
    return d if deadline is None or d < deadline else deadline


def _wait(fd: int, write: bool, deadline: float | None) -> None:
    """Park until fd is ready in that direction; TimeoutError at `deadline`."""
    if deadline is None:
        if write:
            wait_writable(fd)
        else:
            wait_readable(fd)
        return
    left = deadline - _monotonic()
    if left <= 0.0:
        raise _timed_out()
    ok = wait_writable(fd, left) if write else wait_readable(fd, left)
    if not ok:
        raise _timed_out()


def _check_timeout(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    seconds = float(seconds)
    if seconds < 0:
        raise ValueError("timeout must be non-negative or None")
    return seconds


class _Timeouts:
    """Per-operation timeout and absolute read/write deadlines of a socket."""

    __slots__ = ("_timeout", "_rdl", "_wdl")

    def __init__(self) -> None:
        self._timeout: float | None = None
        self._rdl: float | None = None
        self._wdl: float | None = None

    def settimeout(self, seconds: float | None) -> None:
        """Each later operation fails with ``TimeoutError`` after waiting
        `seconds` (None: wait for ever). Like ``socket.settimeout``, except
        that 0 means "fail at once instead of waiting"."""
        self._timeout = _check_timeout(seconds)

    def gettimeout(self) -> float | None:
        """The per-operation timeout set by `settimeout`."""
        return self._timeout

    def set_deadline(self, when: float | None) -> None:
        """Go's ``SetDeadline``: operations that would wait past the absolute
        ``time.monotonic()`` value `when` fail with ``TimeoutError`` (None
        clears it). Applies to operations started after the call; an
        operation that can proceed without waiting does, even past it."""
        self._rdl = self._wdl = None if when is None else float(when)

    def set_read_deadline(self, when: float | None) -> None:
        """`set_deadline` for receiving (and accepting) only."""
        self._rdl = None if when is None else float(when)

    def set_write_deadline(self, when: float | None) -> None:
        """`set_deadline` for sending only."""
        self._wdl = None if when is None else float(when)


class Conn(_Timeouts):
    """A connected, non-blocking TCP socket whose operations park only the
    calling goroutine.

    Made by `dial` and `Listener.accept`, or by ``Conn(sock)`` around any
    connected stream socket of this worker (it is made non-blocking). Use it
    only in the worker that made it; it cannot be pickled.
    """

    __slots__ = ("_sock", "_fd", "_closed", "__weakref__")

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._closed = False

    # -- reading ---------------------------------------------------------------

    def recv(self, n: int) -> bytes:
        """Up to `n` bytes, waiting until at least one arrives; ``b""`` at end
        of stream. Raises ``TimeoutError`` at the timeout/read deadline,
        `ClosedError` if the connection is closed meanwhile, and what the
        socket raises otherwise (e.g. ``ConnectionResetError``)."""
        _fair()
        sock = self._sock
        try:
            return sock.recv(n)
        except BlockingIOError:
            pass
        except OSError:
            if self._closed:
                raise ClosedError() from None
            raise
        dl = _deadline(self._timeout, self._rdl)
        while True:
            self._wait(False, dl)
            try:
                return sock.recv(n)
            except (BlockingIOError, InterruptedError):
                continue

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        """As `recv`, into a writable buffer; returns the byte count (0: end
        of stream)."""
        _fair()
        sock = self._sock
        try:
            return sock.recv_into(buffer, nbytes)
        except BlockingIOError:
            pass
        except OSError:
            if self._closed:
                raise ClosedError() from None
            raise
        dl = _deadline(self._timeout, self._rdl)
        while True:
            self._wait(False, dl)
            try:
                return sock.recv_into(buffer, nbytes)
            except (BlockingIOError, InterruptedError):
                continue

    # -- writing ---------------------------------------------------------------

    def send(self, data: Any) -> int:
        """Send some of `data` (bytes-like), waiting until the socket can take
        at least one byte; returns how many were sent."""
        sock = self._sock
        try:
            return sock.send(data)
        except BlockingIOError:
            pass
        except OSError:
            if self._closed:
                raise ClosedError() from None
            raise
        dl = _deadline(self._timeout, self._wdl)
        while True:
            self._wait(True, dl)
            try:
                return sock.send(data)
            except (BlockingIOError, InterruptedError):
                continue

    def sendall(self, data: Any) -> None:
        """Send all of `data`, waiting as needed. The timeout bounds the whole
        call (as ``socket.sendall`` does); on ``TimeoutError`` some prefix of
        `data` may have been sent."""
        sock = self._sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            if self._closed:
                raise ClosedError() from None
            raise
        total = len(data) if isinstance(data, bytes | bytearray) else memoryview(data).nbytes
        if sent >= total:
            return
        view = memoryview(data).cast("B")[sent:]
        dl = _deadline(self._timeout, self._wdl)
        while view:
            self._wait(True, dl)
            try:
                n = sock.send(view)
            except (BlockingIOError, InterruptedError):
                continue
            view = view[n:]

    # -- waiting ---------------------------------------------------------------

    def _wait(self, write: bool, deadline: float | None) -> None:
        if self._closed:
            raise ClosedError()
        _wait(self._fd, write, deadline)
        if self._closed:
            raise ClosedError()

    # -- the rest --------------------------------------------------------------

    def shutdown(self, how: int = socket.SHUT_WR) -> None:
        """Half-close (default: no more sending; the peer reads end of stream)."""
        if self._closed:
            raise ClosedError()
        self._sock.shutdown(how)

    def close(self) -> None:
        """Close the connection. Goroutines of this worker waiting on it wake
        with `ClosedError`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        forget_fd(self._fd)
        self._sock.close()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def fileno(self) -> int:
        """The file descriptor (-1 once closed)."""
        return -1 if self._closed else self._fd

    def getpeername(self) -> Any:
        """The remote address, as ``socket.getpeername``."""
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        """The local address, as ``socket.getsockname``."""
        return self._sock.getsockname()

    @property
    def socket(self) -> socket.socket:
        """The underlying (non-blocking) socket, for options such as
        ``setsockopt``; do not make it blocking, and close through `close`."""
        return self._sock

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("mpgo.net.Conn cannot be pickled: a socket stays in the worker "
                        "that opened it (spawn its goroutine with mpgo.go_local)")

    def __repr__(self) -> str:
        if self._closed:
            return "<mpgo.net.Conn closed>"
        try:
            peer = self._sock.getpeername()
        except OSError:
            peer = "?"
        return f"<mpgo.net.Conn fd={self._fd} peer={peer}>"


def _nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class Listener(_Timeouts):
    """A listening TCP socket of this worker; `accept` parks only the caller.

    `settimeout` / `set_deadline` / `set_read_deadline` bound `accept`.
    """

    __slots__ = ("_sock", "_fd", "_closed", "addr", "__weakref__")

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._closed = False
        name = sock.getsockname()
        self.addr: tuple[str, int] = (name[0], name[1])
        """(host, port) the listener is bound to (the real port when 0 was asked)."""

    @property
    def port(self) -> int:
        """The bound port."""
        return self.addr[1]

    def accept(self) -> Conn:
        """The next incoming connection, waiting for one (only this goroutine
        waits). Raises ``TimeoutError`` at the timeout/deadline and
        `ClosedError` when the listener is closed meanwhile."""
        _fair()
        sock = self._sock
        dl: float | None = None
        first = True
        while True:
            try:
                s, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                if self._closed:
                    raise ClosedError("listener") from None
                raise
            else:
                _nodelay(s)
                return Conn(s)          # makes it non-blocking
            if first:
                first = False
                dl = _deadline(self._timeout, self._rdl)
            if self._closed:
                raise ClosedError("listener")
            _wait(self._fd, False, dl)
            if self._closed:
                raise ClosedError("listener")

    def close(self) -> None:
        """Stop listening; a goroutine waiting in `accept` raises `ClosedError`.
        Connections already accepted stay open. Idempotent."""
        if self._closed:
            return
        self._closed = True
        forget_fd(self._fd)
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        """The file descriptor (-1 once closed)."""
        return -1 if self._closed else self._fd

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("mpgo.net.Listener cannot be pickled: call mpgo.net.listen in "
                        "each worker (reuse_port=True) or use mpgo.net.serve")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.addr[0]}:{self.addr[1]}"
        return f"<mpgo.net.Listener {state}>"


def listen(host: str, port: int, *, reuse_port: bool = True, backlog: int = 1024) -> Listener:
    """A non-blocking listening TCP socket in the calling worker.

    Sets ``SO_REUSEADDR``, and ``SO_REUSEPORT`` when `reuse_port`: then every
    worker may listen on the same (host, port) at once and the kernel
    spreads new connections over their sockets. ``port=0`` picks a free port
    (`Listener.addr` tells which). Call from a goroutine.
    """
    current_worker()
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                               0, socket.AI_PASSIVE)
    family, _, proto, _, sa = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM | _NONBLOCK, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sa)
        sock.listen(backlog)
        return Listener(sock)
    except BaseException:
        sock.close()
        raise


def dial(host: str, port: int, timeout: float | None = None) -> Conn:
    """Connect to (host, port); only the calling goroutine waits.

    Tries each address `host` resolves to, in order, until one connects
    (as ``socket.create_connection``). Raises ``TimeoutError`` when
    `timeout` seconds pass first, ``ConnectionRefusedError`` (or another
    `OSError`) as the socket module does. The connection has
    ``TCP_NODELAY`` set, as Go's. Call from a goroutine.
    """
    current_worker()
    timeout = _check_timeout(timeout)
    deadline = None if timeout is None else _monotonic() + timeout
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    err: OSError | None = None
    for family, _, proto, _, sa in infos:
        sock = socket.socket(family, socket.SOCK_STREAM | _NONBLOCK, proto)
        fd = sock.fileno()
        try:
            rc = sock.connect_ex(sa)
            if rc in (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR):
                _wait(fd, True, deadline)
                rc = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc:
                raise OSError(rc, os.strerror(rc))     # maps to ConnectionRefusedError etc.
            _nodelay(sock)
            return Conn(sock)
        except TimeoutError:
            forget_fd(fd)
            sock.close()
            raise
        except OSError as e:
            forget_fd(fd)
            sock.close()
            err = e
        except BaseException:
            forget_fd(fd)
            sock.close()
            raise
    if err is None:
        err = OSError(f"getaddrinfo returned no address for {host!r}")
    raise err


# ---------------------------------------------------------------------------
# serve: an accept loop on every worker, a goroutine per connection
# ---------------------------------------------------------------------------

# What ends one connection's goroutine quietly: the peer went away, it timed
# out, or the server closed it. Anything else a handler raises is a panic and
# ends the run (GoroutineError), as every goroutine failure does in mpgo.
_CONN_ERRORS = (ConnectionError, TimeoutError, ClosedError)


class Server:
    """The handle `serve` returns: where it listens, and how to stop it.

    ``port`` / ``host`` / ``workers``; ``close()`` stops every accept loop,
    closes the open connections (their goroutines wake with `ClosedError`)
    and returns when every worker has stopped accepting. It is a context
    manager and can be passed to goroutines in any worker (it pickles).
    """

    def __init__(self, host: str, port: int, workers: list[int], stop: Chan, exited: Chan) -> None:
        self.host = host
        self.port = port
        self.workers = workers
        self._stop = stop
        self._exited = exited
        self._closed = False

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def close(self) -> None:
        """Stop serving on every worker; idempotent. Call from any goroutine."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stop.close()
        except Exception:  # noqa: BLE001 - closed already by another copy of this handle
            return
        for _ in self.workers:
            self._exited.recv()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mpgo.net.Server {self.host}:{self.port} workers={self.workers}>"


def _handle(handler: Callable[[Conn], Any], conn: Conn, conns: set[Conn]) -> None:
    try:
        handler(conn)
    except _CONN_ERRORS:
        pass
    finally:
        conns.discard(conn)
        conn.close()


def _watch(stop: Chan, done: Chan, ln: Listener) -> None:
    select(stop.recv, done.recv)
    ln.close()


def _accept_loop(ln: Listener, handler: Callable[[Conn], Any], stop: Chan,
                 exited: Chan) -> None:
    """Accept until the listener is closed; one goroutine per connection."""
    conns: set[Conn] = set()
    done = Chan()
    go_local(_watch, stop, done, ln)
    try:
        while True:
            try:
                c = ln.accept()
            except ClosedError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # out of fds or memory: back off as Go's http.Server does
                    _sleep(0.005)
                    continue
                if isinstance(e, ConnectionError):  # ECONNABORTED: the peer gave up
                    continue
                raise
            conns.add(c)
            go_local(_handle, handler, c, conns)
    finally:
        done.close()
        ln.close()
        for c in list(conns):
            c.close()
        exited.send(worker_id())


def _sleep(seconds: float) -> None:
    from ._runtime._goroutine import sleep
    sleep(seconds)


def _worker_serve(want: int, host: str, port: int, backlog: int,
                  handler: Callable[[Conn], Any], stop: Chan, ready: Chan,
                  exited: Chan) -> None:
    """Runs on worker `want`: listen there (SO_REUSEPORT), report, accept."""
    wid = worker_id()
    if wid != want:     # go_on places, it does not pin: an idle thief took us
        go_on(want, _worker_serve, want, host, port, backlog, handler, stop, ready, exited)
        return
    try:
        ln = listen(host, port, reuse_port=True, backlog=backlog)
    except OSError as e:
        ready.send((wid, f"{type(e).__name__}: {e}"))
        exited.send(wid)
        return
    ready.send((wid, None))
    _accept_loop(ln, handler, stop, exited)


def serve(host: str, port: int, handler: Callable[[Conn], Any], *,
          workers: Iterable[int] | None = None, backlog: int = 1024) -> Server:
    """Serve TCP on (host, port) from every worker: one goroutine per connection.

    Each chosen worker (default: all) listens with ``SO_REUSEPORT`` and runs
    an accept loop; every accepted connection gets its own goroutine, pinned
    to that worker, running ``handler(conn)``. When the handler returns the
    connection is closed. A handler ending with a connection error
    (``ConnectionError``, ``TimeoutError``, `ClosedError`) ends only its
    connection; any other exception is a goroutine failure (fatal to the
    run, as everywhere in mpgo). `handler` must be picklable when it runs in
    other workers (module-level functions are; cloudpickle takes closures).

    With ``port=0`` the port is bound once here, in the caller's worker, and
    the others join it. Returns once every worker listens (or raises the
    first worker's bind error, after stopping the others). Call from a
    goroutine; stop with ``Server.close()``.
    """
    me = worker_id()
    ids = list(range(num_workers())) if workers is None else sorted(set(workers))
    n = num_workers()
    if not ids or any(not 0 <= w < n for w in ids):
        raise ValueError(f"workers must be ids in 0..{n - 1}, got {ids}")
    stop = Chan()
    exited = Chan(len(ids))
    ready = Chan(len(ids))
    first = listen(host, port, reuse_port=True, backlog=backlog)
    port = first.port
    bound_host = first.addr[0]
    srv = Server(bound_host, port, ids, stop, exited)
    for w in ids:
        if w != me:
            go_on(w, _worker_serve, w, host, port, backlog, handler, stop, ready, exited)
    errors = []
    for _ in range(len(ids) - (me in ids)):
        wid, err = ready.recv()
        if err is not None:
            errors.append(f"worker {wid}: {err}")
    if me in ids:
        go_local(_accept_loop, first, handler, stop, exited)
    else:
        first.close()       # it only told us the port
    if errors:
        srv.close()
        raise OSError(f"mpgo.net.serve: cannot listen on {host}:{port}: " + "; ".join(errors))
    return srv
