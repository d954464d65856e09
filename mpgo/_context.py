"""Contexts (Go's ``context``): cancellation and deadlines that cross workers.

Strategy
--------
A cancelable context is two shared objects and a number:

* ``_code`` — an `AtomicInt` in shared memory: 0 while live, then
  `CANCELED` or `DEADLINE`. Cancelling is a CAS from 0, so exactly one
  caller in the whole run wins, whichever worker it runs in;
* ``_done`` — a `Chan` that the winner (and only the winner) closes;
* ``_deadline`` — a wall-clock time (``time.time()``) or None.

A context pickles as those three (the channel is promoted when it first
leaves its worker), so it may be passed to goroutines in any worker; every
copy sees the same code and the same channel.

A deadline is a timer of the worker that made the context: at the deadline
its callback CASes the code to `DEADLINE` and starts a goroutine to close
``done`` (a timer callback may not park).

Propagation from parent to child is done by one small *watcher* goroutine
per child, pinned to the worker that made the child: it parks in ``select``
on the parent's ``done()`` and the child's own ``done()``. If the parent's
fires first, its error is copied to the child; either way the watcher then
stops the child's timer and ends. So a parent cancelled in any worker
reaches its children in every worker within two channel hand-offs, no timer
outlives its context, and no watcher outlives its context's cancellation. A
child of `background()` needs a watcher only for its timer (it just waits
for its own ``done()``); without a deadline it needs none.

Invariants:
* ``_code.load() != 0`` ⇔ cancelled; it never changes again after that;
* ``_done`` is closed only after ``_code`` was set, and only by the caller
  whose CAS won; so ``done()`` closed ⇒ ``err()`` is not None;
* a watcher exists only while its child is live (it ends at the child's
  cancellation, whatever causes it).

Who may call: `background` anywhere; `with_cancel`, `with_timeout`,
`with_deadline` and cancel functions from any goroutine, in any worker;
``done()``, ``err()`` and ``deadline()`` anywhere (``err()`` is an atomic
load).
"""

from __future__ import annotations

import time
from typing import Any

from ._core import _sched
from ._core._chan import Chan, nilchan, select
from ._errors import Canceled, DeadlineExceeded
from ._runtime._goroutine import go_local
from ._runtime._worker import current_worker
from ._sync import AtomicInt

__all__ = ["CancelFunc", "Context", "background", "with_cancel", "with_deadline",
           "with_timeout"]

LIVE, CANCELED, DEADLINE = 0, 1, 2


def _error(code: int) -> Exception | None:
    if code == CANCELED:
        return Canceled("context canceled")
    if code == DEADLINE:
        return DeadlineExceeded("context deadline exceeded")
    return None


class Context:
    """A context: ``done()``, ``err()``, ``deadline()``. Made by the functions below."""

    __slots__ = ()

    def done(self) -> Any:
        """A channel closed when the context is cancelled or its deadline passes
        (`mpgo.nilchan`, never ready, for a context that cannot be cancelled).
        Receive from it only: closing or sending on it is a misuse (Go types
        it receive-only)."""
        raise NotImplementedError

    def err(self) -> Exception | None:
        """None while live; then a `Canceled` or `DeadlineExceeded` instance."""
        raise NotImplementedError

    def deadline(self) -> float | None:
        """When the context will be cancelled (a ``time.time()`` value), or None."""
        raise NotImplementedError

    def _code_of(self) -> int:
        raise NotImplementedError


class _Background(Context):
    """The root context: never cancelled, no deadline. One per process."""

    __slots__ = ()

    def done(self) -> Any:
        return nilchan

    def err(self) -> Exception | None:
        return None

    def deadline(self) -> float | None:
        return None

    def _code_of(self) -> int:
        return LIVE

    def __repr__(self) -> str:
        return "mpgo.background()"

    def __reduce__(self) -> str:
        return "_BACKGROUND"


_BACKGROUND = _Background()


def background() -> Context:
    """The root context: never cancelled, no deadline (Go's ``context.Background``)."""
    return _BACKGROUND


