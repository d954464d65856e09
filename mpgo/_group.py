"""Structured concurrency: `Group` (errgroup with a pool) and `map_` (``mpgo.map``).

Strategy
--------
An exception escaping a goroutine is fatal to the run, so both tools run the
caller's function inside a wrapper goroutine that catches `Exception` and
returns it as a value; the result travels home by the runtime's own path (the
goroutine's result, brought back by `Goroutine.join`). An exception that
cannot make the trip (unpicklable, or not rebuildable on the other side) is
replaced, in the worker where it was raised, by a `RemoteException` carrying
its type name, text and traceback; one that can make it gets the remote
traceback as its ``__cause__`` (as `concurrent.futures` does).

`Group`:
* ``_first`` (`AtomicInt`) holds 1 + the index of the first task that failed:
  the failing task CASes it from 0 and, if it won, cancels ``ctx`` before it
  returns. "First" is first in time, in any worker.
* ``limit`` is a local token channel of that capacity: `go` sends a token
  before it spawns (so it blocks while `limit` tasks hold one); a small
  *reaper* goroutine pinned to the group's worker joins the task and then
  takes the token back. Invariant: tasks running ≤ tokens held ≤ limit, in
  the whole run, since a token is given back only after the home worker
  learnt that its task ended. (The channel never leaves the home worker:
  no broker traffic per task.)
* Tasks are plain `go` goroutines: they start on the caller's worker and idle
  workers steal them, so they spread over every worker.

`map_` runs batches: each goroutine applies `fn` to a list of items and
reports how long that took; the next batch size aims at `TARGET` seconds of
work per batch (growing at most ×8 per measurement, shrinking at once), so
CPU-heavy items go one per goroutine and tiny ones by thousands. The first
batches (one per worker, started by the call itself) hold one item of a lazy
input, or ``len / (FIRST_SPLIT × workers)`` items of a sized one; no batch
exceeds half a worker's share, nor what a slow input (a channel, a computing
generator) yields in about `TARGET`. Then at most `window` batches are in
flight (enough to keep a queue on every worker while the caller's own worker
computes); the input is read only to fill that window.

Who may call: `Group()` and its methods from goroutines of the worker that
made the group (a Group does not pickle: a task that captures it stays in
that worker); ``g.ctx`` anywhere. `map_` from any goroutine; its iterator in
the goroutine that made it.
"""

from __future__ import annotations

import pickle
import traceback
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from itertools import islice
from time import monotonic, perf_counter
from typing import Any

from ._context import CANCELED, Context, _CancelCtx, background, with_cancel
from ._core._chan import Chan, default, select
from ._errors import RemoteException, RemoteTraceback
from ._runtime._goroutine import Goroutine, go, go_local
from ._runtime._worker import current_worker
from ._sync import AtomicInt
from ._transport import _wire

__all__ = ["Group", "map_"]

TARGET = 0.002          # seconds of work per map batch
GROWTH = 8              # the most a batch grows per measurement
MAX_BATCH = 4096        # bounds the items in flight for lazy inputs
WINDOW_PER_WORKER = 16  # map batches in flight per worker (without a limit): keeps
                        # a queue on each worker for idle ones to take from
FIRST_SPLIT = 16        # a sized input starts with batches of len / (this × workers)

# (exception, remote traceback text or "")
_Failure = tuple[BaseException, str]


def _portable(e: BaseException, home: int) -> _Failure:
    """`e` as it can reach worker `home`. Called in the task, where `e` was raised."""
    if current_worker().wid == home:
        return e, ""                        # never pickled: the very object, traceback intact
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:
        pickle.loads(_wire.dumps(e))        # will it survive the trip?
    except Exception:  # noqa: BLE001 - pickling and unpickling raise anything
        return RemoteException(type(e).__qualname__, str(e), tb), tb
    return e, tb


def _revive(f: _Failure) -> BaseException:
    """The exception of a failure, with its remote traceback as the cause. Home side."""
    e, tb = f
    if tb and not isinstance(e, RemoteException):
        e.__cause__ = RemoteTraceback(tb)
    return e


# ---------------------------------------------------------------------------
# Group
# ---------------------------------------------------------------------------

class _Shared:
    """What every task of a group shares: the context, the first-failure word, home.

    Pickled once per group: a stolen task carries these as a small cached blob,
    unpickled only if the task fails (the common path never pays for them).
    """

    __slots__ = ("_state", "_blob")

    def __init__(self, state: tuple[_CancelCtx, AtomicInt, int] | None,
                 blob: bytes | None = None) -> None:
        self._state = state
        self._blob = blob

    def state(self) -> tuple[_CancelCtx, AtomicInt, int]:
        st = self._state
        if st is None:
            assert self._blob is not None
            st = self._state = pickle.loads(self._blob)
        return st

    def __reduce__(self) -> Any:
        b = self._blob
        if b is None:                       # promotes the context's channel, once
            b = self._blob = pickle.dumps(self._state, protocol=5)
        return (_Shared, (None, b))


