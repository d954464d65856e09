"""Goroutines that wait on file descriptors: Go's netpoller on the worker's poll.

Strategy
--------
A goroutine that would block on a non-blocking fd calls `wait_readable` /
`wait_writable`: the fd joins the worker's one epoll (``EPOLLONESHOT``, re-armed
with one ``epoll_ctl`` per wait) and the goroutine parks with reason
``IO wait``; the other goroutines of the worker keep running. When the hub's
idle poll reports the fd, the waiter is made runnable. No thread per fd, no
busy loop. A goroutine parked here counts in the worker table (`W_FDS`), so
the deadlock detector never mistakes a server waiting for clients for a
deadlock.

Invariants: at most one reader and one writer wait on one fd at a time
(a second one raises `RuntimeError`, as Go's netpoller panics); the epoll mask
of an fd is exactly the union of its waiters' directions.

Who may call: `wait_readable`/`wait_writable` from any goroutine; the rest
from the hub.
"""

from __future__ import annotations

import select as _select
from typing import Any

from .._core import _sched
from .._core._sched import G
from .._transport._atomic import add
from . import _worker
from ._worker import current_worker

_IN = _select.EPOLLIN | _select.EPOLLRDHUP
_OUT = _select.EPOLLOUT
_ERR = _select.EPOLLERR | _select.EPOLLHUP
_ONESHOT = _select.EPOLLONESHOT


class _FdState:
    __slots__ = ("reader", "writer", "registered")

    def __init__(self) -> None:
        self.reader: G | None = None
        self.writer: G | None = None
        self.registered = False


class Poller:
    """The fds goroutines of this worker wait on. One per worker."""

    def __init__(self, w: Any) -> None:
        self.w = w
        self.fds: dict[int, _FdState] = {}

    def _arm(self, fd: int, st: _FdState) -> None:
        mask = (_IN if st.reader is not None else 0) | (_OUT if st.writer is not None else 0)
        ep = self.w.ep
        if st.registered:
            try:
                ep.modify(fd, mask | _ONESHOT)
                return
            except FileNotFoundError:       # the fd was closed and reused meanwhile
                st.registered = False
        ep.register(fd, mask | _ONESHOT)
        st.registered = True

    def wait(self, fd: int, write: bool, timeout: float | None) -> bool:
        if not isinstance(fd, int):
            fd = fd.fileno()
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        g = _sched.current()
        st = self.fds.get(fd)
        if st is None:
            st = self.fds[fd] = _FdState()
        if (st.writer if write else st.reader) is not None:
            raise RuntimeError(
                f"mpgo: another goroutine already waits for fd {fd} to become "
                f"{'writable' if write else 'readable'}")
        if write:
            st.writer = g
        else:
            st.reader = g
        try:
            self._arm(fd, st)
        except OSError:
            if write:
                st.writer = None
            else:
                st.reader = None
            raise
        timer = None
        if timeout is not None:
            timer = _sched.add_timer(max(0.0, timeout), self._timeout, fd, write, g)
        w = self.w
        add(w.off_fds, 1)
        try:
            ok = _sched.park("IO wait")
        finally:
            add(w.off_fds, -1)
            if timer is not None:
                timer.cancel()
            # Interrupted (an error thrown into the park): stop waiting for
            # good, or a later event would wake this goroutine out of
            # whatever it parks on next.
            if write and st.writer is g:
                st.writer = None
                self._rearm_or_drop(fd, st)
            elif not write and st.reader is g:
                st.reader = None
                self._rearm_or_drop(fd, st)
        return bool(ok)

    def _timeout(self, fd: int, write: bool, g: G) -> None:
        st = self.fds.get(fd)
        if st is None:
            return
        if write and st.writer is g:
            st.writer = None
        elif not write and st.reader is g:
            st.reader = None
        else:
            return
        self._rearm_or_drop(fd, st)
        _sched.ready(g, False)

    def _rearm_or_drop(self, fd: int, st: _FdState) -> None:
        if st.reader is None and st.writer is None:
            return              # oneshot: nothing armed once it fired or is re-armed later
        try:
            self._arm(fd, st)
        except OSError:
            pass

    def poll_now(self) -> None:
        """Look at the fds without blocking (the hub's turn, while goroutines keep
        it busy): a ready socket must not wait for the run queue to drain."""
        try:
            events = self.w.ep.poll(0)
        except InterruptedError:
            return
        w = self.w
        for fd, ev in events:
            if fd != w.link.fd and fd != w.death_fd and fd != w.wake_r:
                self.on_event(fd, ev)

    def on_event(self, fd: int, ev: int) -> None:
        """The hub's poll reported fd (oneshot: it is disarmed now)."""
        st = self.fds.get(fd)
        if st is None:
            return
        err = ev & _ERR
        if st.reader is not None and (ev & _IN or err):
            g, st.reader = st.reader, None
            _sched.ready(g, True)
        if st.writer is not None and (ev & _OUT or err):
            g, st.writer = st.writer, None
            _sched.ready(g, True)
        self._rearm_or_drop(fd, st)

    def forget(self, fd: int) -> None:
        """fd is about to be closed: wake its waiters (they see it closed), drop it."""
        st = self.fds.pop(fd, None)
        if st is None:
            return
        for g in (st.reader, st.writer):
            if g is not None:
                _sched.ready(g, True)
        if st.registered:
            try:
                self.w.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def reset(self) -> None:
        for fd in list(self.fds):
            st = self.fds.pop(fd)
            if st.registered:
                try:
                    self.w.ep.unregister(fd)
                except (OSError, ValueError):
                    pass


def _poller() -> Poller:
    w = current_worker()
    p: Poller | None = getattr(w, "io", None)
    if p is None:
        p = w.io = Poller(w)
    return p


def wait_readable(fd: Any, timeout: float | None = None) -> bool:
    """Park until `fd` (an int or an object with ``fileno()``) is readable.

    Returns True when it is (or has an error or hang-up to report), False
    after `timeout` seconds. Only the calling goroutine waits; the fd should
    be non-blocking.
    """
    return _poller().wait(fd, False, timeout)


def wait_writable(fd: Any, timeout: float | None = None) -> bool:
    """Park until `fd` is writable; False after `timeout` seconds."""
    return _poller().wait(fd, True, timeout)


def forget_fd(fd: int) -> None:
    """Call before closing an fd goroutines may wait on (wakes them)."""
    w = _worker.W
    p = getattr(w, "io", None) if w is not None else None
    if p is not None:
        p.forget(fd)


def _install(w: Any) -> None:
    w.io = Poller(w)
    w.on_run_end.append(w.io.reset)


_worker.ON_WORKER_START.append(_install)
