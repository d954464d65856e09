"""The scheduler of one worker: goroutines, run queues, timers, the hub loop.

THIS IS THE ONLY MODULE THAT SWITCHES GREENLETS. Everything else parks a
goroutine with `park(reason)` and wakes one with `ready(g, value)`.

Strategy
--------
* A goroutine is a `G` run by a pooled greenlet. A finished greenlet picks the
  next *unstarted* G itself, with no switch at all; a parked goroutine switches
  directly to the next runnable one (one switch, not two through the hub). The
  hub gets a turn every `HUB_EVERY` ticks, when the run queues are empty, or
  when someone asked for one (`want_hub_turn`).
* Queues: `runq` (woken goroutines, FIFO), `runnext` (the newest spawn, not
  stealable while its spawner runs, as Go's runnext), `spawnq` (older unstarted
  spawns, stealable, FIFO). Picking order: runq, runnext, spawnq.
* The hub loop: run what is runnable; give the runtime its turn (`Hooks.turn`);
  fire due timers; when nothing is runnable, `Hooks.poll(timeout)` blocks in
  the worker's one poll until I/O, a message or the next timer.

Invariants
----------
* `_cur` is the G whose greenlet is running, or None while the hub runs.
* A G is in at most one of runq / runnext / spawnq, and only when its status
  is RUNNABLE (started) or NEW (not started).
* Only the thread that started the hub (`_hub_thread`) may touch any of this
  state; `park` checks it and raises a clear error in any other thread.

Who may call what is written on each function.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import count
from threading import get_ident
from typing import Any

import greenlet

from .._errors import Deadlock, GoroutineError, InternalError

# G.status values.
NEW, RUNNABLE, RUNNING, WAITING, DEAD = range(5)
STATUS_NAMES = ("new", "runnable", "running", "waiting", "dead")

HUB_EVERY = 64            # a hub turn at least every this many ticks
_monotonic = time.monotonic


class G:
    """One goroutine. Owned by the worker it runs on.

    `value`/`ok`/`err` carry the result of the operation it is parked on and
    are written by whoever readies it; `sel` is its select in progress.
    """

    __slots__ = (
        "id", "fn", "args", "kwargs", "status", "reason", "since", "gr",
        "value", "ok", "err", "sel", "result", "exc", "joiners", "home",
        "blob", "pinned", "exported", "stack_hint", "waitq", "__weakref__",
    )

    def __init__(self, gid: int, fn: Callable[..., Any] | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any] | None) -> None:
        self.id = gid
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.status = NEW
        self.reason = ""
        self.since = 0.0
        self.gr: greenlet.greenlet | None = None
        self.value: Any = None
        self.ok = True
        self.err: BaseException | None = None
        self.sel: Any = None
        self.result: Any = None
        self.exc: BaseException | None = None
        self.joiners: list[G] | None = None
        self.home = -1
        self.blob: bytes | None = None     # pickled (fn, args, kwargs) of a shipped record
        self.pinned = False
        self.exported = False
        self.stack_hint = ""
        self.waitq: Any = None             # the wait queue it is parked in, if any

    def __repr__(self) -> str:
        return f"<goroutine {self.id} {STATUS_NAMES[self.status]} {self.reason}>"


class Hooks:
    """What the runtime plugs into the scheduler. Defaults: a lone process.

    Every method runs in the hub thread. `poll` and `turn` run on the hub
    greenlet; the others run on whatever greenlet triggered them and must not
    park.
    """

    def turn(self) -> None:
        """A hub turn: flush outboxes, read messages without blocking, serve steals."""

    def poll(self, timeout: float | None) -> bool:
        """Block until something may have become runnable, or `timeout` passed.

        Returns False when nothing can ever wake this worker (the core's
        standalone mode uses that to detect a local deadlock).
        """
        if timeout is None:
            return False
        if timeout > 0:
            time.sleep(timeout)
        return True

    def spawned(self, g: G) -> None:
        """A new record was queued (publish queue length, hand work out)."""

    def exited(self, g: G) -> None:
        """`g` finished; `g.exc` is set when it raised."""

    def idle(self) -> None:
        """Nothing is runnable: look for work elsewhere before sleeping."""

    def offload(self) -> None:
        """A stealable record is about to start here: hand some to idle workers first."""

    def start(self, g: G) -> None:
        """Called on the new goroutine's greenlet before its body runs: decode a shipped record."""


# ---------------------------------------------------------------------------
# Scheduler state (one scheduler per worker thread; reset by `init`).
# ---------------------------------------------------------------------------