def _task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
          shared: _Shared, idx: int) -> tuple[bool, Any]:
    """One task of a Group: (True, value) or (False, failure). Any worker.

    (`fn` comes first: when it cannot be pickled, pickling the record fails
    before it reaches the group's state.)
    """
    try:
        return True, fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - carried to wait(), as errgroup returns errors
        ctx, first, home = shared.state()
        if first.cas(0, idx + 1):
            ctx._cancel(CANCELED)
        return False, _portable(e, home)


def _outcome(h: Goroutine, ctx: _CancelCtx, first: AtomicInt, idx: int) -> tuple[bool, Any]:
    """Join a task. A result that cannot come back is that task's failure. Home."""
    try:
        return h.join()
    except Exception as e:  # noqa: BLE001 - e.g. an unpicklable result
        if first.cas(0, idx + 1):
            ctx._cancel(CANCELED)
        return False, (e, "")


def _reap(h: Goroutine, ctx: _CancelCtx, first: AtomicInt, idx: int,
          sem: Chan) -> tuple[bool, Any]:
    """With a limit: wait for the task, then give its token back. Home, pinned."""
    try:
        return _outcome(h, ctx, first, idx)
    finally:
        sem.recv()


class Group:
    """Go's errgroup with a goroutine pool.

    ``g.go(fn, *args, **kwargs)`` starts a task; ``g.wait()`` waits for every
    task and returns their results in submission order, or raises the first
    exception (first in time). That exception cancels ``g.ctx`` at once; so
    does `wait` returning. With `limit`, at most `limit` tasks of this group
    run at once across all workers: `go` blocks until one finishes.
    `parent` is the context ``g.ctx`` derives from.

    Also a context manager: leaving the block waits (and cancels ``g.ctx``
    first if the block raised).

    Tasks start on the caller's worker and idle workers take them; the
    caller's worker runs tasks too, so while it computes one it cannot start
    the next: a `limit` above `num_workers()` keeps every worker busy.
    """

    def __init__(self, limit: int | None = None, parent: Context | None = None) -> None:
        w = current_worker()
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
            if limit < 1:
                raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        ctx, self._cancel = with_cancel(background() if parent is None else parent)
        assert isinstance(ctx, _CancelCtx)
        self._ctx = ctx
        self.ctx: Context = ctx
        self._first = AtomicInt(0)
        self._shared = _Shared((ctx, self._first, w.wid))
        self._sem: Chan | None = Chan(limit) if limit is not None else None
        # (index, the task's handle, or its reaper's when there is a limit)
        self._pending: list[tuple[int, Goroutine]] = []
        self._results: list[Any] = []
        self._failures: dict[int, _Failure] = {}

    def go(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Start ``fn(*args, **kwargs)`` as a task; blocks while `limit` tasks run."""
        if not callable(fn):
            raise TypeError(f"Group.go: {fn!r} is not callable")
        if self._sem is not None:
            self._sem.send(None)
        self._spawn(fn, args, kwargs)

    def try_go(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> bool:
        """Start the task only if that does not exceed `limit`; whether it started."""
        if not callable(fn):
            raise TypeError(f"Group.try_go: {fn!r} is not callable")
        if self._sem is not None and select((self._sem.send, None), default)[0] == 1:
            return False
        self._spawn(fn, args, kwargs)
        return True

    def _spawn(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> None:
        idx = len(self._results)
        self._results.append(None)
        ctx = self._ctx
        h = go(_task, fn, args, kwargs, self._shared, idx)
        if self._sem is not None:
            h = go_local(_reap, h, ctx, self._first, idx, self._sem)
        self._pending.append((idx, h))

    def wait(self) -> list[Any]:
        """Wait for every task; their results in submission order, or raise the
        first exception. Cancels ``g.ctx``. May be called again after more `go`."""
        while self._pending:                # tasks may add tasks while we wait
            pending, self._pending = self._pending, []
            for idx, h in pending:
                if self._sem is not None:
                    ok, v = h.join()            # the reaper's: local, never fails
                else:
                    ok, v = _outcome(h, self._ctx, self._first, idx)
                if ok:
                    self._results[idx] = v
                else:
                    self._failures[idx] = v
        self._cancel()
        first = self._first.load()
        if first:
            raise _revive(self._failures[first - 1])
        return list(self._results)

    def __enter__(self) -> Group:
        return self

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> None:
        if exc is None:
            self.wait()
            return
        self._cancel()
        try:
            self.wait()
        except Exception:  # noqa: BLE001 - the block's own exception wins
            pass

    def __reduce__(self) -> Any:
        raise TypeError("an mpgo.Group is used only in the worker that made it "
                        "(pass g.ctx to other workers, not g)")

    def __repr__(self) -> str:
        return f"<mpgo.Group limit={self.limit} tasks={len(self._results)}>"


# ---------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------

def _run_batch(fn: Callable[..., Any], items: list[Any], star: bool,
               home: int) -> tuple[list[Any], float, _Failure | None]:
    """Apply fn to each item: (results so far, seconds, failure or None). Any worker."""
    out: list[Any] = []
    ap = out.append
    t0 = perf_counter()
    try:
        if star:
            for a in items:
                ap(fn(*a))
        else:
            for x in items:
                ap(fn(x))
    except Exception as e:  # noqa: BLE001 - raised where the caller iterates to it
        return out, perf_counter() - t0, _portable(e, home)
    return out, perf_counter() - t0, None


def _next_size(size: int, n: int, seconds: float, cap: int) -> int:
    """The next batch size after `n` items took `seconds`."""
    want = int(n * TARGET / seconds) if seconds > 0 else size * GROWTH
    return max(1, min(want, size * GROWTH, cap))


def map_(fn: Callable[..., Any], /, *iterables: Iterable[Any], limit: int | None = None,
         timeout: float | None = None, chunksize: int | None = None) -> Iterator[Any]:
    """Parallel map over the workers: an iterator of ``fn(x)`` in input order.

    A drop-in for ``ProcessPoolExecutor.map``: several iterables are zipped;
    the first exception is raised when iteration reaches it; `timeout` counts
    from this call (`TimeoutError`). Lazy: the input is read only as far as
    the batches in flight need (at most `limit` batches, default 16 per
    worker). Batches are sized automatically unless `chunksize` is given.
    Any goroutine; iterate in the same goroutine.
    """
    w = current_worker()
    if not callable(fn):
        raise TypeError(f"map: {fn!r} is not callable")
    if not iterables:
        raise TypeError("map: needs at least one iterable")
    for name, v in (("limit", limit), ("chunksize", chunksize)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"map: {name} must be a positive int or None, got {v!r}")
    window = limit if limit is not None else WINDOW_PER_WORKER * w.n
    cap, first = MAX_BATCH, 1
    # Sized: a collection (a channel has a len, the values buffered now, but is
    # no collection). Anything else is lazy: it starts at one item per batch.
    if all(isinstance(x, Collection) for x in iterables):
        n = min(len(x) for x in iterables)  # type: ignore[arg-type]
        cap = max(1, min(cap, -(-n // (2 * w.n))))   # at least two batches per worker
        first = max(1, min(cap, n // (FIRST_SPLIT * w.n)))
    star = len(iterables) > 1
    it = zip(*iterables, strict=False) if star else iter(iterables[0])
    deadline = None if timeout is None else monotonic() + float(timeout)
    b = _Batches(fn, it, star, window, chunksize or first, chunksize is None, cap, w.wid)
    # Start at once, as ProcessPoolExecutor.map does; only a batch per worker
    # until the first measurement, which sizes the rest.
    b.fill(w.n)
    return _results(b, deadline)


class _Batches:
    """The batches of one map in flight, oldest first, and the input behind them."""

    def __init__(self, fn: Callable[..., Any], it: Iterator[Any], star: bool, window: int,
                 size: int, adapt: bool, cap: int, home: int) -> None:
        self.fn, self.it, self.star, self.home = fn, it, star, home
        self.window, self.size, self.adapt, self.cap = window, size, adapt, cap
        self.pending: deque[tuple[int, Goroutine]] = deque()   # (items, goroutine)
        self.exhausted = False
        self.input_error: BaseException | None = None
        # A slow input (a channel, a generator that computes) bounds the batch
        # too: gathering one must not take much longer than TARGET either.
        self.input_cap = cap

    def fill(self, window: int | None = None) -> None:
        """Start batches until `window` (default: all the window) are in flight
        or the input ends."""
        window = self.window if window is None else min(window, self.window)
        while not self.exhausted and len(self.pending) < window:
            want = min(self.size, self.input_cap)
            batch: list[Any] = []
            t0 = perf_counter()
            try:
                batch.extend(islice(self.it, want))   # keeps what came before an error
            except Exception as e:  # noqa: BLE001 - raised after the items before it
                self.input_error = e
            if len(batch) < want:
                self.exhausted = True
            if not batch:
                return
            if self.adapt:
                took = perf_counter() - t0
                fits = int(len(batch) * TARGET / took) if took > 0 else self.cap
                self.input_cap = max(1, min(fits, self.input_cap * GROWTH, self.cap))
            self.pending.append((len(batch), go(_run_batch, self.fn, batch, self.star,
                                                self.home)))

    def measured(self, n: int, seconds: float) -> None:
        if self.adapt:
            self.size = _next_size(self.size, n, seconds, self.cap)


def _results(b: _Batches, deadline: float | None) -> Iterator[Any]:
    while b.pending:
        n, h = b.pending.popleft()
        wait = None if deadline is None else max(0.0, deadline - monotonic())
        out, seconds, failure = h.join(wait)
        if failure is not None:
            yield from out
            raise _revive(failure)
        b.measured(n, seconds)
        b.fill()                    # keep the workers busy while the caller consumes
        yield from out
    if b.input_error is not None:
        raise b.input_error
