"""The broker: the supervisor's directory of promoted channels, and their default home.

Strategy (docs/design.md §6)
----------------------------
Every promoted channel has a directory entry here (`_Dir`): which workers hold
an object for it (`holders`), how many pickled references are in flight,
where its state lives (`home`), and whether it is moving. By default the
state lives in the supervisor's own `Home` (`_chanhome.py`), a process that
never runs user code: a worker busy computing never stalls other workers'
channel traffic, and a select over any mix of channels is settled in one
place.

Pair mode (§6.7): when only two workers hold a channel and one of them
receives on it, its state moves to that worker, so values and hand-offs go
worker to worker (one hop instead of two). Moving is a fenced hand-over:
PREPARE → every holder answers FENCE to the current home and holds its
frames → the state travels (HOME) → MOVED releases the holders. A third
holder, or a select on the channel, moves it back (REVOKE → HOME_BACK) for
good.

A channel no worker holds and no message refers to is dropped (as a Go
channel that became garbage).

Who may call: the supervisor's loop only (frame handlers below).
"""

from __future__ import annotations

import time
from typing import Any

from .._transport import _wire
from .._transport._link import SUPERVISOR
from ._chanhome import DATA_FRAMES, BChan, Home
from ._supervisor import BEFORE_FLUSH, ON_RUN_START, ON_WORKER_DEATH, Supervisor, sup_handler

PAIR_AFTER = 8           # operations seen here before a two-holder channel may move


class _Dir:
    """The supervisor's knowledge of one promoted channel."""

    __slots__ = ("cid", "holders", "inflight", "home", "moving", "fences", "held",
                 "no_pair", "ops", "receivers", "target", "asked")

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.holders: set[int] = set()
        self.inflight = 0
        self.home = SUPERVISOR
        self.moving = False              # a hand-over is under way
        self.fences: set[int] = set()    # holders whose FENCE is still awaited
        self.held: list[tuple[int, list[Any]]] = []   # frames parked while moving
        self.no_pair = False
        self.ops = 0
        self.receivers: set[int] = set()
        self.target = SUPERVISOR
        self.asked: set[int] = set()     # workers told to fence: each must hear CH_MOVED


