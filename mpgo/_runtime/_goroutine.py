"""Goroutine-level API: go, go_local, Goroutine handles, sleep, gosched, info.

Who may call: every function here from any goroutine (inside `mpgo.run`);
outside one they raise `RuntimeError` saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._core import _sched
from .._core._sched import DEAD, G
from .._transport import _arena, _wire
from .._transport._arena import H_GID, W_IDLE, W_LIVE, W_NRUN, worker_off
from .._transport._atomic import add, load
from . import _worker
from ._worker import current_worker


class Goroutine:
    """A handle on a goroutine: `id`, `join()`, `done()`.

    The same handle works in every worker (it pickles as a reference); joining
    from another worker asks the goroutine's home worker for the result.
    """

    __slots__ = ("id", "_g", "_home")

    def __init__(self, g: G | None, gid: int, home: int) -> None:
        self.id = gid
        self._g = g
        self._home = home

    def _local(self) -> G | None:
        g = self._g
        if g is not None:
            return g
        w = current_worker()
        if w.wid == self._home:
            g = w.exported.get(self.id)
            self._g = g
        return g

    def join(self, timeout: float | None = None) -> Any:
        """Park until the goroutine returns; return its value.

        Raises `TimeoutError` after `timeout` seconds; raises the goroutine's
        exception if it raised (the run is failing then), or `TypeError` if
        its result could not be brought to this worker.
        """
        w = current_worker()
        g = self._local()
        me = _sched.current()
        if g is not None:
            if g is me:
                raise RuntimeError(f"goroutine {self.id} cannot join itself")
            if g.status != DEAD:
                js = g.joiners
                if js is None:
                    js = g.joiners = []
                js.append(me)
                timer = None
                if timeout is not None:
                    timer = _sched.add_timer(timeout, _join_timeout, g, me, self.id)
                try:
                    _sched.park("goroutine join")
                finally:
                    if timer is not None:
                        timer.cancel()
                    if g.joiners and me in g.joiners:      # interrupted: stop waiting
                        g.joiners.remove(me)
            if g.exc is not None:
                raise g.exc
            return g.result
        # remote: ask the home worker
        t = w.ticket(me)
        w.send(self._home, [_wire.JOIN, self.id, t, 0])
        timer = None
        if timeout is not None:
            timer = _sched.add_timer(timeout, _remote_join_timeout, w, t, me, self.id)
        try:
            ok, value = _sched.park("goroutine join")
        finally:
            if timer is not None:
                timer.cancel()
            w.tickets.pop(t, None)
        if ok:
            return value
        raise value

    def done(self) -> bool:
        """Whether the goroutine has finished (asks its home worker if elsewhere)."""
        w = current_worker()
        g = self._local()
        if g is not None:
            return g.status == DEAD
        me = _sched.current()
        t = w.ticket(me)
        w.send(self._home, [_wire.JOIN, self.id, t, 1])
        ok, value = _sched.park("goroutine join")
        if not ok:
            raise value
        return bool(value)

    def __repr__(self) -> str:
        return f"<mpgo.Goroutine {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Goroutine) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> Any:
        g = self._g
        if g is not None:
            w = _worker.W
            if w is not None and w.wid == self._home:
                w.exported[self.id] = g
        return (_goroutine_ref, (self.id, self._home))


def _goroutine_ref(gid: int, home: int) -> Goroutine:
    w = _worker.W
    if w is not None and w.wid == home:
        g = w.exported.get(gid)
        return Goroutine(g, gid, home)
    return Goroutine(None, gid, home)


def _join_timeout(g: G, me: G, gid: int) -> None:
    js = g.joiners
    if js and me in js and me.status == _sched.WAITING:
        js.remove(me)
        _sched.ready_err(me, TimeoutError(f"join of goroutine {gid} timed out"))


def _remote_join_timeout(w: Any, t: int, me: G, gid: int) -> None:
    if w.tickets.pop(t, None) is me and me.status == _sched.WAITING:
        _sched.ready_err(me, TimeoutError(f"join of goroutine {gid} timed out"))


def _check_fn(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"mpgo.go: {fn!r} is not callable")


def go(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Goroutine:
    """Start ``fn(*args, **kwargs)`` as a goroutine; it may run in any worker.

    It starts on this worker's queue; idle workers steal queued goroutines.
    A goroutine whose function or arguments cannot be pickled is never stolen
    and runs here.
    """
    w = current_worker()
    _check_fn(fn)
    g = _sched.new_g(fn, args, kwargs or None, gid=add(H_GID, 1))
    g.home = w.wid
    add(w.off_live, 1)
    dst = w.place(g)
    if dst != w.wid and _ship_one(w, g, dst):
        return Goroutine(g, g.id, w.wid)
    add(w.off_nrun, 1)
    _sched.spawn(g)
    return Goroutine(g, g.id, w.wid)


def _ship_one(w: Any, g: G, dst: int) -> bool:
    """Start new goroutine g on worker dst; False if it cannot be pickled."""
    try:
        blob = _wire.dumps((g.fn, g.args, g.kwargs))
    except TypeError:
        return False
    add(worker_off(dst, W_NRUN), 1)
    _sched._live.pop(g.id, None)
    g.fn = None
    g.args = ()
    g.kwargs = None
    w.shipped[g.id] = g
    w.send(dst, [_wire.RECORDS, [[g.id, g.home, blob]]])
    if load(worker_off(dst, W_IDLE)):
        # it waits for work: do not let the record sit in our outbox while the
        # spawner goes on computing (a long C call would hold it for good)
        w.flush()
    return True


def go_on(worker: int, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Goroutine:
    """Start a goroutine on a given worker (tests, benchmarks, placement experiments).

    The record is shipped there at once (it must be picklable) and is not
    stolen back by an idle worker before it starts... except by that
    worker's own stealing rules; use it to place, not to pin.
    """
    w = current_worker()
    _check_fn(fn)
    if not 0 <= worker < w.n:
        raise ValueError(f"worker must be in 0..{w.n - 1}, got {worker}")
    g = _sched.new_g(fn, args, kwargs or None, gid=add(H_GID, 1))
    g.home = w.wid
    add(w.off_live, 1)
    if worker == w.wid:
        add(w.off_nrun, 1)
        g.pinned = True
        _sched._runq.append(g)
    elif not _ship_one(w, g, worker):
        raise TypeError(f"go_on: {fn!r} or its arguments cannot be pickled")
    return Goroutine(g, g.id, w.wid)


def go_local(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Goroutine:
    """As `go`, pinned to this worker (it may share in-memory objects with its spawner)."""
    w = current_worker()
    _check_fn(fn)
    g = _sched.new_g(fn, args, kwargs or None, gid=add(H_GID, 1))
    g.home = w.wid
    g.pinned = True
    add(w.off_live, 1)
    add(w.off_nrun, 1)
    _sched._runq.append(g)
    return Goroutine(g, g.id, w.wid)


def sleep(seconds: float) -> None:
    """Park the calling goroutine for `seconds`; others of its worker run meanwhile."""
    current_worker()
    _sched.sleep(float(seconds))


def gosched() -> None:
    """Yield to the other runnable goroutines of this worker."""
    current_worker()
    _sched.gosched()


def num_goroutine() -> int:
    """Live goroutines in the whole run, across workers."""
    w = current_worker()
    return sum(load(worker_off(i, W_LIVE)) for i in range(w.n))


def worker_id() -> int:
    """The calling goroutine's worker index, 0 … M-1."""
    return current_worker().wid


def num_workers() -> int:
    """M, the number of worker processes of this run."""
    return current_worker().n


def dump() -> str:
    """Every live goroutine in every worker: id, worker, state and stack."""
    from . import _dump
    w = current_worker()
    me = _sched.current()
    t = w.ticket(me)
    w.send(_worker.SUPERVISOR, [_wire.DUMP_REQ, t])
    text: str = _sched.park("dump")
    del _dump
    return text


__all__ = ["Goroutine", "go", "go_local", "sleep", "gosched", "num_goroutine",
           "worker_id", "num_workers", "dump", "os", "_arena"]