_runq: deque[G] = deque()
_spawnq: deque[G] = deque()
_runnext: G | None = None
_cur: G | None = None
_hub_gr: greenlet.greenlet | None = None
_hub_thread = 0
_pool: list[greenlet.greenlet] = []
_timers: list[list[Any]] = []
_timer_seq = count()
_tick = 0
_want_hub = False
# Go's preemption request: set (from any thread) when the running goroutine
# has not switched for a while; its next channel operation yields first.
_preempt = False
PREEMPT_SETTERS: list[Callable[[int], None]] = []   # C fast paths' flags
# When the hub last took a turn (messages, flushes). Cross-worker channel
# operations yield when it is older than TURN_AGE: a goroutine that keeps
# finding its values in a prefetch cache would otherwise leave the frames
# other workers wait on unread (a hub's home answers only at its turns).
# 3 ms, not 1: W9's fan-out (jobs of 100 us) spent ~10% more time at 1 ms in
# hub turns and small messages (1.52 -> 1.34 s, median of 5 interleaved
# runs); Go's own time slice is 10 ms.
_last_turn = 0.0
TURN_AGE = 0.003
_hooks = Hooks()
_live: dict[int, G] = {}      # every goroutine of this worker not yet dead
_stopping = False
_killing = False
_ids = count(1)
_new_id: Callable[[], int] = lambda: next(_ids)

POOL_MAX = 1024
ON_INIT: list[Callable[[int], None]] = []   # called with the hub thread's ident
# Where the runtime wants the id of the running goroutine stored at every switch
# (a word of its shared-memory table: who was running when a worker died).
_running_mv: Any = [0]
_running_at = 0
# Guards runnext and spawnq against the sysmon thread, which takes records
# from a stalled hub. Never held across a switch or a call that may block.
_qlock = threading.Lock()
_qacquire = _qlock.acquire
_qrelease = _qlock.release


def init(hooks: Hooks | None = None, new_id: Callable[[], int] | None = None) -> None:
    """Reset the scheduler for a hub on the calling thread. Hub thread only."""
    global _runq, _spawnq, _runnext, _cur, _hub_gr, _hub_thread, _pool, _timers
    global _tick, _want_hub, _hooks, _live, _stopping, _new_id, _ids, _killing, _preempt
    _runq = deque()
    _spawnq = deque()
    _runnext = None
    _cur = None
    _hub_gr = greenlet.getcurrent()
    _hub_thread = get_ident()
    _pool = []
    _timers = []
    _tick = 0
    _want_hub = False
    _preempt = False
    for setter in PREEMPT_SETTERS:
        setter(0)
    _hooks = hooks or Hooks()
    _live = {}
    _stopping = False
    _killing = False
    _ids = count(1)
    _new_id = new_id or (lambda: next(_ids))
    for hook in ON_INIT:
        hook(_hub_thread)


def in_hub_thread() -> bool:
    """Whether the caller runs on the thread that owns this scheduler."""
    return _hub_gr is not None and get_ident() == _hub_thread


def current() -> G:
    """The running goroutine. Any goroutine; raises outside one."""
    g = _cur
    if g is None or get_ident() != _hub_thread:
        raise RuntimeError(
            "mpgo: this call must be made from a goroutine (inside mpgo.run); "
            "it was made outside any goroutine or from a foreign OS thread")
    return g


def current_or_none() -> G | None:
    """The running goroutine, or None outside one (or in a foreign thread)."""
    if get_ident() != _hub_thread:
        return None
    return _cur


def check_thread() -> None:
    """Raise a clear error when called from a thread that does not own this worker."""
    if get_ident() != _hub_thread or _hub_gr is None:
        raise RuntimeError(
            "mpgo: channels, locks and goroutines may only be used from goroutines; "
            "this call came from a foreign OS thread (or outside mpgo.run)")


# ---------------------------------------------------------------------------
# Goroutine life cycle
# ---------------------------------------------------------------------------

def new_g(fn: Callable[..., Any] | None, args: tuple[Any, ...],
          kwargs: dict[str, Any] | None, gid: int | None = None) -> G:
    """Make a G (not yet queued). Hub thread only."""
    g = G(_new_id() if gid is None else gid, fn, args, kwargs)
    g.since = _monotonic()          # spawn time until it first parks
    _live[g.id] = g
    return g


def spawn(g: G) -> None:
    """Queue a NEW goroutine: it becomes runnext; the previous runnext moves to
    the stealable spawnq. Hub thread only (any goroutine)."""
    global _runnext
    _qacquire()
    prev = _runnext
    _runnext = g
    if prev is not None:
        _spawnq.append(prev)
    _qrelease()
    if prev is not None:
        _hooks.spawned(g)