class Broker:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.home = Home(SUPERVISOR, sup.send)
        self.dirs: dict[int, _Dir] = {}

    def dir(self, cid: int) -> _Dir:
        d = self.dirs.get(cid)
        if d is None:
            d = self.dirs[cid] = _Dir(cid)
        return d

    # -- data frames ---------------------------------------------------------------

    def data(self, src: int, f: list[Any]) -> None:
        cid = f[1]
        d = self.dirs.get(cid)
        if d is not None and (d.home != SUPERVISOR or (d.moving and src not in d.fences)):
            # The state is away (or coming back), or a worker that is not one of
            # the fencing holders writes during a move: park the frame until
            # the state is here and settled. Frames of holders that have not
            # fenced yet are applied: they precede the hand-over.
            d.held.append((src, f))
            if not d.moving and d.home != SUPERVISOR:
                self.revoke(d)
            return
        self.home.handle(src, f)
        if d is not None and not d.no_pair:
            d.ops += 1
            if f[0] == _wire.CH_DEMAND:
                d.receivers.add(src)
            self.maybe_pair(d)

    # -- pair mode -------------------------------------------------------------------

    def maybe_pair(self, d: _Dir) -> None:
        if d.ops < PAIR_AFTER or len(d.holders) != 2 or d.moving or d.home != SUPERVISOR:
            return
        c = self.home.chans.get(d.cid)
        if c is None or not self.home.movable(c):
            return
        rs = d.receivers & d.holders
        if len(rs) != 1:
            # Both holders receive: wherever the home went, the other's
            # demand would wait for that worker's hub, which answers only
            # between its goroutines' steps (W9 fan-out measured: the
            # non-home worker got 6-35% of the jobs). The supervisor
            # answers at once, so the channel stays here.
            if len(rs) > 1:
                d.no_pair = True
            return
        d.target = next(iter(rs))
        d.moving = True
        d.fences = set(d.holders)
        d.asked = set(d.holders)
        for w in d.holders:
            self.sup.send(w, [_wire.CH_PREPARE, d.cid, SUPERVISOR])

    def fence(self, src: int, cid: int) -> None:
        d = self.dirs.get(cid)
        if d is None or not d.moving:
            return
        d.fences.discard(src)
        if d.fences:
            return
        c = self.home.chans.get(cid)
        if c is None or not self.home.movable(c) or len(d.holders) != 2 \
                or d.target not in d.holders or d.held:
            # things changed while fencing: stay here, release the holders
            self._settle(d, SUPERVISOR)
            return
        state = self.home.export(cid)
        d.home = d.target
        self.sup.send(d.target, [_wire.CH_HOME, cid, state])
        self._settle(d, d.target)

    def _settle(self, d: _Dir, home: int) -> None:
        d.moving = False
        d.home = home
        # Every worker that was told to fence holds frames: release each one,
        # also one that let go of the channel meanwhile (its last frames wait).
        for w in d.holders | d.asked:
            if w != home:
                self.sup.send(w, [_wire.CH_MOVED, d.cid, home])
        d.asked = set()
        if home == SUPERVISOR:
            d.no_pair = True
            held, d.held = d.held, []
            for src, f in held:
                self._redo(src, f)

    def revoke(self, d: _Dir) -> None:
        """Bring the channel's state back here (for good)."""
        if d.moving or d.home == SUPERVISOR:
            return
        d.moving = True
        others = [w for w in d.holders if w != d.home]
        d.asked = set(others)
        for w in others:
            self.sup.send(w, [_wire.CH_PREPARE, d.cid, d.home])
        self.sup.send(d.home, [_wire.CH_REVOKE, d.cid, others])

    def home_back(self, src: int, state: list[Any]) -> None:
        cid = state[0]
        d = self.dir(cid)
        self.home.install(state)
        self._settle(d, SUPERVISOR)

    def _redo(self, src: int, f: list[Any]) -> None:
        if f[0] == _wire.SELECT:
            self.select(src, f)
        else:
            self.data(src, f)

    # -- select ------------------------------------------------------------------------

    def select(self, src: int, f: list[Any]) -> None:
        for case in f[2]:
            cid = case[1]
            d = self.dirs.get(cid) if cid is not None else None
            if d is not None:
                d.no_pair = True
                if d.moving or d.home != SUPERVISOR:
                    d.held.append((src, f))
                    self.revoke(d)
                    return
        self.home.on_select(src, f)

    # -- holders and garbage -----------------------------------------------------------

    def maybe_free(self, d: _Dir) -> None:
        if d.cid > 0 and not d.holders and d.inflight <= 0 and not d.moving:
            del self.dirs[d.cid]
            if d.home == SUPERVISOR:
                self.home.chans.pop(d.cid, None)
            else:
                self.sup.send(d.home, [_wire.CH_DROP, d.cid])

    def holder_joined(self, d: _Dir, src: int) -> None:
        new = src not in d.holders
        d.holders.add(src)
        if new and d.home != SUPERVISOR and src != d.home and len(d.holders) > 2:
            self.revoke(d)


# ---------------------------------------------------------------------------
# frame handlers (supervisor loop)
# ---------------------------------------------------------------------------

def _broker(sup: Supervisor) -> Broker:
    b = sup.state.get("broker")
    if b is None:
        b = sup.state["broker"] = Broker(sup)
    return b


def _on_run_start(sup: Supervisor) -> None:
    sup.state["broker"] = Broker(sup)


def _on_worker_death(sup: Supervisor, w: int) -> None:
    _broker(sup).home.forget_worker(w)


ON_RUN_START.append(_on_run_start)
ON_WORKER_DEATH.append(_on_worker_death)


