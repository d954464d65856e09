"""Wait queues of contended sync objects, in the supervisor (docs/design.md §7).

Strategy
--------
Uncontended operations never reach this module. A goroutine that must wait
first registers itself in the slot's word (an atomic add), then sends
``LK_WAIT``; whoever releases sees the registration in the word and sends
``LK_WAKE``. The two frames come from different workers, so either may arrive
first: a wake that finds no queued waiter is *owed* to the next one.

The supervisor keeps one FIFO per slot (two for an RWMutex) and answers every
waiter exactly once with ``LK_GRANT`` (GRANTED: the lock is yours; RETRY:
compete again; CANCELLED: your timeout won; POISON: the owner died). When it
hands a lock over it changes the slot's word itself, with a CAS loop.

Who may call: the supervisor's loop only.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from .. import _sync as S
from .._transport import _arena, _wire
from .._transport._atomic import add, cas, load, store
from ._supervisor import ON_RUN_START, ON_WORKER_DEATH, Supervisor, sup_handler


class _Waiter:
    __slots__ = ("w", "ticket", "gid", "since", "abandoned")

    def __init__(self, w: int, ticket: int, gid: int) -> None:
        self.w = w
        self.ticket = ticket
        self.gid = gid
        self.since = time.monotonic()
        self.abandoned = False


class _Slot:
    __slots__ = ("q", "wq", "owed", "owed_w")

    def __init__(self) -> None:
        self.q: deque[_Waiter] = deque()      # mutex / wg / once / RW readers
        self.wq: deque[_Waiter] = deque()     # RW writers
        self.owed: list[int] = []             # wakes/hand-offs that came before a waiter
        self.owed_w = 0                       # RW: writer grants owed


class Locks:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.slots: dict[int, _Slot] = {}

    def slot(self, off: int) -> _Slot:
        st = self.slots.get(off)
        if st is None:
            st = self.slots[off] = _Slot()
        return st

    def answer(self, wt: _Waiter, code: int, info: int = 0) -> None:
        if not wt.abandoned:
            self.sup.send(wt.w, [_wire.LK_GRANT, wt.ticket, code, info])

    # -- mutex -------------------------------------------------------------------

    def _mutex_serve(self, off: int, st: _Slot, wt: _Waiter, mode: int) -> None:
        if mode == S.M_WAKE:
            add(off, -S.WAITER)
            self.answer(wt, S.RETRY)
            return
        # hand-off: the lock stays LOCKED; it changes owner to the waiter
        now = time.monotonic()
        while True:
            s = load(off)
            new = ((s - S.WAITER) & ~S.OWNER_MASK) | ((wt.w + 1) << S.OWNER_SHIFT) | S.LOCKED
            if not st.q or now - wt.since < S.STARVE:
                new &= ~S.STARVING
            if cas(off, s, new):
                break
        self.answer(wt, S.GRANTED)

    # -- rwmutex -----------------------------------------------------------------

    def _rw_unlock(self, off: int, st: _Slot) -> None:
        """The writer releases with waiters: readers first, else the next writer."""
        while True:
            s = load(off)
            nr = (s & S.RWAIT_MASK) >> 48
            if nr:
                new = (s & ~S.WRITER & ~S.RWAIT_MASK) + nr * S.READER
                if cas(off, s, new):
                    store(off + S.S_AUX, 0)
                    self._grant_readers(st, nr)
                    return
                continue
            if s & S.WWAIT_MASK:
                if cas(off, s, s - S.WWAIT):          # WRITER stays: it moves on
                    self._grant_writer(st)
                    return
                continue
            if cas(off, s, s & ~S.WRITER):
                return

    def _rw_last_reader(self, off: int, st: _Slot) -> None:
        while True:
            s = load(off)
            if s & S.READERS_MASK or s & S.WRITER or not s & S.WWAIT_MASK:
                return
            if cas(off, s, (s - S.WWAIT) | S.WRITER):
                self._grant_writer(st)
                return

    def _grant_readers(self, st: _Slot, n: int) -> None:
        while n and st.q:
            self.answer(st.q.popleft(), S.GRANTED)
            n -= 1
        if n:
            st.owed.append(n)

    def _grant_writer(self, st: _Slot) -> None:
        if st.wq:
            self.answer(st.wq.popleft(), S.GRANTED)
        else:
            st.owed_w += 1

    # -- frames --------------------------------------------------------------------

    def wait(self, src: int, off: int, kind: int, ticket: int, lifo: bool, gid: int) -> None:
        st = self.slot(off)
        wt = _Waiter(src, ticket, gid)
        if kind == S.K_MUTEX:
            if st.owed:
                self._mutex_serve(off, st, wt, st.owed.pop(0))
            elif lifo:
                st.q.appendleft(wt)
            else:
                st.q.append(wt)
        elif kind == S.K_WLOCK:
            if st.owed_w:
                st.owed_w -= 1
                self.answer(wt, S.GRANTED)
            else:
                st.wq.append(wt)
        else:                                  # K_RLOCK, K_WG, K_ONCE: counted releases
            if st.owed:
                st.owed[0] -= 1
                if not st.owed[0]:
                    st.owed.pop(0)
                self.answer(wt, S.GRANTED if kind == S.K_RLOCK else S.RETRY)
            else:
                st.q.append(wt)

    def wake(self, off: int, kind: int, arg: int) -> None:
        st = self.slot(off)
        if kind == S.K_MUTEX:
            q = st.q
            while q and q[0].abandoned:
                q.popleft()
            if q:
                self._mutex_serve(off, st, q.popleft(), arg)
            else:
                st.owed.append(arg)
        elif kind == S.K_WLOCK:
            if arg == S.M_WUNLOCK:
                self._rw_unlock(off, st)
            else:
                self._rw_last_reader(off, st)
        else:                                  # WG / Once: release `arg` waiters
            n = arg
            while n and st.q:
                self.answer(st.q.popleft(), S.RETRY)
                n -= 1
            if n:
                st.owed.append(n)

    def cancel(self, src: int, off: int, ticket: int) -> None:
        st = self.slots.get(off)
        if st is None:
            return
        tag = load(off + _arena.S_TAG)
        for q in (st.q, st.wq):
            for wt in q:
                if wt.w == src and wt.ticket == ticket and not wt.abandoned:
                    if tag == S.TAG_MUTEX:
                        q.remove(wt)
                        add(off, -S.WAITER)
                    else:
                        # WaitGroup/Once: its registration is counted in the word
                        # until the release; the release skips it (no early wake).
                        wt.abandoned = True
                    self.sup.send(src, [_wire.LK_GRANT, ticket, S.CANCELLED, 0])
                    return
        # not queued: a grant or wake is already on its way; that is the answer

    # -- failures ------------------------------------------------------------------

    def worker_died(self, dead: int, pid: int) -> None:
        info = (dead + 1) | (pid << 16)
        for off in _arena.slot_offsets(S.TAG_MUTEX):
            while True:
                s = load(off)
                owner = (s & S.OWNER_MASK) >> S.OWNER_SHIFT
                if not s & S.LOCKED or owner != dead + 1:
                    break
                if cas(off, s, s | S.POISONED):
                    store(off + S.S_AUX, info)
                    break
        for off in _arena.slot_offsets(S.TAG_RWMUTEX):
            s = load(off)
            if s & S.WRITER and load(off + S.S_AUX) == dead + 1:
                while not cas(off, s, s | S.RW_POISONED):
                    s = load(off)
                store(off + S.S_AUX, info)
        for off, st in self.slots.items():
            poisoned = bool(load(off) & (S.POISONED if load(off + _arena.S_TAG) == S.TAG_MUTEX
                                         else S.RW_POISONED))
            for q in (st.q, st.wq):
                for wt in list(q):
                    if wt.w == dead:
                        q.remove(wt)
                    elif poisoned:
                        q.remove(wt)
                        self.answer(wt, S.POISON, info)


def _locks(sup: Supervisor) -> Locks:
    lk = sup.state.get("locks")
    if lk is None:
        lk = sup.state["locks"] = Locks(sup)
    return lk


def _on_run_start(sup: Supervisor) -> None:
    sup.state["locks"] = Locks(sup)


def _on_worker_death(sup: Supervisor, w: int) -> None:
    _locks(sup).worker_died(w, sup.pids[w] or 0)


ON_RUN_START.append(_on_run_start)
ON_WORKER_DEATH.insert(0, _on_worker_death)


@sup_handler(_wire.LK_WAIT)
def _h_wait(sup: Supervisor, src: int, f: list[Any]) -> None:
    _locks(sup).wait(src, f[1], f[2], f[3], f[4], f[5])


@sup_handler(_wire.LK_WAKE)
def _h_wake(sup: Supervisor, src: int, f: list[Any]) -> None:
    _locks(sup).wake(f[1], f[2], f[3])


@sup_handler(_wire.LK_CANCEL)
def _h_cancel(sup: Supervisor, src: int, f: list[Any]) -> None:
    _locks(sup).cancel(src, f[1], f[2])
