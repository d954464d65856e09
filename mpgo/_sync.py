"""Mutex, RWMutex, WaitGroup, Once, AtomicInt: shared memory across workers.

Strategy (docs/design.md §7)
----------------------------
Each object is a 64-byte slot of the arena (`_arena`), so one made at import
time is the same object in every worker, and one made in a goroutine pickles
as its slot offset. Uncontended operations are atomics on the slot with no
message at all (the Mutex and AtomicInt fast paths are C: `_speedups`). A
goroutine that must wait registers with the supervisor's queue for the slot
(`_runtime/_locks.py`) and parks; only that goroutine waits.

Word layouts (S_STATE of the slot):

* Mutex: ``LOCKED | WOKEN | STARVING | POISONED | owner<<8 | waiters<<32``,
  owner = worker id + 1 (``HANDOFF`` while the supervisor hands it over).
* RWMutex: ``WRITER | POISONED | readers<<8 | waiting writers<<32 |
  waiting readers<<48``.
* WaitGroup: ``counter<<32 | waiters`` (Go's layout).
* Once: ``RUNNING | DONE | waiters<<8``.

Mutex fairness is Go's: in normal mode a woken waiter competes with newcomers
(who may spin ~20 µs while the owner is another worker); a waiter that waited
more than 1 ms sets ``STARVING`` and from then on unlock hands the lock to the
head of the FIFO directly.

Who may call: every blocking operation from a goroutine only (a foreign
thread or code outside `mpgo.run` gets `RuntimeError`); `AtomicInt` from
anywhere (it is plain atomics).
"""

from __future__ import annotations

import time
from typing import Any

from ._core import _sched
from ._errors import LockPoisoned
from ._runtime import _worker
from ._runtime._worker import current_worker
from ._transport import _arena, _wire
from ._transport._atomic import IMPLEMENTATION, add, cas, load, store
from ._transport._link import SUPERVISOR

# slot tags (S_TAG)
TAG_MUTEX, TAG_RWMUTEX, TAG_WAITGROUP, TAG_ONCE, TAG_ATOMIC = 1, 2, 3, 4, 5

# Mutex word
LOCKED, WOKEN, STARVING, POISONED = 1, 2, 4, 8
OWNER_SHIFT = 8
OWNER_MASK = 0xFFFF << OWNER_SHIFT
HANDOFF = 0xFFFF << OWNER_SHIFT
WAITER = 1 << 32
SPIN = 20e-6               # how long a locker spins while another worker owns it
STARVE = 1e-3              # Go's starvationThresholdNs

# RWMutex word
WRITER = 1
RW_POISONED = 2
READER = 1 << 8
READERS_MASK = 0xFFFFFF << 8
WWAIT = 1 << 32
WWAIT_MASK = 0xFFFF << 32
RWAIT = 1 << 48
RWAIT_MASK = 0x7FFF << 48

# Once word
ONCE_RUNNING, ONCE_DONE = 1, 2
ONCE_WAITER = 1 << 8

# wait kinds and supervisor answers (LK_WAIT kind / LK_GRANT code)
K_MUTEX, K_RLOCK, K_WLOCK, K_WG, K_ONCE = 1, 2, 3, 4, 5
GRANTED, RETRY, CANCELLED, POISON = 1, 2, 3, 4
# LK_WAKE modes
M_WAKE, M_HANDOFF, M_WUNLOCK, M_LASTREADER, M_RELEASE = 1, 2, 3, 4, 5

S_STATE = _arena.S_STATE
S_AUX = _arena.S_AUX

_monotonic = time.monotonic


def _me() -> int:
    return current_worker().wid + 1


def _poison_error(off: int, what: str) -> LockPoisoned:
    info = load(off + S_AUX)
    wid = (info & 0xFFFF) - 1
    pid = info >> 16
    return LockPoisoned(
        f"mpgo: {what} is poisoned: worker {wid} (pid {pid}) died while holding it; "
        f"the data it protects may be inconsistent (call clear_poison() to use it again)",
        worker=wid, pid=pid)