def _flush(sup: Supervisor) -> None:
    """Send the deliveries batched during this pass (called before the loop flushes)."""
    b = sup.state.get("broker")
    if b is not None:
        if b.home.recheck:
            b.home.tick(time.monotonic())
        b.home.flush_deliveries()


BEFORE_FLUSH.append(_flush)


def _on_data(sup: Supervisor, src: int, f: list[Any]) -> None:
    _broker(sup).data(src, f)


for _kind in DATA_FRAMES:
    sup_handler(_kind)(_on_data)


@sup_handler(_wire.SELECT)
def _h_select(sup: Supervisor, src: int, f: list[Any]) -> None:
    _broker(sup).select(src, f)


@sup_handler(_wire.CH_OPEN)
def _h_open(sup: Supervisor, src: int, f: list[Any]) -> None:
    b = _broker(sup)
    cid, cap, born, ref = f[1], f[2], f[3], f[4]
    if cid not in b.dirs:
        if not born:
            b.home.pending.setdefault(cid, []).append((src, f))   # PROMOTE not here yet
            return
        b.home.chans[cid] = BChan(cid, cap)
        b.dir(cid)
        _replay_open(b, cid)
    d = b.dirs[cid]
    b.holder_joined(d, src)
    d.inflight -= ref


def _replay_open(b: Broker, cid: int) -> None:
    for src, f in b.home.pending.pop(cid, ()):
        if f[0] == _wire.CH_OPEN:
            _h_open(b.sup, src, f)
        elif f[0] in (_wire.CH_REF, _wire.CH_UNREF, _wire.CH_FORGET):
            _HOLDER_FRAMES[f[0]](b.sup, src, f)
        elif f[0] == _wire.SELECT:
            b.select(src, f)
        else:
            b.data(src, f)


def _dir_or_defer(b: Broker, src: int, f: list[Any]) -> _Dir | None:
    d = b.dirs.get(f[1])
    if d is None:
        b.home.pending.setdefault(f[1], []).append((src, f))
    return d


def _h_ref(sup: Supervisor, src: int, f: list[Any]) -> None:
    b = _broker(sup)
    d = _dir_or_defer(b, src, f)
    if d is not None:
        d.inflight += 1


def _h_unref(sup: Supervisor, src: int, f: list[Any]) -> None:
    b = _broker(sup)
    d = _dir_or_defer(b, src, f)
    if d is not None:
        d.inflight -= 1
        b.maybe_free(d)


def _h_forget(sup: Supervisor, src: int, f: list[Any]) -> None:
    if f[2] != sup.run_id:
        return
    b = _broker(sup)
    d = _dir_or_defer(b, src, f)
    if d is not None:
        d.holders.discard(src)
        b.maybe_free(d)


_HOLDER_FRAMES = {_wire.CH_REF: _h_ref, _wire.CH_UNREF: _h_unref, _wire.CH_FORGET: _h_forget}
for _kind, _fn in _HOLDER_FRAMES.items():
    sup_handler(_kind)(_fn)


@sup_handler(_wire.CH_PROMOTE)
def _h_promote(sup: Supervisor, src: int, f: list[Any]) -> None:
    b = _broker(sup)
    cid, cap, closed, values = f[1], f[2], f[3], f[4]
    c = b.home.chans.get(cid)
    if c is None:
        c = b.home.chans[cid] = BChan(cid, cap)
    c.closed = closed
    c.buf.extend(values)
    d = b.dir(cid)
    d.holders.add(src)
    b.home.pump(c)
    _replay_open(b, cid)


@sup_handler(_wire.CH_FENCE)
def _h_fence(sup: Supervisor, src: int, f: list[Any]) -> None:
    _broker(sup).fence(src, f[1])


@sup_handler(_wire.CH_HOME_BACK)
def _h_home_back(sup: Supervisor, src: int, f: list[Any]) -> None:
    _broker(sup).home_back(src, f[1])
