"""Promoted channels, worker side: promotion, the proxy, select at the broker.

Strategy (docs/design.md §6)
----------------------------
A local `Chan` is promoted the first time it is pickled: in one step of the
hub thread its buffered values, parked senders and parked receivers move to
the broker (`CH_PROMOTE`) and the object's class becomes `RemoteChan`, so every
reference in this worker sees the change. A channel created outside any
goroutine is *born shared*: a `RemoteChan` from the start.

Per worker and run, each promoted channel has a `_Px` (its `_r`):
credit for sends without waiting, a cache of prefetched values, the local
receivers parked on it, and the counters of demand and consumption. Credited
sends and consumption reports are batched and moved into the link's queue by
`_pre_flush`, which runs under the link's lock — from the hub, or from sysmon
when a goroutine computes without parking after sending.

When the channel's home is another worker that lent this worker its pair
ring (§6.9), a credited send writes the encoded value into the ring instead
(`_ring_send`, and the C path), and credit comes from the ring's grant
counter (`px.gseen`: how far this worker took it).

Invariants: `px.asked` = committed demand outstanding at the broker (one per
receiver parked here when it asked); `px.consumed >= px.reported`, each
written by one side only (hub / flusher under the lock); `px.ring` is None
whenever `px.pending` or `px.closed_seen` (a ring is never written then).

Who may call: channel operations from any goroutine of this worker; frame
handlers from the hub.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import deque
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any

from .._core import _chan, _sched
from .._core._chan import RECV_OK, SEND, Chan
from .._core._sched import G
from .._errors import ClosedChannelError
from .._transport import _wire
from .._transport._arena import H_CID
from .._transport._atomic import add, load, store
from .._transport._link import SUPERVISOR
from . import _worker
from ._chanhome import DATA_FRAMES, RG_GRANT, RG_PWAIT, RG_RPOS, RG_WPOS, RING_DATA, Home
from ._worker import current_worker, handler, refuse_sysmon

_DRAINED = object()

_ring_put: Any
try:
    from .. import _speedups as _spr  # type: ignore[attr-defined]
    _ring_put, RING_BIG = _spr.ring_put, _spr.RING_BIG
except ImportError:         # no accelerator: no pair rings
    _ring_put, RING_BIG = None, 0
# MPGO_PAIR_RINGS=0 turns pair rings off (every credited value is a frame)
RINGS = os.environ.get("MPGO_PAIR_RINGS", "1") != "0"
_perf = time.perf_counter
_yield = os.sched_yield
MAX_PREFETCH = 256
# ... when the channel's home is this worker (pair mode, §6.7): the values are
# in this process already and no other worker receives, so a wider window only
# saves refills (W4 measured: 1.3 -> 1.6 M ints/s, a consumer's cache ran dry
# every 180 values instead of every 280).
MAX_PREFETCH_HOME = 1024

# cid -> the one RemoteChan object of this process for it
_table: weakref.WeakValueDictionary[int, RemoteChan] = weakref.WeakValueDictionary()
_dirty: set[_Px] = set()


class _Px:
    """Worker-side state of one promoted channel for one run."""

    __slots__ = ("cid", "cap", "run", "credits", "grant", "want_sent", "puts", "recvq",
                 "asked", "spec_asked", "prefetch", "cache", "consumed", "reported",
                 "closed_seen", "drained", "forgotten", "home", "pending", "outbox",
                 "cwait", "ring", "gseen", "selecting", "__weakref__")

    def __init__(self, cid: int, cap: int, run: int) -> None:
        self.cid = cid
        self.cap = cap
        self.run = run
        self.credits = 0
        self.grant = 0
        self.want_sent = False
        self.puts: list[bytes] = []          # credited sends not yet framed
        self.recvq: deque[G] = deque()       # receivers parked here
        self.asked = 0
        self.spec_asked = 0
        self.prefetch = 1
        self.cache: deque[bytes] = deque()   # delivered, not yet received
        self.consumed = 0
        self.reported = 0
        self.closed_seen = False
        self.drained = False
        self.forgotten = 0        # 1: the object died; 2: CH_FORGET queued
        self.home = SUPERVISOR    # where the channel's state lives (pair mode: a worker)
        self.pending = False      # the home is moving: frames wait in outbox
        self.outbox: list[tuple[int | None, list[Any]]] = []   # (None: the home)
        self.cwait: deque[G] = deque()       # senders parked here until credit comes
        # The pair ring this worker sends into (§6.9): its arena offset, or
        # None; and the ring's grant counter as far as this worker took it.
        self.ring: int | None = None
        self.gseen = 0
        self.selecting = 0        # selects of this worker waiting at the broker on it


def _move(px: _Px, queue: Any) -> None:
    """Frame px's pending credited sends and consumption. Caller holds the link lock."""
    n = len(px.puts)
    if n:
        vals = px.puts[:n]
        del px.puts[:n]
        _frame_home(px, queue, [_wire.CH_PUT, px.cid, vals])
    c = px.consumed - px.reported
    if c:
        px.reported += c
        if px.cap:
            # (an unbuffered channel holds nothing: its home has no use for it)
            _frame_home(px, queue, [_wire.CH_CONSUMED, px.cid, c])
    if px.forgotten == 1:
        # The object died: what it held (prefetched values, unused credit) goes
        # back to the home, then the broker hears this worker let go.
        px.forgotten = 2
        _ring_detach(px)
        vals = list(px.cache)
        px.cache.clear()
        credits, px.credits = px.credits, 0
        _frame_home(px, queue, [_wire.CH_RETURN, px.cid, vals, credits, True])
        forget = [_wire.CH_FORGET, px.cid, px.run]
        if px.pending:
            px.outbox.append((SUPERVISOR, forget))   # after what the move holds back
        else:
            queue.append((SUPERVISOR, forget))