def _wait(off: int, kind: int, lifo: bool, deadline: float | None, reason: str) -> Any:
    """Register at the supervisor's queue for `off` and park until answered.

    On timeout the supervisor is asked to cancel; whatever it answers (it
    answers exactly once) is the result: CANCELLED, or GRANTED/RETRY if the
    hand-over raced the timeout.
    """
    w = current_worker()
    g = _sched.current()
    t = w.ticket(g)
    w.send(SUPERVISOR, [_wire.LK_WAIT, off, kind, t, lifo, g.id])
    timer = None
    if deadline is not None:
        timer = _sched.add_timer(max(0.0, deadline - _monotonic()), _cancel, w, off, t)
    try:
        return _sched.park(reason)
    finally:
        if timer is not None:
            timer.cancel()


def _cancel(w: Any, off: int, t: int) -> None:
    w.send(SUPERVISOR, [_wire.LK_CANCEL, off, t])


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    timeout = float(timeout)
    if timeout != timeout:
        raise ValueError("timeout must be a number, not NaN")
    return _monotonic() + max(0.0, timeout)


# ---------------------------------------------------------------------------
# Fast-path bases: C when compiled, else the same logic in Python.
# ---------------------------------------------------------------------------

try:
    if IMPLEMENTATION != "c":
        raise ImportError("pure-Python atomics selected")
    from . import _speedups as _sp  # type: ignore[attr-defined]
    _MutexBase: Any = _sp.MutexBase
    _AtomicBase: Any = _sp.AtomicBase
    _set_hub: Any = _sp.set_hub
except ImportError:
    _sp = None
    _OWNER = 0

    def _set_hub(ident: int, wid: int) -> None:
        global _OWNER
        _OWNER = (wid + 1) << OWNER_SHIFT if ident else 0

    class _MutexBase:  # type: ignore[no-redef]
        __slots__ = ("_off",)

        def __init__(self, off: int) -> None:
            self._off = off

        def lock(self, timeout: float | None = None) -> bool:
            if timeout is None and _OWNER and _sched.in_hub_thread() \
                    and cas(self._off, 0, LOCKED | _OWNER):
                return True
            return self._lock_slow(timeout)  # type: ignore[attr-defined]

        def try_lock(self) -> bool:
            if _OWNER and _sched.in_hub_thread() and cas(self._off, 0, LOCKED | _OWNER):
                return True
            return self._try_lock_slow()  # type: ignore[attr-defined]

        def unlock(self) -> None:
            if _OWNER and _sched.in_hub_thread():
                s = load(self._off)
                if s & ~OWNER_MASK == LOCKED and cas(self._off, s, 0):
                    return
            self._unlock_slow()  # type: ignore[attr-defined]

        def __enter__(self) -> bool:
            return self.lock()

        def __exit__(self, *exc: object) -> None:
            self.unlock()

    class _AtomicBase:  # type: ignore[no-redef]
        __slots__ = ("_off",)

        def __init__(self, off: int) -> None:
            self._off = off

        def load(self) -> int:
            return load(self._off)

        def store(self, v: int) -> None:
            store(self._off, v)

        def add(self, delta: int) -> int:
            return add(self._off, delta)

        def swap(self, v: int) -> int:
            from ._transport._atomic import swap
            return swap(self._off, v)

        def cas(self, old: int, new: int) -> bool:
            return cas(self._off, old, new)


