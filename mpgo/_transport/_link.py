"""The ZeroMQ sockets of one process: one inbox, one outbox per peer, batching.

Strategy
--------
* Each process binds a PULL inbox at ``ipc://@mpgo-<run>-<name>`` (abstract
  namespace: no socket file exists, so none can be left behind) and opens a
  PUSH to each peer it talks to, on first use. One PUSH per destination keeps
  per-link FIFO order. High-water marks are 0 (unbounded): capacity and
  back-pressure are mpgo's protocol, never socket buffering.
* `send` queues a frame; `flush` packs every queued frame of one destination
  into one message. The owner flushes at the end of its turn; a second thread
  (sysmon) may flush too: `flush` holds `lock` while it pops and sends, so the
  frames of one destination leave in the order they were queued.
* Receiving drains the inbox until EAGAIN (its FD is edge-triggered); messages
  without this run's token are dropped before anything is decoded.

Who may call: `send` and `recv_all` from the owning thread; `flush` from the
owner or its sysmon thread. Nothing here knows about greenlets.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections import deque
from typing import Any

import zmq

from . import _wire

SUPERVISOR = -1
_NOBLOCK = zmq.NOBLOCK
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)
_BIG_MESSAGE = 1 << 20

# libzmq called from C on pyzmq's sockets (`_speedups.zsend/zrecv/zevents`,
# see the C file's section 5): the same calls without pyzmq's Python layers.
# Without the accelerator, or with a pyzmq whose backend is not the Cython
# one, the pyzmq methods are used.
def _bind_libzmq() -> Any:
    """_speedups when its libzmq calls could be bound, else None."""
    try:
        from .. import _speedups as _sp  # type: ignore[attr-defined]
        for name in ("zmq.backend.cython._zmq",       # pyzmq >= 26: one module
                     "zmq.backend.cython.socket"):    # pyzmq 25
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
            if _sp.zmq_bind(mod.__file__):
                return _sp
    except (ImportError, AttributeError):
        pass
    return None


_CZ: Any = _bind_libzmq()


def _zmq_error(errno: int) -> zmq.ZMQError:
    """The error pyzmq would have raised for a libzmq call that failed with errno."""
    return zmq.Again() if errno == zmq.EAGAIN else zmq.ZMQError(errno)


def address(run_tag: str, who: int) -> str:
    name = "s" if who == SUPERVISOR else f"w{who}"
    return f"ipc://@mpgo-{run_tag}-{name}"


class Link:
    """Inbox + outboxes of one process (`me` is a worker id or SUPERVISOR)."""

    def __init__(self, token: bytes, run_tag: str, me: int,
                 on_sent: Any = None, on_recv: Any = None) -> None:
        self.token = token
        self.run_tag = run_tag
        self.me = me
        self.run = 0
        self.ctx = zmq.Context(io_threads=1)
        self.ctx.setsockopt(zmq.LINGER, 0)
        self.inbox = self.ctx.socket(zmq.PULL)
        self.inbox.setsockopt(zmq.RCVHWM, 0)
        self.inbox.bind(address(run_tag, me))
        self.fd: int = int(self.inbox.getsockopt(zmq.FD))
        self.out: dict[int, zmq.Socket] = {}
        # C-level calls, each bound to the libzmq socket's address while the
        # socket is open (`close` drops them first): events() -> EVENTS bits,
        # recv() -> a message or None, and per destination a send(msg).
        self.events: Any
        self.recv: Any
        self._send_to: dict[int, Any] = {}
        if _CZ is not None:
            self.events = functools.partial(_CZ.zevents, self.inbox.underlying)
            self.recv = functools.partial(_CZ.zrecv, self.inbox.underlying)
        else:
            self.events = functools.partial(self.inbox.getsockopt, _EVENTS)
            self.recv = self._recv_py
        self.queue: deque[tuple[int, Any]] = deque()
        self.lock = threading.Lock()
        self._packer = _wire.message_packer()     # used under `lock` only
        self.local: deque[list[Any]] = deque()   # frames addressed to this process itself
        self.rejected = 0
        self._on_sent = on_sent       # callable(n) counting messages sent
        self._on_recv = on_recv
        self.closed = False
        # True once a look at the inbox found nothing and nothing was received
        # since: its edge-triggered FD will fire for the next message, so an
        # epoll may block without looking again (§3, P20).
        self.armed = False
        # Called under `lock` at the start of every flush (hub or sysmon): moves
        # state that is batched elsewhere (credited channel sends) into `queue`.
        self.pre_flush: Any = None
        self.pre_pending: Any = None

    # -- sending -------------------------------------------------------------

    def _sender(self, dst: int) -> Any:
        """send(msg) -> 0 or an errno, for the PUSH to dst (made on first use)."""
        f = self._send_to.get(dst)
        if f is None:
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.SNDHWM, 0)
            s.setsockopt(zmq.RECONNECT_IVL, 2)
            s.connect(address(self.run_tag, dst))
            self.out[dst] = s
            if _CZ is not None:
                f = functools.partial(_CZ.zsend, s.underlying)
            else:
                f = functools.partial(_send_py, s)
            self._send_to[dst] = f
        return f

    def _pack(self, frames: list[Any]) -> bytes:
        """One message of frames. Under `lock`. A packer keeps the buffer of its
        largest message: after a big one (a large value) it is replaced."""
        msg = _wire.pack_message(self.token, self.me, self.run, frames, self._packer)
        if len(msg) > _BIG_MESSAGE:
            self._packer = _wire.message_packer()
        return msg

    def _send(self, dst: int, frames: list[Any]) -> None:
        """One message of frames to dst, now. Under `lock`."""
        err = self._sender(dst)(self._pack(frames))
        if err:
            raise _zmq_error(err)

    def send(self, dst: int, frame: list[Any]) -> None:
        """Queue one frame for `dst`. Owner thread."""
        self.queue.append((dst, frame))

    def pending(self) -> int:
        return len(self.queue)

    def flush(self, blocking: bool = True) -> int:
        """Send every queued frame, one message per destination. Returns messages sent.

        With blocking=False (sysmon), gives up at once if the owner is flushing.
        """
        if self.closed:
            return 0
        if not self.queue and not (self.pre_pending is not None and self.pre_pending()):
            return 0
        if not self.lock.acquire(blocking):
            return 0
        try:
            q = self.queue
            n_before = len(q)
            if self.pre_flush is not None:
                self.pre_flush(blocking)
            # Destinations of what pre_flush framed (credited sends, consumption)
            # get their message first: a send that returned before, say, its
            # goroutine's RESULT left should reach its home first (§6.4).
            early = {d for d, _ in list(q)[n_before:]} if len(q) > n_before else None
            by_dst: dict[int, list[Any]] = {}
            for _ in range(len(q)):
                try:
                    dst, frame = q.popleft()
                except IndexError:
                    break
                lst = by_dst.get(dst)
                if lst is None:
                    by_dst[dst] = [frame]
                else:
                    lst.append(frame)
            n = 0
            items = list(by_dst.items())
            if early and len(items) > 1:
                items.sort(key=lambda it: it[0] not in early)     # stable: early ones first
            for dst, frames in items:
                if dst == self.me:           # to ourselves: no socket (pair-mode homes)
                    self.local.extend(frames)
                    continue
                self._send(dst, frames)
                n += 1
            if n and self._on_sent is not None:
                self._on_sent(n)
            return n
        finally:
            self.lock.release()

    def flush_local(self) -> None:
        """Frame what pre_flush owes and move the frames addressed to this
        process itself into `local`; frames for others stay queued, in order.
        Owner thread (pair-mode homes read their own frames before the others')."""
        with self.lock:
            if self.pre_flush is not None:
                self.pre_flush(True)
            q = self.queue
            me = self.me
            if not any(d == me for d, _ in q):
                return
            keep = [(d, f) for d, f in q if d != me]
            self.local.extend(f for d, f in q if d == me)
            q.clear()
            q.extend(keep)

    def send_now(self, dst: int, frames: list[Any]) -> None:
        """Send frames at once, bypassing the queue (sysmon's own hand-outs)."""
        with self.lock:
            self._send(dst, frames)
            if self._on_sent is not None:
                self._on_sent(1)

    # -- receiving -------------------------------------------------------------

    def readable(self) -> bool:
        """Whether a message is waiting (also re-arms the edge-triggered FD)."""
        if self.local:
            return True
        ev = self.events()
        if ev < 0:
            raise _zmq_error(-ev)
        if ev & _POLLIN:
            self.armed = False
            return True
        self.armed = True
        return False

    def recv_all(self, limit: int = 1 << 30) -> list[list[Any]]:
        """Every waiting message as [src, frame, ...]; foreign ones dropped. Owner thread.

        Receives until the socket has nothing (a receive that finds nothing
        leaves the edge-triggered FD armed, as a `ZMQ_EVENTS` question that
        finds nothing does): one libzmq call per message plus one, where
        asking before each receive took two per message.
        """
        out: list[list[Any]] = []
        if self.local:
            frames = []
            while self.local:
                frames.append(self.local.popleft())
            out.append([self.me, self.run, *frames])
        recv = self.recv
        split = _wire.split
        token = self.token
        n = 0
        self.armed = False
        while n < limit:
            msg = recv()
            if type(msg) is not bytes:
                if msg is not None:
                    raise _zmq_error(msg)
                self.armed = True
                break
            m = split(token, msg)
            if m is None:
                self.rejected += 1
                continue
            n += 1
            out.append(m)
        if n and self._on_recv is not None:
            self._on_recv(n)
        return out

    def _recv_py(self) -> bytes | None:
        """`recv` through pyzmq (no accelerator): a message, or None when none waits."""
        try:
            return self.inbox.recv(_NOBLOCK)
        except zmq.Again:
            return None

    def close(self) -> None:
        """Close every socket and the context, linger 0. Owner thread."""
        if self.closed:
            return
        self.closed = True
        with self.lock:
            # no call may reach a closed libzmq socket through its address
            self._send_to.clear()
            self.events = self.recv = _closed
            for s in self.out.values():
                s.close(0)
            self.inbox.close(0)
            self.ctx.term()


def _send_py(sock: zmq.Socket, msg: bytes) -> int:
    """A destination's send through pyzmq (no accelerator); errors raise."""
    sock.send(msg, _NOBLOCK)
    return 0


def _closed(*args: Any) -> Any:
    """What a closed link's receive calls become: they raise, never touch a socket."""
    raise zmq.ZMQError(zmq.ENOTSOCK, "mpgo: this link is closed")