def _frame_home(px: _Px, queue: Any, frame: list[Any]) -> None:
    """Queue a frame for px's home, or hold it while the home moves."""
    if px.pending:
        px.outbox.append((None, frame))
    else:
        queue.append((px.home, frame))


def _to_home(w: Any, px: _Px, frame: list[Any]) -> None:
    """Send a data frame to wherever the channel lives. Hub thread.

    The demand of a receiver whose channel is homed in this worker (pair
    mode) is applied at once rather than through the link and the next hub
    pass: a rendezvous waits on it (W5). It may overtake this worker's own
    queued consumption and credited sends for the channel; demand never
    depends on them (the home only learns of room or values later).
    """
    if px.pending:
        px.outbox.append((None, frame))
    elif frame[0] == _CH_DEMAND and px.home == w.wid and frame[1] in w.chome.chans:
        home = w.chome
        home.handle(w.wid, frame)
        if home.out and _sched._cur is not None:
            home.flush_deliveries()     # what it released reaches the receivers now
    else:
        w.send(px.home, frame)


_CH_DEMAND = _wire.CH_DEMAND


def _pre_flush(from_hub: bool) -> None:
    w = _worker.W
    if w is None:
        return
    q = w.link.queue
    for px in list(_dirty):
        _move(px, q)
        if from_hub:
            _dirty.discard(px)


def _pre_pending() -> bool:
    return bool(_dirty)