@_worker.handler(_wire.LK_GRANT)
def _h_grant(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    g = w.tickets.pop(f[1], None)
    if g is not None:
        _sched.ready(g, f[2])


def _on_worker_start(w: Any) -> None:
    from threading import get_ident
    _set_hub(get_ident(), w.wid)


_worker.ON_WORKER_START.append(_on_worker_start)


# ---------------------------------------------------------------------------
# Mutex
# ---------------------------------------------------------------------------

class Mutex(_MutexBase):
    """A mutual exclusion lock shared by every worker (Go's sync.Mutex).

    ``lock(timeout=None) -> bool``, ``unlock()``, ``try_lock() -> bool`` and
    ``with mu:``. Not reentrant; any goroutine may unlock a locked mutex (as in
    Go). Unlock of an unlocked mutex raises `RuntimeError`. A mutex whose owner's
    worker died raises `LockPoisoned` on the next lock.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_arena.alloc_slot(TAG_MUTEX))

    def __reduce__(self) -> Any:
        return (_from_slot, (Mutex, self._off))

    def __repr__(self) -> str:
        s = load(self._off)
        state = "locked" if s & LOCKED else "unlocked"
        if s & POISONED:
            state = "poisoned"
        return f"<mpgo.Mutex {state} waiters={s >> 32}>"

    def locked(self) -> bool:
        """Whether it is locked now (a snapshot; for diagnostics and tests)."""
        return bool(load(self._off) & LOCKED)

    def clear_poison(self) -> None:
        """Make a poisoned mutex usable again (unlocked), after repairing its data."""
        off = self._off
        while True:
            s = load(off)
            if not s & POISONED:
                return
            if cas(off, s, s & ~(POISONED | LOCKED | OWNER_MASK | STARVING | WOKEN)):
                store(off + S_AUX, 0)
                return

    def _try_lock_slow(self) -> bool:
        w = current_worker()
        off = self._off
        me = (w.wid + 1) << OWNER_SHIFT
        s = load(off)
        if s & POISONED:
            raise _poison_error(off, "this Mutex")
        return not s & (LOCKED | STARVING) and cas(off, s, (s & ~OWNER_MASK) | LOCKED | me)

    def _lock_slow(self, timeout: float | None = None) -> bool:
        w = current_worker()
        off = self._off
        me = (w.wid + 1) << OWNER_SHIFT
        deadline = _deadline(timeout)
        start = _monotonic()
        spin_until = start + SPIN
        awoke = False
        spins = 0
        while True:
            s = load(off)
            if s & POISONED:
                if awoke:
                    self._drop_woken()
                raise _poison_error(off, "this Mutex")
            if not s & (LOCKED | STARVING):
                new = (s & ~OWNER_MASK) | LOCKED | me
                if awoke:
                    new &= ~WOKEN
                if cas(off, s, new):
                    return True
                continue
            # Spin while another worker owns it (it may release any moment);
            # never when this worker owns it: the owner cannot run while we spin.
            if (s & OWNER_MASK) not in (me, HANDOFF) and not s & STARVING:
                spins += 1
                if spins & 15 or _monotonic() < spin_until:
                    continue
            if deadline is not None and _monotonic() >= deadline:
                if awoke:
                    self._drop_woken()
                return False
            new = s + WAITER
            if awoke:
                new &= ~WOKEN
            if awoke and _monotonic() - start > STARVE and s & LOCKED:
                new |= STARVING
            if not cas(off, s, new):
                continue
            code = _wait(off, K_MUTEX, awoke, deadline, "mutex")
            if code == GRANTED:
                return True
            if code == CANCELLED:
                return False
            if code == POISON:
                raise _poison_error(off, "this Mutex")
            awoke = True          # RETRY: woken in normal mode, compete again
            spins = 0
            spin_until = _monotonic() + SPIN

    def _drop_woken(self) -> None:
        """A woken waiter that gives up: clear WOKEN and pass the wake on."""
        off = self._off
        while True:
            s = load(off)
            new = s & ~WOKEN
            wake = (s >> 32) > 0 and not s & LOCKED
            if wake:
                new |= WOKEN
            if cas(off, s, new):
                if wake:
                    current_worker().send(SUPERVISOR, [_wire.LK_WAKE, off, K_MUTEX, M_WAKE])
                return

    def _unlock_slow(self) -> None:
        w = current_worker()
        off = self._off
        while True:
            s = load(off)
            if not s & LOCKED:
                raise RuntimeError("sync: unlock of unlocked mutex")
            if s & POISONED:
                raise _poison_error(off, "this Mutex")
            waiters = s >> 32
            if s & STARVING and waiters:
                # Hand the lock to the FIFO head: it stays locked meanwhile.
                if cas(off, s, (s & ~OWNER_MASK) | HANDOFF):
                    w.send(SUPERVISOR, [_wire.LK_WAKE, off, K_MUTEX, M_HANDOFF])
                    return
                continue
            new = s & ~(LOCKED | OWNER_MASK | STARVING)
            if not waiters or s & WOKEN:
                if cas(off, s, new):
                    return
                continue
            if cas(off, s, new | WOKEN):
                w.send(SUPERVISOR, [_wire.LK_WAKE, off, K_MUTEX, M_WAKE])
                return


# ---------------------------------------------------------------------------
# RWMutex
# ---------------------------------------------------------------------------

class RWMutex:
    """A reader/writer lock shared by every worker (Go's sync.RWMutex).

    Many readers or one writer; a waiting writer blocks new readers. The
    supervisor hands the lock over when waiters exist. ``rlocker()``-style
    context managers: ``with rw.reader():`` / ``with rw.writer():``.
    """

    __slots__ = ("_off",)

    def __init__(self) -> None:
        self._off = _arena.alloc_slot(TAG_RWMUTEX)

    def __reduce__(self) -> Any:
        return (_from_slot, (RWMutex, self._off))

    def _check(self, s: int) -> None:
        if s & RW_POISONED:
            raise _poison_error(self._off, "this RWMutex")

    def rlock(self) -> None:
        """Acquire for reading; parks while a writer holds or waits for it."""
        current_worker()
        off = self._off
        while True:
            s = load(off)
            self._check(s)
            if not s & WRITER and not s & WWAIT_MASK:
                if cas(off, s, s + READER):
                    return
                continue
            if cas(off, s, s + RWAIT):
                break
        if _wait(off, K_RLOCK, False, None, "rwmutex (read)") == POISON:
            raise _poison_error(off, "this RWMutex")

    def runlock(self) -> None:
        """Release a read lock. RuntimeError if no reader holds it."""
        w = current_worker()
        off = self._off
        while True:
            s = load(off)
            if not s & READERS_MASK:
                raise RuntimeError("sync: RUnlock of unlocked RWMutex")
            new = s - READER
            if cas(off, s, new):
                if not new & READERS_MASK and new & WWAIT_MASK and not new & WRITER:
                    w.send(SUPERVISOR, [_wire.LK_WAKE, off, K_WLOCK, M_LASTREADER])
                return

    def lock(self) -> None:
        """Acquire for writing: parks until no reader and no writer holds it."""
        w = current_worker()
        off = self._off
        while True:
            s = load(off)
            self._check(s)
            if not s & (WRITER | READERS_MASK | WWAIT_MASK | RWAIT_MASK):
                if cas(off, s, s | WRITER):
                    store(off + S_AUX, w.wid + 1)
                    return
                continue
            if cas(off, s, s + WWAIT):
                break
        if _wait(off, K_WLOCK, False, None, "rwmutex (write)") == POISON:
            raise _poison_error(off, "this RWMutex")
        store(off + S_AUX, w.wid + 1)

    def unlock(self) -> None:
        """Release the write lock. RuntimeError if it is not write-locked."""
        w = current_worker()
        off = self._off
        while True:
            s = load(off)
            if not s & WRITER:
                raise RuntimeError("sync: Unlock of unlocked RWMutex")
            if s & (RWAIT_MASK | WWAIT_MASK):
                # The supervisor moves the lock to the waiters (readers first).
                w.send(SUPERVISOR, [_wire.LK_WAKE, off, K_WLOCK, M_WUNLOCK])
                return
            if cas(off, s, s & ~WRITER):
                return

    class _Ctx:
        __slots__ = ("enter", "exit")

        def __init__(self, enter: Any, exit_: Any) -> None:
            self.enter = enter
            self.exit = exit_

        def __enter__(self) -> None:
            self.enter()

        def __exit__(self, *exc: object) -> None:
            self.exit()

    def reader(self) -> RWMutex._Ctx:
        """``with rw.reader():`` holds a read lock."""
        return RWMutex._Ctx(self.rlock, self.runlock)

    def writer(self) -> RWMutex._Ctx:
        """``with rw.writer():`` holds the write lock."""
        return RWMutex._Ctx(self.lock, self.unlock)

    __enter__ = lock

    def __exit__(self, *exc: object) -> None:
        self.unlock()


# ---------------------------------------------------------------------------
# WaitGroup
# ---------------------------------------------------------------------------

class WaitGroup:
    """Go's sync.WaitGroup across workers: ``add(n=1)``, ``done()``, ``wait(timeout=None)``.

    A negative counter raises `ValueError` (and leaves the counter as it was).
    `wait` returns True when the counter reached zero, False on timeout; it
    never returns early.
    """

    __slots__ = ("_off",)

    def __init__(self) -> None:
        self._off = _arena.alloc_slot(TAG_WAITGROUP)

    def __reduce__(self) -> Any:
        return (_from_slot, (WaitGroup, self._off))

    def add(self, n: int = 1) -> None:
        """Add n (may be negative) to the counter; at zero, release every waiter."""
        if type(n) is not int:
            raise TypeError(f"WaitGroup.add takes an int, not {type(n).__name__}")
        off = self._off
        s = add(off, n << 32)
        v = s >> 32
        waiters = s & 0xFFFFFFFF
        if v < 0:
            add(off, -(n << 32))
            raise ValueError("sync: negative WaitGroup counter")
        if v > 0 or waiters == 0:
            return
        # Counter hit zero with waiters: reset, release them all (Go's Add).
        if cas(off, s, 0):
            current_worker().send(SUPERVISOR, [_wire.LK_WAKE, off, K_WG, waiters])

    def done(self) -> None:
        """add(-1)."""
        self.add(-1)

    def wait(self, timeout: float | None = None) -> bool:
        """Park until the counter is zero; False after `timeout` seconds."""
        current_worker()
        off = self._off
        deadline = _deadline(timeout)
        while True:
            s = load(off)
            if s >> 32 == 0:
                return True
            if deadline is not None and _monotonic() >= deadline:
                return False
            if cas(off, s, s + 1):
                break
        r = _wait(off, K_WG, False, deadline, "semacquire")
        return r != CANCELLED

    @property
    def counter(self) -> int:
        """The counter now (a snapshot)."""
        return load(self._off) >> 32


# ---------------------------------------------------------------------------
# Once
# ---------------------------------------------------------------------------

class Once:
    """``do(fn)`` runs fn once in the whole run, whichever worker calls first;
    the others wait until it has finished. If fn raises, the exception reaches
    its caller and the Once still counts as done (as in Go)."""

    __slots__ = ("_off",)

    def __init__(self) -> None:
        self._off = _arena.alloc_slot(TAG_ONCE)

    def __reduce__(self) -> Any:
        return (_from_slot, (Once, self._off))

    def do(self, fn: Any) -> None:
        off = self._off
        while True:
            s = load(off)
            if s & ONCE_DONE:
                return
            current_worker()
            if s == 0:
                if cas(off, 0, ONCE_RUNNING):
                    break
                continue
            if cas(off, s, s + ONCE_WAITER):      # running elsewhere: wait for it
                _wait(off, K_ONCE, False, None, "sync.Once")
                return
        try:
            fn()
        finally:
            while True:
                s = load(off)
                if cas(off, s, ONCE_DONE):
                    break
            waiters = s >> 8
            if waiters:
                current_worker().send(SUPERVISOR, [_wire.LK_WAKE, off, K_ONCE, waiters])

    def done(self) -> bool:
        """Whether fn has finished running."""
        return bool(load(self._off) & ONCE_DONE)


# ---------------------------------------------------------------------------
# AtomicInt
# ---------------------------------------------------------------------------

class AtomicInt(_AtomicBase):
    """A 64-bit signed integer in shared memory: ``load()``, ``store(v)``,
    ``add(delta) -> new value``, ``cas(old, new) -> bool``, ``swap(v) -> old``.

    Every operation is one atomic instruction on the arena (no message), usable
    from any worker, thread or the supervisor. Values wrap at 64 bits like Go's
    atomic.AddInt64.
    """

    __slots__ = ()

    def __init__(self, value: int = 0) -> None:
        super().__init__(_arena.alloc_slot(TAG_ATOMIC))
        if value:
            self.store(value)

    def __reduce__(self) -> Any:
        return (_from_slot, (AtomicInt, self._off))

    def __repr__(self) -> str:
        return f"<mpgo.AtomicInt {self.load()}>"

    def __int__(self) -> int:
        return int(self.load())


def _from_slot(cls: Any, off: int) -> Any:
    obj = cls.__new__(cls)
    if cls in (Mutex, AtomicInt):
        _MutexBase.__init__(obj, off) if cls is Mutex else _AtomicBase.__init__(obj, off)
    else:
        obj._off = off
    return obj


__all__ = ["Mutex", "RWMutex", "WaitGroup", "Once", "AtomicInt", "GRANTED", "RETRY",
           "CANCELLED", "POISON"]