def spawn_back(g: G) -> None:
    """Queue a NEW goroutine at the tail of spawnq (received or returned records)."""
    with _qlock:
        _spawnq.append(g)
    _hooks.spawned(g)


def stealable() -> int:
    """How many unstarted records could be handed to another worker."""
    return len(_spawnq)


def take_stealable(n: int) -> list[G]:
    """Remove up to `n` of the oldest stealable records. Hub thread, or sysmon
    while the hub is stalled (each popleft is atomic under the GIL)."""
    out: list[G] = []
    q = _spawnq
    with _qlock:
        while q and len(out) < n:
            out.append(q.popleft())
    return out


def release_runnext() -> None:
    """Make runnext stealable (sysmon: its spawner has been computing too long)."""
    global _runnext
    with _qlock:
        g = _runnext
        if g is not None:
            _runnext = None
            _spawnq.appendleft(g)


def ready(g: G, value: Any = None) -> None:
    """Make a parked goroutine runnable with `value` as park's result.
    Hub thread only; never while g is already queued."""
    g.value = value
    g.status = RUNNABLE
    _runq.append(g)


def ready_err(g: G, err: BaseException) -> None:
    """Make a parked goroutine runnable; park raises `err` in it."""
    g.err = err
    g.status = RUNNABLE
    _runq.append(g)


def want_hub_turn() -> None:
    """Ask for a hub turn at the next park (e.g. frames are waiting to be flushed)."""
    global _want_hub
    _want_hub = True


def park(reason: str) -> Any:
    """Suspend the calling goroutine until `ready`; return the ready value.

    Any goroutine. `reason` shows in dumps and deadlock reports. If the waker
    used `ready_err`, the error is raised here.
    """
    g = _cur
    if g is None or get_ident() != _hub_thread:
        check_thread()
        raise RuntimeError("mpgo: park outside a goroutine")
    if _killing:
        raise _KilledError("mpgo: the run ended; this goroutine cannot park any more")
    if _preempt:
        _clear_preempt()            # parking is the yield the request asked for
    g.status = WAITING
    g.reason = reason
    g.since = _monotonic()
    _schedule()
    err = g.err
    if err is not None:
        g.err = None
        raise err
    return g.value


def park_unless_ready(reason: str) -> Any:
    """`park`, unless the calling goroutine was made runnable while it ran (a
    channel homed in this worker answered its demand at once): then it is
    taken back off the run queue and gets what it was readied with, without
    a switch. Any goroutine."""
    g = _cur
    if g is None or g.status != RUNNABLE:
        return park(reason)
    _runq.remove(g)
    g.status = RUNNING
    err = g.err
    if err is not None:
        g.err = None
        raise err
    return g.value


def gosched() -> None:
    """Yield to the other runnable goroutines of this worker. Any goroutine."""
    g = current()
    g.status = RUNNABLE
    _runq.append(g)
    global _want_hub
    _want_hub = True        # a yield is also the hub's chance to read messages
    _schedule()


def request_preempt() -> None:
    """Ask the running goroutine to yield at its next channel operation.

    Any thread (the worker's sysmon calls it when the hub has not ticked for
    a while). A goroutine that never touches a channel is not preempted:
    greenlets cannot be interrupted, and the sysmon reports it as a hog.
    """
    global _preempt
    _preempt = True
    for setter in PREEMPT_SETTERS:
        setter(1)


def _clear_preempt() -> None:
    global _preempt
    _preempt = False
    for setter in PREEMPT_SETTERS:
        setter(0)


def preempt_point() -> None:
    """Honour a pending preemption request: yield once. Called at the start of
    channel operations (their state is untouched yet, so a yield here is the
    same as the user calling gosched() just before)."""
    _clear_preempt()
    g = _cur
    if g is not None and g.status == RUNNING and get_ident() == _hub_thread:
        gosched()


_new_turn = False


def _pick() -> G | None:
    """The next goroutine to run: woken ones (runq) and new ones (runnext,
    spawnq) take turns when both wait, so neither can starve the other (a
    goroutine yielding in a loop must let new goroutines start)."""
    global _runnext, _new_turn
    if _runq and not (_new_turn and (_runnext is not None or _spawnq)):
        _new_turn = True
        return _runq.popleft()
    if _runnext is None and not _spawnq:
        return None
    if _runnext is None:
        # About to start a stealable record here for good (a started goroutine
        # never moves): first let the runtime hand records to idle workers.
        _hooks.offload()
    with _qlock:
        _new_turn = False
        g = _runnext
        if g is not None:
            _runnext = None
            return g
        if _spawnq:
            return _spawnq.popleft()
    return _runq.popleft() if _runq else None