def _widen(px: _Px, w: Any) -> None:
    """Double px's receive window, up to half the capacity and the bound for
    where its home is (this worker: MAX_PREFETCH_HOME, else MAX_PREFETCH)."""
    top = MAX_PREFETCH_HOME if px.home == w.wid else MAX_PREFETCH
    px.prefetch = min(px.prefetch * 2, top, max(1, px.cap // 2))


def _consumed_at_home(w: Any, px: _Px) -> None:
    """Apply what this worker's receivers consumed to the channel's home here
    at once, not at the next hub pass: the room it makes is granted to a ring
    sender straight away (§6.9). Hub thread; px is homed in this worker."""
    c = w.chome.chans.get(px.cid)
    if c is None or not c.ring_on or px.pending:
        return
    with w.link.lock:
        n = px.consumed - px.reported
        px.reported += n
    if n > 0:
        w.chome.handle(w.wid, [_wire.CH_CONSUMED, px.cid, n])


def _move_now(w: Any, px: _Px) -> None:
    """Order: everything px owes the broker goes before the next frame. Hub thread."""
    with w.link.lock:
        _move(px, w.link.queue)


class RemoteChan(Chan):
    """A channel whose state lives at the broker (see module docstring)."""

    __slots__ = ()

    def _px(self) -> _Px:
        px: _Px | None = self._r
        w = current_worker()
        if px is None or px.run != w.run:
            px = _open(self, w, 0)
        return px

    def _rsend_slow(self, v: Any) -> None:
        px = self._px()
        if (px.credits > 0 or px.ring is not None) and (
                _sched._preempt or _monotonic() - _sched._last_turn > _sched.TURN_AGE):
            # A send on credit does not park: the goroutine yields first, so
            # that the hub gets its turn (a send that parks yields anyway).
            _sched.preempt_point()
        w = _worker.W
        assert w is not None
        if px.ring is not None and _ring_send(w, px, v):
            return
        while px.credits <= 0 and px.want_sent and not px.closed_seen:
            # Out of credit with a request outstanding (CH_WANT): the grant is
            # on its way or comes as soon as the buffer has room, so wait for
            # it here. A blocking CH_SEND instead would wait for its own
            # answer, which follows the grant by up to a batch of values.
            _move_now(w, px)
            _park_cwait(px, "chan send")
            if px.ring is not None and _ring_send(w, px, v):
                return      # the home lent its ring meanwhile: values go there now (P1)
        if px.closed_seen:
            raise ClosedChannelError("send on closed channel")
        b = _wire.encode(v)
        if px.credits > 0:
            px.credits -= 1
            px.puts.append(b)
            _dirty.add(px)
            if not px.want_sent and px.credits <= px.grant * 3 // 4:
                px.want_sent = True
                _to_home(w, px, [_wire.CH_WANT, px.cid])
                # The request and the values sent so far leave now: the grant
                # must come back before the rest of the credit is spent.
                w.link.flush()
            return
        if px.cap:
            _move_now(w, px)        # credited sends go first (an unbuffered px owes nothing)
        g = _sched._cur
        t = w.ticket(g)
        _to_home(w, px, [_wire.CH_SEND, px.cid, t, b])
        if px.home != w.wid and not _sched.has_runnable():
            # nothing else would ride in this message: it leaves now, not
            # after a park and a hub turn (a rendezvous waits on it)
            w.link.flush()
        credit = _sched.park("chan send")
        if credit > 0:
            px.credits += credit
            px.grant = credit
            px.want_sent = False
            _wake_credit_waiters(px)

    def _recv(self) -> tuple[Any, bool]:
        px = self._px()
        cache = px.cache
        if cache and (_sched._preempt or _monotonic() - _sched._last_turn > _sched.TURN_AGE):
            # A cached value means no park: yield first for the hub's turn (a
            # receive that parks yields anyway). The cache may be recalled
            # meanwhile: it is looked at again below.
            _sched.preempt_point()
        if cache:
            b = cache.popleft()
            px.consumed += 1
            _dirty.add(px)
            if px.cap:
                ahead = px.spec_asked + len(cache)
                if ahead <= px.prefetch // 2 and not px.drained:
                    w = _worker.W
                    assert w is not None
                    if px.home == w.wid:
                        # A receiver in the home's worker that keeps consuming
                        # widens its window here too: grown only when the
                        # cache ran dry, a receiver that never waits kept a
                        # window of a few values and asked every few values
                        # (W4: 128 requests per 512 values in some runs).
                        _widen(px, w)
                        _consumed_at_home(w, px)
                    ds = px.prefetch - ahead
                    px.spec_asked += ds
                    _to_home(w, px, [_wire.CH_DEMAND, px.cid, 0, ds])
            return _wire.decode(b), True
        if px.drained:
            return None, False
        w = _worker.W
        assert w is not None
        if not px.cap and px.home == w.wid and not px.pending and not px.recvq:
            # homed here with a sender already waiting: take its value at once
            # (no demand to register, no delivery to batch, no park)
            v = w.chome.take_waiting_sender(px.cid)
            if v is not None:
                return _wire.decode(v), True
        g = _sched._cur
        px.recvq.append(g)  # type: ignore[arg-type]
        g.waitq = px.recvq  # type: ignore[union-attr]
        if px.cap:
            _move_now(w, px)             # report consumption before parking
        need = len(px.recvq) - px.asked
        ds = 0
        if px.cap:
            # The cache ran dry while a receiver wanted more: widen the window.
            _widen(px, w)
            ds = max(0, px.prefetch - 1 - px.spec_asked)
        if need > 0 or ds:
            need = max(need, 0)
            px.asked += need
            px.spec_asked += ds
            _to_home(w, px, [_wire.CH_DEMAND, px.cid, need, ds])
        # a home in this worker may have served the demand at once (a sender
        # was waiting): then the value is here and there is nothing to wait for
        r = _sched.park_unless_ready("chan receive")
        g.waitq = None  # type: ignore[union-attr]
        if r is _DRAINED:
            return None, False
        return _wire.decode(r), True

    _recv_slow = _recv

    def _send_slow(self, v: Any) -> None:
        self.send(v)

    def _rrecv_slow(self) -> Any:
        return self._recv()[0]

    def recv_ok(self) -> tuple[Any, bool]:
        return self._recv()

    def __iter__(self) -> Any:
        return self

    def _rnext_slow(self) -> Any:
        v, ok = self._recv()
        if not ok:
            raise StopIteration
        return v

    # Without the C accelerator these are the operations; with it, its
    # per-value cases (a credited send, a cached value) run first and call
    # these for everything else (see the end of this module).
    send = _rsend_slow
    recv = _rrecv_slow
    __next__ = _rnext_slow

    def close(self) -> None:
        px = self._px()
        w = _worker.W
        assert w is not None
        _move_now(w, px)
        t = w.ticket(_sched._cur)
        _to_home(w, px, [_wire.CH_CLOSE, px.cid, t])
        if not _sched.park("chan close"):
            raise ClosedChannelError("close of closed channel")

    def __len__(self) -> int:
        px = self._px()
        w = _worker.W
        assert w is not None
        _move_now(w, px)
        t = w.ticket(_sched._cur)
        _to_home(w, px, [_wire.CH_LEN, px.cid, t])
        return int(_sched.park("chan len"))

    @property
    def closed(self) -> bool:
        px = self._r
        return bool(px is not None and px.closed_seen)

    def timer_send(self, value: Any) -> None:
        """A timer's non-blocking send (after/Ticker) on a promoted channel. Hub."""
        w = _worker.W
        if w is None:
            return
        px = self._px()
        if px.closed_seen:
            return
        _to_home(w, px, [_wire.CH_TRYSEND, px.cid, _wire.encode(value)])

    def __reduce__(self) -> Any:
        w = _worker.W
        if w is not None and self._id > 0:
            w.link.queue.append((SUPERVISOR, [_wire.CH_REF, self._id]))
        return (_chan_ref, (self._id, self._cap))


# -- pair rings: this worker sends into a ring its partner reads (§6.9) ---------

def _ring_topup(px: _Px, r: int) -> None:
    """Take the credit the home granted through the ring since the last look."""
    g = load(r + RG_GRANT)
    if g > px.gseen:
        px.credits += g - px.gseen
        px.gseen = g


def _ring_send(w: Any, px: _Px, v: Any) -> bool:
    """A send through px's ring (the C path's cases it leaves here: no credit
    or no room, a large value, a closed channel). Waits for credit or room;
    False (nothing sent) if the ring was given up meanwhile."""
    b = _wire.encode(v)             # TypeError here: nothing touched
    big = len(b) > RING_BIG
    need = 4 + (0 if big else len(b))   # ring bytes: length word (+ value)
    while True:
        if px.closed_seen:
            raise ClosedChannelError("send on closed channel")
        r = px.ring
        if r is None:
            return False
        if px.credits <= 0:
            _ring_topup(px, r)
        if px.credits > 0:
            rc = _ring_put(r, None if big else b)
            if rc:
                px.credits -= 1
                if big:
                    # the value follows its placeholder by message (one link: in order)
                    w.send(px.home, [_wire.CH_BIG, px.cid, b])
                    w.link.flush()
                if rc == 2:
                    _ring_wake(px)
                return True
        if not _sched.has_runnable() and _ring_spin(px, r, need):
            continue
        # No credit or no room: wait for the home's CH_RING_WAKE. The flag is
        # raised before looking again (the home clears it when it grants or
        # reads), so a grant or a read in between is never missed.
        store(r + RG_PWAIT, 1)
        _ring_topup(px, r)
        if px.credits > 0 and _ring_room(r) >= need:
            if not px.cwait:
                store(r + RG_PWAIT, 0)  # (others parked here still need it raised)
            continue
        if not px.cwait:
            _ring_wake(px)      # the home's hub may be idle: it looks at the ring when told
        _park_cwait(px, "chan send")


RING_SPIN = 200e-6


def _ring_spin(px: _Px, r: int, need: int) -> bool:
    """Nothing else to run here: watch the ring for credit and room for a
    short while before parking (a park costs the home a message and its
    answer; a home still consuming grants within that time). True if both came."""
    end = _perf() + RING_SPIN
    while _perf() < end:
        _ring_topup(px, r)
        if px.credits > 0 and _ring_room(r) >= need:
            return True
        _yield()
    return False


def _ring_room(r: int) -> int:
    """Free bytes in the ring at r (the sender's view: it alone writes)."""
    return RING_DATA - (load(r + RG_WPOS) - load(r + RG_RPOS))


def _park_cwait(px: _Px, reason: str) -> None:
    """Park the calling goroutine in px.cwait until `_wake_credit_waiters`
    (credit, a ring wake-up, the end of a home move, close); callers look again."""
    g = _sched._cur
    px.cwait.append(g)  # type: ignore[arg-type]
    g.waitq = px.cwait  # type: ignore[union-attr]
    _sched.park(reason)
    g.waitq = None  # type: ignore[union-attr]


def _ring_wake(px: _Px) -> None:
    """Tell the home to look at px's ring now: its receivers wait for the
    value just written (a ring send, also from the C path), or a sender here
    parks for credit or room and the home's hub may be idle."""
    w = _worker.W
    if w is None:
        return
    w.send(px.home, [_wire.CH_RING_POKE, px.cid])
    w.link.flush()


def _ring_detach(px: _Px) -> int | None:
    """Stop sending into px's ring: what the home granted so far becomes
    px.credits. Returns the grant counter as seen (the home takes back
    grants made after this), None if px had no ring."""
    r = px.ring
    if r is None:
        return None
    _ring_topup(px, r)
    px.ring = None
    return px.gseen


@handler(_wire.CH_RING)
def _h_ring(src: int, f: list[Any]) -> None:
    """The home lends its ring: accept unless the channel is moving, closed,
    gone, or homed elsewhere (CH_RING_ON answers either way; after it, in
    the link's order, the home reads the ring)."""
    w = _worker.W
    assert w is not None
    px = _px_of(f[1])
    ok = (px is not None and _ring_put is not None and not px.pending
          and not px.closed_seen and px.home == src and px.forgotten == 0)
    with w.link.lock:
        if px is not None and ok:
            _move(px, w.link.queue)           # values framed so far go first
        w.link.queue.append((src, [_wire.CH_RING_ON, f[1], ok]))
    if ok:
        assert px is not None
        px.ring = f[2]
        px.gseen = 0
        px.want_sent = False
        _wake_credit_waiters(px)    # senders waiting for a CH_CREDIT wait on the ring now
    _sched.want_hub_turn()


@handler(_wire.CH_RING_WAKE)
def _h_ring_wake(src: int, f: list[Any]) -> None:
    px = _px_of(f[1])
    if px is not None:
        _wake_credit_waiters(px)


def _open(ch: RemoteChan, w: Any, ref: int) -> _Px:
    """This worker starts holding ch for this run: tell the broker (holder, and
    the in-flight reference it consumed), watch the object's death. Hub thread."""
    px = _Px(ch._id, ch._cap, w.run)
    ch._r = px
    _table[ch._id] = ch
    w.send(SUPERVISOR, [_wire.CH_OPEN, ch._id, ch._cap, ch._id < 0, ref])
    if ch._id > 0:
        weakref.finalize(ch, _collected, px)
    return px


def _collected(px: _Px) -> None:
    """The worker's object for a promoted channel was collected (any thread,
    any moment: only flags, the next flush sends CH_FORGET)."""
    px.forgotten = 1
    _dirty.add(px)


def _chan_ref(cid: int, cap: int) -> RemoteChan:
    """Unpickle a channel reference: this process's one object for cid."""
    w = _worker.W
    ch = _table.get(cid)
    if ch is not None:
        if w is not None and cid > 0:
            px = ch._r
            if px is not None and px.run == w.run:
                w.send(SUPERVISOR, [_wire.CH_UNREF, cid])
            else:
                _open(ch, w, 1)
        return ch
    ch = RemoteChan.__new__(RemoteChan)
    ch._buf = deque()
    ch._cap = cap
    ch._recvq = deque()
    ch._sendq = deque()
    ch._closed = False
    ch._id = cid
    ch._r = None
    ch._stale = 0
    _table[cid] = ch
    if w is not None and w.run:
        _open(ch, w, 1 if cid > 0 else 0)
    return ch


# ---------------------------------------------------------------------------
# promotion
# ---------------------------------------------------------------------------

def promote(ch: Chan) -> None:
    """Move a local channel's state to the broker; ch becomes a RemoteChan. Hub thread.

    Buffered values go to the broker in order. Goroutines parked on the
    channel (plain or in a select) are woken with `RETRY` and run their
    operation again on the promoted channel, in the order they were queued.
    """
    refuse_sysmon()
    w = current_worker()
    # Encode first: an unpicklable value leaves the channel exactly as it was.
    values = [_wire.encode(v) for v in ch._buf]
    cid = add(H_CID, 1)
    px = _Px(cid, ch._cap, w.run)
    for q in (ch._sendq, ch._recvq):
        for wt in q:
            if type(wt) is G:
                _sched.ready(wt, _chan.RETRY)
            elif not wt.sel.done:
                wt.sel.done = True
                _sched.ready(wt.g, _chan.RETRY)
    closed = ch._closed
    ch._buf = deque()
    ch._recvq = deque()
    ch._sendq = deque()
    ch._id = cid
    ch._r = px
    ch.__class__ = RemoteChan
    px.closed_seen = closed
    _table[cid] = ch  # type: ignore[assignment]
    weakref.finalize(ch, _collected, px)
    w.send(SUPERVISOR, [_wire.CH_PROMOTE, cid, ch._cap, closed, values, [], 0])


class _Hooks(_chan.ChanHooks):
    def reduce(self, ch: Chan) -> Any:
        if _worker.W is None:
            raise TypeError("a local mpgo channel cannot be pickled outside a running mpgo runtime")
        promote(ch)
        return (_chan_ref, (ch._id, ch._cap))

    def created_outside(self, ch: Chan) -> None:
        # Born shared (module level, supervisor): negative ids mark them for the broker.
        ch._id = -add(H_CID, 1)
        ch.__class__ = RemoteChan

    def select(self, parsed: list[tuple[int, Any, Any]], dflt: int) -> tuple[int, Any]:
        return select_remote(parsed, dflt)


_chan.HOOKS = _Hooks()


def _give_back(w: Any, px: _Px) -> None:
    """Before a select at the broker: return px's prefetched values and unused
    credit, and, when no receiver of this worker is parked on the channel,
    drop the committed demand the home may still count for it (a withdrawal
    can be on its way; the home would hand a value to it ahead of the
    select, and the value would come back behind newer ones). Hub thread."""
    vals = list(px.cache)
    px.cache.clear()
    credits, px.credits = px.credits, 0
    px.spec_asked = 0
    px.prefetch = max(1, px.prefetch // 2)
    idle = not px.recvq
    if idle:
        px.asked = 0
    _move_now(w, px)
    _to_home(w, px, [_wire.CH_RETURN, px.cid, vals, credits, False, idle])


def select_remote(parsed: list[tuple[int, Any, Any]], dflt: int) -> tuple[int, Any]:
    """Select over cases of which at least one channel is promoted. Any goroutine."""
    w = current_worker()
    for _kind, ch, _v in parsed:
        if ch is not None and type(ch) is Chan:
            promote(ch)
    # A channel whose home is moving holds this worker's frames for it until
    # the move ends, and SELECT does not wait with them: what goes back below
    # would reach the broker after the select (a value returned then came
    # after newer ones). Wait for such moves first.
    for _kind, ch, _v in parsed:
        if ch is not None:
            px = ch._px()
            while px.pending:
                _park_cwait(px, "select")
    # The broker must see the channels' whole state to choose uniformly among
    # the ready cases (P6): values prefetched here and unused credit go back
    # first (the frames precede SELECT on the same link); values still on
    # their way here go back as they arrive (the broker waits for them).
    pxs = [ch._px() for _kind, ch, _v in parsed if ch is not None]
    for px in pxs:
        px.selecting += 1
        _give_back(w, px)
    cases: list[list[Any]] = []
    for kind, ch, v in parsed:
        if ch is None:
            cases.append([kind, None, None])
        else:
            px = ch._px()
            _move_now(w, px)
            cases.append([kind, px.cid, _wire.encode(v) if kind == SEND else None])
    t = w.ticket(_sched._cur)
    w.send(SUPERVISOR, [_wire.SELECT, t, cases, dflt])
    try:
        idx, v, ok = _sched.park("select")
    finally:
        for px in pxs:
            px.selecting -= 1
    if idx == dflt:
        return dflt, None
    if ok == "closed":
        raise ClosedChannelError("send on closed channel")
    kind = parsed[idx][0]
    if kind == SEND:
        return idx, None
    val = _wire.decode(v) if ok else None
    return idx, ((val, bool(ok)) if kind == RECV_OK else val)


# ---------------------------------------------------------------------------
# frame handlers (hub)
# ---------------------------------------------------------------------------

def _px_of(cid: int) -> _Px | None:
    ch = _table.get(cid)
    if ch is None:
        return None
    px: _Px | None = ch._r
    w = _worker.W
    if px is None or w is None or px.run != w.run:
        return None
    return px


@handler(_wire.CH_SENT)
def _h_sent(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    g = w.tickets.pop(f[1], None)
    if g is None:
        return
    if f[3]:
        _sched.ready_err(g, ClosedChannelError("send on closed channel"))
    else:
        _sched.ready(g, f[2])


def _wake_credit_waiters(px: _Px) -> None:
    """Senders parked for credit try again (credit came, or the request is void)."""
    q = px.cwait
    while q:
        g = q.popleft()
        g.waitq = None
        _sched.ready(g, None)


@handler(_wire.CH_CREDIT)
def _h_credit(src: int, f: list[Any]) -> None:
    px = _px_of(f[1])
    if px is None:
        _worker.W.send(src, [_wire.CH_RETURN, f[1], [], f[2], True])  # type: ignore[union-attr]
        return
    px.credits += f[2]
    px.grant = f[2]
    px.want_sent = False
    if px.closed_seen:
        px.credits = 0
    _wake_credit_waiters(px)


@handler(_wire.CH_DELIVER)
def _h_deliver(src: int, f: list[Any]) -> None:
    px = _px_of(f[1])
    if px is None:
        # nobody here can receive them any more: straight back to the broker
        _worker.W.send(src, [_wire.CH_RETURN, f[1], f[2], 0, True])  # type: ignore[union-attr]
        return
    vals, ncommitted = f[2], f[3]
    px.asked = max(0, px.asked - ncommitted)
    px.spec_asked = max(0, px.spec_asked - (len(vals) - ncommitted))
    rq = px.recvq
    served = 0
    if rq:
        for v in vals:
            if not rq:
                break
            g = rq.popleft()
            px.consumed += 1
            served += 1
            _sched.ready(g, v)
        rest = vals[served:] if served else vals
        if served and px.cap:
            _dirty.add(px)          # consumption to report
    else:
        rest = vals
    if px.selecting and rest:
        # a select of this worker waits at the broker for these (they are
        # older than what it would choose from): straight back
        px.spec_asked = 0
        _move_now(_worker.W, px)
        _to_home(_worker.W, px, [_wire.CH_RETURN, px.cid, list(rest), 0])
    else:
        px.cache.extend(rest)
    excess = min(served - ncommitted, px.asked)
    if excess > 0:
        # Parked receivers took prefetched values: the committed demand they
        # registered is no longer wanted (else the home would count this worker
        # as waiting forever and never recall what its cache later holds).
        px.asked -= excess
        _to_home(_worker.W, px, [_wire.CH_DEMAND, px.cid, -excess, 0])


def _local_give(cid: int, v: bytes) -> bool:
    """An unbuffered value for a receiver parked in this worker, from the
    channel's home here (the one-value case of `_h_deliver`). Hub thread."""
    px = _px_of(cid)
    if px is None or not px.recvq:
        return False
    g = px.recvq.popleft()
    px.asked = max(0, px.asked - 1)
    _sched.ready(g, v)
    return True


@handler(_wire.CH_RECALL)
def _h_recall(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    px = _px_of(f[1])
    if px is None:
        w.send(src, [_wire.CH_RETURN, f[1], [], 0, True])
        return
    vals = list(px.cache)
    px.cache.clear()
    if px.ring is not None:
        _ring_topup(px, px.ring)        # ring credit is given back too (the ring stays)
    credits, px.credits = px.credits, 0
    px.want_sent = False
    px.spec_asked = 0
    px.prefetch = max(1, px.prefetch // 2)
    _move_now(w, px)
    _to_home(w, px, [_wire.CH_RETURN, px.cid, vals, credits])
    _wake_credit_waiters(px)        # no request outstanding now: they send blocking


@handler(_wire.CH_CLOSED)
def _h_closed(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    px = _px_of(f[1])
    unused = 0
    if px is not None:
        px.closed_seen = True
        _ring_detach(px)
        unused = px.credits
        px.credits = 0
        _move_now(w, px)
        _wake_credit_waiters(px)    # they raise ClosedChannelError
    if px is not None:
        _to_home(w, px, [_wire.CH_CLOSED_ACK, f[1], unused])
    else:
        w.send(src, [_wire.CH_CLOSED_ACK, f[1], unused])


@handler(_wire.CH_DRAINED)
def _h_drained(src: int, f: list[Any]) -> None:
    px = _px_of(f[1])
    if px is None:
        return
    px.drained = True
    px.closed_seen = True
    _ring_detach(px)
    px.asked = 0
    rq = px.recvq
    while rq:
        _sched.ready(rq.popleft(), _DRAINED)


@handler(_wire.CH_CLOSE_DONE)
def _h_close_done(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    g = w.tickets.pop(f[1], None)
    if g is not None:
        _sched.ready(g, bool(f[2]))


@handler(_wire.CH_LEN_IS)
def _h_len_is(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    g = w.tickets.pop(f[1], None)
    if g is not None:
        _sched.ready(g, f[2])


@handler(_wire.SELECT_DONE)
def _h_select_done(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    g = w.tickets.pop(f[1], None)
    if g is not None:
        _sched.ready(g, (f[2], f[3], f[4]))


# -- pair mode: this worker as a channel's home (docs/design.md §6.7) -------------

def _home_out(dst: int, frame: list[Any]) -> None:
    """A channel homed here answers a worker. To this worker itself the frame is
    handled at once (hub context: the handlers only ready goroutines), so that
    what the woken goroutines send rides with the home's other answers."""
    w = _worker.W
    assert w is not None
    if dst == w.wid:
        _worker.HANDLERS[frame[0]](dst, frame)
    else:
        w.send(dst, frame)


def _on_data(src: int, f: list[Any]) -> None:
    """A data frame for a channel homed here (or about to be: held until CH_HOME).

    A frame this worker sent itself for a channel it no longer homes (queued
    just before the state went back) follows the channel to its home.
    """
    w = _worker.W
    assert w is not None
    if src == w.wid and f[1] not in w.chome.chans:
        px = _px_of(f[1])
        home = px.home if px is not None else SUPERVISOR
        if home != w.wid:
            if px is not None and px.pending:
                px.outbox.append((None, f))
            else:
                w.send(home, f)
            return
    w.chome.handle(src, f)


for _kind in DATA_FRAMES:
    _worker.HANDLERS[_kind] = _on_data


@handler(_wire.CH_PREPARE)
def _h_prepare(src: int, f: list[Any]) -> None:
    """The channel's home moves: fence at the current home, hold frames meanwhile."""
    w = _worker.W
    assert w is not None
    cid, home = f[1], f[2]
    px = _px_of(cid)
    gseen = None
    with w.link.lock:
        if px is not None:
            gseen = _ring_detach(px)          # ring values precede the fence too
            _move(px, w.link.queue)           # what is owed goes before the fence
            px.pending = True
            w.moving[cid] = px                # held frames outlive the channel object
    w.send(home, [_wire.CH_FENCE, cid] if gseen is None else [_wire.CH_FENCE, cid, gseen])
    if px is not None and px.cwait:
        _wake_credit_waiters(px)          # ring waiters: they send by frames now


def _release(w: Any, px: _Px, home: int) -> None:
    with w.link.lock:
        px.home = home
        px.pending = False
        out, px.outbox = px.outbox, []
        for dst, frame in out:
            w.link.queue.append((home if dst is None else dst, frame))
    _wake_credit_waiters(px)        # selects waiting for the move (they look again)
    _sched.want_hub_turn()


@handler(_wire.CH_HOME)
def _h_home(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    w.chome.install(f[2])
    px = w.moving.pop(f[1], None) or _px_of(f[1])
    if px is not None:
        _release(w, px, w.wid)


@handler(_wire.CH_MOVED)
def _h_moved(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    px = w.moving.pop(f[1], None) or _px_of(f[1])
    if px is not None:
        _release(w, px, f[2])


@handler(_wire.CH_REVOKE)
def _h_revoke(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    cid = f[1]
    early = w.fences.pop(cid, set())
    wait = set(f[2]) - early
    if wait:
        w.revoking[cid] = wait
    else:
        _home_back(w, cid)


@handler(_wire.CH_FENCE)
def _h_fence(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    cid = f[1]
    if len(f) > 2:
        w.ring_seen[cid] = f[2]      # the ring grant its sender had seen (§6.9)
    wait = w.revoking.get(cid)
    if wait is None:
        w.fences.setdefault(cid, set()).add(src)     # came before our CH_REVOKE
        return
    wait.discard(src)
    if not wait:
        del w.revoking[cid]
        _home_back(w, cid)


def _home_back(w: Any, cid: int) -> None:
    """Every other holder fenced: send the state back to the supervisor.

    Frames this worker addressed to itself for cid (its own receivers' demand,
    consumption, sends) may still sit in the link: they are applied first, so
    that the state that leaves is complete.
    """
    px = _px_of(cid)
    if px is not None:
        _move_now(w, px)
    w.link.flush()
    with w.link.lock:
        keep: deque[list[Any]] = deque()
        mine: list[list[Any]] = []
        while w.link.local:
            f = w.link.local.popleft()
            (mine if f[0] in DATA_FRAMES and f[1] == cid else keep).append(f)
        w.link.local.extendleft(reversed(keep))
    for f in mine:
        w.chome.handle(w.wid, f)
    state = w.chome.export(cid, w.ring_seen.pop(cid, None))
    with w.link.lock:
        w.link.queue.append((SUPERVISOR, [_wire.CH_HOME_BACK, state]))
        if px is not None:
            px.home = SUPERVISOR              # what follows goes after HOME_BACK
    _sched.want_hub_turn()


@handler(_wire.CH_DROP)
def _h_drop(src: int, f: list[Any]) -> None:
    w = _worker.W
    assert w is not None
    c = w.chome.chans.pop(f[1], None)
    if c is not None:
        w.chome.ring_end(c, None)


def _on_run_start() -> None:
    _dirty.clear()
    w = _worker.W
    if w is not None:
        if _set_remote is not None:
            _set_remote(_dirty, vars(_sched), w.run, _Px, _ring_wake)
        _fresh(w)


def _flush_home() -> None:
    w = _worker.W
    if w is None:
        return
    if w.chome.recheck:
        w.chome.tick(time.monotonic())
    if w.chome.ring_lease and not _sched.has_runnable():
        w.chome.ring_idle()
    if w.chome.out:
        w.chome.flush_deliveries()


def _fresh(w: Any) -> None:
    """This module's hooks on w's link and an empty channel state (a run's start)."""
    w.link.pre_flush = _pre_flush
    w.link.pre_pending = _pre_pending
    w.chome = Home(w.wid, _home_out)
    w.chome.local_give = _local_give
    if _ring_put is not None and RINGS:
        w.chome.ring_pool = w.ring_pool     # kept across runs (rings are per runtime)
    w.ring_seen = {}
    w.revoking = {}
    w.fences = {}
    w.moving = {}


def install(w: Any) -> None:
    w.on_run_start.append(_on_run_start)
    w.on_flush.append(_flush_home)
    _fresh(w)


_worker.ON_WORKER_START.append(install)


# The C fast paths of RemoteChan (mpgo/_speedups.c, "Promoted channels").
_C_PATHS = False
_set_remote: Any = None
if not TYPE_CHECKING:
    try:
        from .. import _speedups as _sp
        _C_PATHS = hasattr(_sp.ChanBase, "_rc_send") and issubclass(RemoteChan, _sp.ChanBase)
    except ImportError:
        pass
    if _C_PATHS:
        RemoteChan.send = _sp.ChanBase._rc_send
        RemoteChan.recv = _sp.ChanBase._rc_recv
        # iteration: ChanBase's own slot, told which class is remote (a
        # __next__ set here would cost a method lookup and call per value)
        del RemoteChan.__next__
        _sp.set_remote_type(RemoteChan)
        _set_remote = _sp.set_remote