class _CancelCtx(Context):
    """A cancelable context (see the module docstring for its state)."""

    __slots__ = ("_code", "_done", "_deadline")

    def __init__(self, code: AtomicInt, done: Chan, deadline: float | None) -> None:
        self._code = code
        self._done = done
        self._deadline = deadline

    def done(self) -> Chan:
        return self._done

    def err(self) -> Exception | None:
        return _error(self._code.load())

    def deadline(self) -> float | None:
        return self._deadline

    def _code_of(self) -> int:
        return int(self._code.load())

    def _cancel(self, code: int) -> None:
        """Cancel with `code` unless already cancelled. Any goroutine, any worker.

        Returns once ``done()`` is closed, even when another caller won the
        CAS and is closing it right now (so ``cancel(); done().recv()`` never
        blocks).
        """
        if self._code.cas(LIVE, code):
            self._done.close()
        elif not self._done.closed:
            self._done.recv()       # the winner is closing it; wait for that

    def __reduce__(self) -> Any:
        return (_CancelCtx, (self._code, self._done, self._deadline))

    def __repr__(self) -> str:
        state = {LIVE: "live", CANCELED: "canceled", DEADLINE: "deadline exceeded"}
        return f"<mpgo.Context {state.get(self._code_of(), '?')}>"


class CancelFunc:
    """``cancel()`` cancels its context (and so its children); idempotent.

    Picklable: it may be handed to a goroutine in another worker.
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx: _CancelCtx) -> None:
        self._ctx = ctx

    def __call__(self) -> None:
        self._ctx._cancel(CANCELED)

    def __reduce__(self) -> Any:
        return (CancelFunc, (self._ctx,))

    def __repr__(self) -> str:
        return f"<mpgo.CancelFunc of {self._ctx!r}>"


def _check_parent(parent: Any) -> Context:
    if not isinstance(parent, Context):
        raise TypeError(f"parent must be an mpgo context (e.g. mpgo.background()), "
                        f"not {type(parent).__name__}")
    return parent


def _new_child(parent: Context, deadline: float | None,
               timed: bool) -> tuple[_CancelCtx, CancelFunc]:
    """Make a child of `parent`; start its timer and watcher if it needs them.

    `timed`: the child's own `deadline` needs a timer (else it is the parent's,
    whose cancellation reaches the child through the watcher). Any goroutine.
    """
    current_worker()
    ctx = _CancelCtx(AtomicInt(LIVE), Chan(), deadline)
    code = parent._code_of()
    if code != LIVE:                               # a cancelled parent: born cancelled
        ctx._cancel(code)
        return ctx, CancelFunc(ctx)
    if timed and deadline is not None and deadline <= time.time():
        ctx._cancel(DEADLINE)
        return ctx, CancelFunc(ctx)
    watch_parent = parent.done() is not nilchan
    if timed or watch_parent:
        timer = None
        if timed and deadline is not None:
            timer = _sched.add_timer(deadline - time.time(), _expire, ctx)
        go_local(_watch, parent if watch_parent else None, ctx, timer)
    return ctx, CancelFunc(ctx)


def _expire(ctx: _CancelCtx) -> None:
    """Timer callback (hub, must not park): the deadline passed.

    The code is set here, at the deadline; closing `done` may park, so a
    goroutine does it.
    """
    if ctx._code.cas(LIVE, DEADLINE):
        go_local(ctx._done.close)


def _watch(parent: Context | None, ctx: _CancelCtx, timer: Any) -> None:
    """The child's watcher (module docstring): pinned to the child's worker.

    Ends when the child is cancelled, copying the parent's cancellation to it
    first if that is what happened; stops the child's timer on the way out.
    """
    if parent is None:
        ctx.done().recv()
    elif select(ctx.done().recv, parent.done().recv)[0] == 1:
        ctx._cancel(parent._code_of())
    if timer is not None:
        timer.cancel()


def with_cancel(parent: Context) -> tuple[Context, CancelFunc]:
    """A child of `parent` and the function that cancels it (Go's ``WithCancel``).

    The child is cancelled when ``cancel()`` is called or when `parent` is,
    whichever happens first, in whatever worker. Call ``cancel()`` when done
    with the child: until then its watcher goroutine waits on the parent.
    Any goroutine.
    """
    parent = _check_parent(parent)
    return _new_child(parent, parent.deadline(), timed=False)


def with_deadline(parent: Context, deadline: float) -> tuple[Context, CancelFunc]:
    """As `with_cancel`, also cancelled with `DeadlineExceeded` at `deadline`
    (a ``time.time()`` value). A parent with an earlier deadline keeps its own.
    Any goroutine."""
    parent = _check_parent(parent)
    d = float(deadline)
    if d != d:
        raise ValueError("deadline must be a number, not NaN")
    pd = parent.deadline()
    if pd is not None and pd <= d:
        return _new_child(parent, pd, timed=False)   # the parent's deadline comes first
    return _new_child(parent, d, timed=True)


def with_timeout(parent: Context, seconds: float) -> tuple[Context, CancelFunc]:
    """``with_deadline(parent, time.time() + seconds)``. Any goroutine."""
    return with_deadline(parent, time.time() + float(seconds))