def _schedule() -> None:
    """Switch away from the current (parked or yielding) goroutine.

    Runs on the caller's greenlet; returns when that goroutine is switched back.
    """
    global _tick, _want_hub, _cur, _new_turn
    _tick += 1
    if not _want_hub and _tick % HUB_EVERY:
        # inlined _pick/_run for the common case: a woken goroutine, started
        g: G | None
        if _runq and not (_new_turn and (_runnext is not None or _spawnq)):
            _new_turn = True
            g = _runq.popleft()
        else:
            g = _pick()
        if g is not None:
            gr = g.gr
            if gr is not None:
                _cur = g
                g.status = RUNNING
                _running_mv[_running_at] = g.id
                gr.switch()
            else:
                _run(g)
            return
    _want_hub = False
    _cur = None
    _hub_gr.switch()  # type: ignore[union-attr]


def _run(g: G) -> None:
    """Switch to g (started or new). Caller's greenlet is suspended meanwhile."""
    global _cur
    _cur = g
    g.status = RUNNING
    _running_mv[_running_at] = g.id
    gr = g.gr
    if gr is not None:
        gr.switch()
        return
    gr = _pool.pop() if _pool else greenlet.greenlet(_trampoline, _hub_gr)
    g.gr = gr
    gr.switch(g)


def _trampoline(g: G) -> None:
    """Body of every pooled greenlet: run goroutines one after another."""
    global _cur, _tick
    while True:
        _body(g)
        # This greenlet is free. If the next runnable is unstarted, run it
        # here without any switch; otherwise return to the pool.
        _tick += 1
        nxt: G | None = None
        if not _want_hub and _tick % HUB_EVERY:
            nxt = _pick()
        me = greenlet.getcurrent()
        if nxt is not None and nxt.gr is None:
            nxt.gr = me
            _cur = nxt
            nxt.status = RUNNING
            _running_mv[_running_at] = nxt.id
            g = nxt
            continue
        if len(_pool) < POOL_MAX:
            _pool.append(me)
        else:
            me.gr_context = None
        if nxt is not None:
            _cur = nxt
            nxt.status = RUNNING
            _running_mv[_running_at] = nxt.id
            g = nxt.gr.switch()  # type: ignore[union-attr]
        else:
            _cur = None
            g = _hub_gr.switch()  # type: ignore[union-attr]
        if g is None:            # pool shrink / shutdown: leave
            return


def _body(g: G) -> None:
    try:
        _hooks.start(g)
        fn = g.fn
        if g.kwargs:
            g.result = fn(*g.args, **g.kwargs)  # type: ignore[misc]
        else:
            g.result = fn(*g.args)  # type: ignore[misc]
    except greenlet.GreenletExit:
        g.exc = None
    except BaseException as e:  # noqa: BLE001 - every escape is reported (F4)
        g.exc = e
    g.status = DEAD
    g.fn = None
    g.args = ()
    g.kwargs = None
    g.gr = None
    _live.pop(g.id, None)
    js = g.joiners
    if js:
        g.joiners = None
        for j in js:
            ready(j, g)
    _hooks.exited(g)


# ---------------------------------------------------------------------------
# Timers
# ---------------------------------------------------------------------------

class Timer:
    """A one-shot callback at a deadline, run on the hub. Cancel with `cancel()`."""

    __slots__ = ("entry",)

    def __init__(self, entry: list[Any]) -> None:
        self.entry = entry

    def cancel(self) -> bool:
        """Stop the timer; True if it had not fired yet."""
        e = self.entry
        if e[2] is None:
            return False
        e[2] = None
        e[3] = ()
        return True

    @property
    def active(self) -> bool:
        return self.entry[2] is not None


def add_timer(delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
    """Run `fn(*args)` on the hub after `delay` seconds. Hub thread only.

    `fn` must not park; it usually readies a goroutine or sends on a channel.
    """
    entry = [_monotonic() + max(delay, 0.0), next(_timer_seq), fn, args]
    heapq.heappush(_timers, entry)
    return Timer(entry)


def pending_timers() -> int:
    """Live (not cancelled) timers; cancelled ones are purged lazily."""
    while _timers and _timers[0][2] is None:
        heapq.heappop(_timers)
    return sum(1 for e in _timers if e[2] is not None)


def _run_timers() -> float | None:
    """Fire due timers; return seconds until the next one (None: no timers)."""
    ts = _timers
    now = _monotonic()
    while ts:
        e = ts[0]
        if e[2] is None:
            heapq.heappop(ts)
            continue
        if e[0] > now:
            return e[0] - now
        heapq.heappop(ts)
        fn, args = e[2], e[3]
        e[2] = None
        e[3] = ()
        fn(*args)
    return None


def _wake_sleeper(g: G) -> None:
    if g.status == WAITING:
        ready(g)


def sleep(seconds: float) -> None:
    """Park the calling goroutine for `seconds`. Any goroutine."""
    if seconds <= 0:
        gosched()
        return
    g = current()
    t = add_timer(seconds, _wake_sleeper, g)
    try:
        park("sleep")
    finally:
        t.cancel()      # interrupted: the timer must not wake a later park


# ---------------------------------------------------------------------------
# The hub
# ---------------------------------------------------------------------------

def has_runnable() -> bool:
    return bool(_runq) or _runnext is not None or bool(_spawnq)


def tick_count() -> int:
    return _tick


def stop() -> None:
    """Make `hub_loop` return at its next iteration. Hub thread only."""
    global _stopping
    _stopping = True


def hub_loop(until: Callable[[], bool] | None = None) -> None:
    """Run the hub until `stop()` (or `until()` is true). Hub thread, hub greenlet.

    Steps, in order, each iteration:
      1. run one runnable goroutine (it may chain directly to others);
      2. the runtime's turn (messages, flushes, steal requests);
      3. fire due timers;
      4. if nothing is runnable: let the runtime look for work, then poll.
    """
    global _cur, _want_hub, _last_turn
    hooks = _hooks
    while not _stopping:
        if until is not None and until():
            return
        g = _pick()
        if g is not None:
            _run(g)
            _cur = None
        hooks.turn()
        _want_hub = False
        _last_turn = _monotonic()
        timeout = _run_timers() if _timers else None
        if has_runnable() or _stopping:
            continue
        hooks.idle()
        if has_runnable() or _stopping:
            continue
        if until is not None and until():
            return
        if not hooks.poll(timeout):
            raise _LocalDeadlock()


class _LocalDeadlock(Exception):
    pass


def live_goroutines() -> list[G]:
    """Every goroutine of this worker not yet finished (for dumps). Hub thread or sysmon."""
    return list(_live.values())


def kill_all() -> None:
    """Drop every goroutine (end of a run on a reused worker). Hub thread, hub greenlet.

    Parked goroutines get GreenletExit thrown in, so their `finally` blocks
    run; a goroutine that tries to park while being killed gets an error.
    """
    global _runnext, _cur, _killing
    _killing = True
    _runq.clear()
    _spawnq.clear()
    _runnext = None
    _timers.clear()
    for g in list(_live.values()):
        gr = g.gr
        _live.pop(g.id, None)
        g.status = DEAD
        if gr is not None and not gr.dead:
            try:
                _cur = g
                gr.throw(greenlet.GreenletExit)
            except BaseException:  # noqa: BLE001 - the run is over; nothing to report to
                pass
            _cur = None
    _pool.clear()
    _live.clear()
    _killing = False


class _KilledError(BaseException):
    """Raised in a goroutine that parks while the run is being torn down."""


# ---------------------------------------------------------------------------
# Standalone mode: one scheduler in this thread, no processes (unit tests).
# ---------------------------------------------------------------------------

class _LocalHooks(Hooks):
    def __init__(self) -> None:
        self.main: G | None = None
        self.failure: tuple[G, BaseException] | None = None

    def exited(self, g: G) -> None:
        if g is not self.main and g.exc is not None and self.failure is None:
            self.failure = (g, g.exc)
            stop()


def run_local(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn` as the main goroutine of a scheduler in this thread; no processes.

    For unit tests of the core. Raises `Deadlock` when every goroutine is
    parked with no timer pending, and `GoroutineError` when another goroutine
    raised.
    """
    if _hub_gr is not None and get_ident() == _hub_thread and _cur is not None:
        raise RuntimeError("run_local cannot be nested inside a goroutine")
    hooks = _LocalHooks()
    init(hooks)
    main = new_g(fn, args, kwargs)
    hooks.main = main
    spawn(main)
    try:
        hub_loop(until=lambda: main.status == DEAD or hooks.failure is not None)
    except _LocalDeadlock:
        raise Deadlock("all goroutines are asleep - deadlock!") from None
    finally:
        kill_all()
    if hooks.failure is not None:
        g, exc = hooks.failure
        raise GoroutineError(f"goroutine {g.id} raised {type(exc).__name__}: {exc}",
                             goroutine=g.id) from exc
    if main.exc is not None:
        raise main.exc
    if main.status != DEAD:
        raise InternalError("hub stopped before main finished")
    return main.result
