"""Where promoted channels live: their state and the algorithm, host-agnostic.

Strategy (docs/design.md §6)
----------------------------
A promoted channel's state (`BChan`) lives in exactly one process, its *home*:
the supervisor's broker by default, or — in pair mode (§6.7) — the one worker
that receives on it when only two workers use it. `Home` runs the same
algorithm wherever it is; only the way frames leave differs. Values are opaque
bytes: a home never decodes them.

* Buffered channels: senders hold *credit* (free slots reserved for them) and
  send without waiting (`CH_PUT`); without credit a send is blocking
  (`CH_SEND`) and its reply grants credit. Receivers ask for values
  (`CH_DEMAND`: committed = parked receivers, spec = prefetch) and report what
  they consumed (`CH_CONSUMED`). Capacity invariant (P3):
  ``len(buf) + Σheld + Σcredits <= cap``.
* Unbuffered channels: no credit, no prefetch. A send is answered
  (`CH_SENT`) only when a committed receiver got the value (P3 rendezvous).
* Values held by a worker whose receivers stopped are recalled (`CH_RECALL`)
  when another worker's receivers wait, or when the channel closes.
* Close voids all credit: the closer is answered once every credit holder
  acknowledged (`CH_CLOSED_ACK`), so a send that happens after the close
  always raises.
* Pair rings (§6.9, a worker's home only): the one other worker that sends
  writes its credited values into a shared-memory ring this home reads before
  it handles any frame for the channel; its credit is a counter raised here.

Who may call: the host's loop only (the supervisor's, or a worker's hub).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._transport import _arena, _wire
from .._transport._atomic import add as _add
from .._transport._atomic import cas as _cas
from .._transport._atomic import load as _load
from .._transport._atomic import store as _store

_ring_take: Callable[[int, int], list[Any]] | None
try:
    from .. import _speedups as _sp  # type: ignore[attr-defined]
    _ring_take = _sp.ring_take
except ImportError:         # no accelerator: no pair rings, every value is a frame
    _ring_take = None

# pair ring words (offsets from the ring's start; the layout is _speedups.c's)
RG_WPOS, RG_NPUT, RG_RPOS, RG_GRANT, RG_HWAIT, RG_PWAIT = 0, 8, 64, 72, 128, 192
RING_DATA = _arena.RING_BYTES - 256

RECALL_IDLE = 0.02       # a worker holding values or credit it has not used for this long
                         # gives them back when others wait (recall)
_monotonic = time.monotonic

SEND, RECV, RECV_OK = 2, 0, 1          # case kinds, as in _core._chan


def _less(counts: dict[int, int], w: int, n: int) -> None:
    """counts[w] -= n; a count that reaches zero (or below) is dropped."""
    left = counts.get(w, 0) - n
    if left > 0:
        counts[w] = left
    else:
        counts.pop(w, None)


class _Sel:
    """A select parked at the broker, waiting on several channels."""

    __slots__ = ("w", "ticket", "cases", "done")

    def __init__(self, w: int, ticket: int, cases: list[Any]) -> None:
        self.w = w
        self.ticket = ticket
        self.cases = cases
        self.done = False


class _SelCase:
    __slots__ = ("sel", "idx", "kind", "value")

    def __init__(self, sel: _Sel, idx: int, kind: int, value: Any) -> None:
        self.sel = sel
        self.idx = idx
        self.kind = kind
        self.value = value


class _Demand:
    """Committed demand of one worker: `n` parked receivers want one value each."""

    __slots__ = ("w", "n")

    def __init__(self, w: int, n: int) -> None:
        self.w = w
        self.n = n


class BChan:
    """One promoted channel at the broker."""

    __slots__ = ("cid", "cap", "closed", "buf", "sendq", "recvq", "spec", "credits",
                 "held", "want", "close_wait", "recalling", "drained_sent", "stale",
                 "active", "ring", "ring_w", "ring_on", "ring_tried", "big", "ring_put0",
                 "ring_taken", "ret_n", "sel_wait")

    def __init__(self, cid: int, cap: int) -> None:
        self.cid = cid
        self.cap = cap
        self.closed = False
        self.buf: deque[bytes] = deque()
        # blocking senders: (worker, ticket, value) tuples or _SelCase
        self.sendq: deque[Any] = deque()
        # receivers: _Demand or _SelCase, FIFO
        self.recvq: deque[Any] = deque()
        self.spec: dict[int, int] = {}
        self.credits: dict[int, int] = {}
        self.held: dict[int, int] = {}
        self.want: list[int] = []
        self.close_wait: dict[str, Any] | None = None
        self.recalling: set[int] = set()
        self.drained_sent: set[int] = set()
        self.stale = 0
        self.active: dict[int, float] = {}   # worker -> when it last consumed or sent
        # pair ring (§6.9): its arena offset while leased to this channel, the
        # sending worker, whether ring values may be read (after CH_RING_ON)
        self.ring: int | None = None
        self.ring_w = -1
        self.ring_on = False
        self.ring_tried = False
        self.big: deque[bytes] = deque()     # CH_BIG values for the ring's placeholders
        self.ring_put0 = 0                   # the sender's entry count at the last grant
        self.ring_taken = 0                  # entries read from the ring
        # values at the front of buf that were given back (CH_RETURN), oldest
        # first: a later give-back goes behind them (its values were delivered
        # after theirs), not in front
        self.ret_n = 0
        # selects waiting for values still on their way to their worker
        self.sel_wait: list[tuple[int, list[Any]]] = []

    def sweep(self) -> None:
        """Drop select cases whose select already fired."""
        self.stale = 0
        self.recvq = deque(r for r in self.recvq
                           if not (type(r) is _SelCase and r.sel.done))
        self.sendq = deque(s for s in self.sendq
                           if not (type(s) is _SelCase and s.sel.done))

    def take(self) -> bytes:
        """The value at the front of the buffer (values leave the buffer only
        through `take` and `take_many`: `ret_n` follows)."""
        if self.ret_n:
            self.ret_n -= 1
        return self.buf.popleft()

    def take_many(self, k: int) -> list[bytes]:
        """The first k values of the buffer (k <= its length)."""
        buf = self.buf
        if k == len(buf):
            vals = list(buf)
            buf.clear()
        else:
            vals = [buf.popleft() for _ in range(k)]
        self.ret_n = max(0, self.ret_n - k)
        return vals

    def give_back(self, vals: list[bytes]) -> None:
        """Values a worker returns, in its order: behind values returned
        before (older) and ahead of those never delivered."""
        buf, k = self.buf, self.ret_n
        if k:
            buf.rotate(-k)
            buf.extendleft(reversed(vals))
            buf.rotate(k)
        else:
            buf.extendleft(reversed(vals))
        self.ret_n = k + len(vals)

    def free(self) -> int:
        return self.cap - len(self.buf) - sum(self.held.values()) - sum(self.credits.values())


class Home:
    """The promoted channels homed in one process, and the per-pass delivery batches.

    `send(dst, frame)` is the host's way out: the supervisor's link, or a
    worker's (which delivers frames addressed to itself locally).
    """

    def __init__(self, me: int, send: Callable[[int, list[Any]], None]) -> None:
        self.me = me
        self._out = send
        # A worker's home hands an unbuffered value to its own parked receiver
        # directly (cid, value) -> taken; None in the supervisor.
        self.local_give: Callable[[int, bytes], bool] | None = None
        self.chans: dict[int, BChan] = {}
        self.pending: dict[int, list[tuple[int, list[Any]]]] = {}   # cid -> frames before PROMOTE
        self.out: dict[tuple[int, int], list[Any]] = {}              # (w, cid) -> [values, ncommitted]
        self.rand = random.Random()
        self.recheck: dict[int, float] = {}      # cid -> when to look at its recall again
        # Pair rings (§6.9), in a worker's home only: sender worker -> ring
        # offset (the worker's, kept across runs), and sender -> the channel
        # leasing that ring in this run.
        self.ring_pool: dict[int, int] | None = None
        self.ring_lease: dict[int, int] = {}

    def next_deadline(self) -> float | None:
        """When `tick` has something to do (the host bounds its poll with it)."""
        return min(self.recheck.values()) if self.recheck else None

    def tick(self, now: float) -> None:
        """Re-examine channels whose holders may have gone idle (recall)."""
        if not self.recheck:
            return
        due = [cid for cid, t in self.recheck.items() if t <= now]
        for cid in due:
            del self.recheck[cid]
            c = self.chans.get(cid)
            if c is not None:
                self.pump(c)

    # -- plumbing ------------------------------------------------------------

    def send(self, w: int, frame: list[Any]) -> None:
        """Queue a frame for w after any deliveries already batched for w (order)."""
        if self.out:
            for key in [k for k in self.out if k[0] == w]:
                vals, ncommitted = self.out.pop(key)
                self._out(w, [_wire.CH_DELIVER, key[1], vals, ncommitted])
        self._out(w, frame)

    def deliver(self, w: int, c: BChan, v: bytes, committed: bool) -> None:
        self.deliver_many(w, c, [v], 1 if committed else 0)

    def deliver_many(self, w: int, c: BChan, vals: list[bytes], ncommitted: int = 0) -> None:
        """Batch values for worker w's receivers (the first `ncommitted` of
        them for receivers parked there); `flush_deliveries` sends them."""
        key = (w, c.cid)
        c.active[w] = _monotonic()
        e = self.out.get(key)
        if e is None:
            self.out[key] = [vals, ncommitted]
        else:
            e[0].extend(vals)
            e[1] += ncommitted
        if c.cap:
            c.held[w] = c.held.get(w, 0) + len(vals)

    def flush_deliveries(self) -> None:
        if not self.out:
            return
        out, self.out = self.out, {}
        for (w, cid), (vals, ncommitted) in out.items():
            self._out(w, [_wire.CH_DELIVER, cid, vals, ncommitted])

    def chan(self, cid: int) -> BChan | None:
        return self.chans.get(cid)

    # -- matching ------------------------------------------------------------

    def _next_receiver(self, c: BChan) -> Any:
        """The first live receiver (committed demand or select case), or None."""
        q = c.recvq
        while q:
            r = q[0]
            if type(r) is _Demand:
                if r.n > 0:
                    return r
                q.popleft()
                continue
            if r.sel.done:
                q.popleft()
                continue
            return r
        return None

    def _next_sender(self, c: BChan) -> Any:
        q = c.sendq
        while q:
            s = q[0]
            if type(s) is _SelCase and s.sel.done:
                q.popleft()
                continue
            return s
        return None

    def _give(self, c: BChan, r: Any, v: bytes) -> None:
        """Hand value v to receiver r (head of recvq)."""
        if type(r) is _Demand:
            r.n -= 1
            if r.n == 0:
                c.recvq.popleft()
            if (not c.cap and r.w == self.me and self.local_give is not None
                    and (r.w, c.cid) not in self.out and self.local_give(c.cid, v)):
                return          # Go's send to a waiting receiver: no batch, no frame
            self.deliver(r.w, c, v, True)
        else:
            c.recvq.popleft()
            self._fire_sel(r, v, True)

    def _fire_sel(self, sc: _SelCase, v: Any, ok: Any) -> None:
        sel = sc.sel
        sel.done = True
        self.send(sel.w, [_wire.SELECT_DONE, sel.ticket, sc.idx, v, ok])
        # Its other cases are stale now: sweep a channel when they pile up
        # (they are skipped at the head, but may sit behind live waiters).
        for case in sel.cases:
            c = self.chans.get(case[1]) if case[1] is not None else None
            if c is not None:
                c.stale += 1
                if c.stale > 64 and c.stale * 2 > len(c.recvq) + len(c.sendq):
                    c.sweep()

    def _take_sender(self, c: BChan, into_buf: bool) -> bytes:
        """Pop the head blocking sender, answer it, return its value.

        With into_buf the value is appended to the buffer *before* the credit
        that rides on the answer is computed (else free() counts it twice).
        """
        s = c.sendq.popleft()
        if type(s) is _SelCase:
            v = s.value
            if into_buf:
                c.buf.append(v)
            self._fire_sel(s, None, True)
            return v
        w, ticket, v = s
        if into_buf:
            c.buf.append(v)
        self.send(w, [_wire.CH_SENT, ticket, self._grant(c, w) if c.cap else 0, False])
        return v

    def take_waiting_sender(self, cid: int) -> bytes | None:
        """A receive by this home's own worker on unbuffered channel cid, when
        a plain blocked send is first in line and no receiver waits: Go's
        receive from a waiting sender (`recv` in chan.go). The sender is
        answered, its value returned; None (nothing done) otherwise."""
        c = self.chans.get(cid)
        if c is None or c.cap or c.closed or c.recvq or not c.sendq \
                or type(c.sendq[0]) is not tuple:
            return None
        return self._take_sender(c, False)

    def _grant(self, c: BChan, w: int) -> int:
        """Credit for worker w: about half the capacity while free allows."""
        n = min(c.free(), max(1, c.cap // 2))
        if n <= 0:
            return 0
        c.credits[w] = c.credits.get(w, 0) + n
        return n

    def pump(self, c: BChan) -> None:
        """Move everything that can move now. Called after every change to c."""
        drained = c.ring_on and self.ring_drain(c)
        if c.cap:
            # blocked senders into the buffer while there is room
            while c.sendq and c.free() > 0:
                s = self._next_sender(c)
                if s is None:
                    break
                self._take_sender(c, True)
            # values to receivers: committed first, FIFO
            while c.buf:
                r = self._next_receiver(c)
                if r is None:
                    break
                self._give(c, r, c.take())
            # then speculative prefetch
            if c.buf and c.spec:
                for w in list(c.spec):
                    k = min(c.spec[w], len(c.buf))
                    self.deliver_many(w, c, c.take_many(k))
                    c.spec[w] -= k
                    if not c.spec[w]:
                        del c.spec[w]
                    if not c.buf:
                        break
            # room after all that: blocked senders again, then credit wanters
            while c.sendq and c.free() > 0 and self._next_sender(c) is not None:
                self._take_sender(c, True)
                r = self._next_receiver(c)
                if r is not None:
                    self._give(c, r, c.take())
            if c.want and c.free() > 0 and not c.closed:
                wanters, c.want = c.want, []
                for w in wanters:
                    n = self._grant(c, w)
                    if n:
                        self.send(w, [_wire.CH_CREDIT, c.cid, n])
                    else:
                        c.want.append(w)
        else:
            # unbuffered: rendezvous of a blocked sender with a committed receiver
            while True:
                s = self._next_sender(c)
                if s is None:
                    break
                r = self._next_receiver(c)
                if r is None:
                    break
                if type(s) is _SelCase and type(r) is _SelCase and s.sel is r.sel:
                    # a select cannot rendezvous with itself: look behind the heads
                    if not self._pair_around_self(c, s, r):
                        break
                    continue
                v = self._take_sender(c, False)
                self._give(c, r, v)
        self._maybe_recall_or_drain(c)
        if c.ring_on:
            self._ring_tail(c, drained, False)

    # -- pair rings (docs/design.md §6.9) ----------------------------------------

    def ring_offer(self, c: BChan, w: int) -> None:
        """Lend worker w's ring to channel c if w sends on it with credit and
        the ring is free: the ring is reset and offered (CH_RING)."""
        pool = self.ring_pool
        c.ring_tried = True
        if pool is None or _ring_take is None or w == self.me or w in self.ring_lease \
                or c.closed or not c.cap:
            return
        off = pool.get(w)
        if off is None:
            off = _arena.alloc_ring()
            if off is None:
                return
            pool[w] = off
        for word in (RG_WPOS, RG_NPUT, RG_RPOS, RG_GRANT, RG_HWAIT, RG_PWAIT):
            _store(off + word, 0)
        self.ring_lease[w] = c.cid
        c.ring, c.ring_w, c.ring_on = off, w, False
        c.ring_put0 = c.ring_taken = 0
        self.send(w, [_wire.CH_RING, c.cid, off])

    def ring_drain(self, c: BChan) -> bool:
        """Read what the sender wrote into c's ring: the values join the buffer
        on the sender's credit, as a CH_PUT's do. True if there were any."""
        assert c.ring is not None and _ring_take is not None
        vals = _ring_take(c.ring, len(c.big))
        if not vals:
            return False
        if c.big:
            big = c.big
            vals = [big.popleft() if v is None else v for v in vals]
        n = len(vals)
        c.ring_taken += n
        _less(c.credits, c.ring_w, n)
        c.active[c.ring_w] = _monotonic()
        c.buf.extend(vals)
        return True

    def _ring_tail(self, c: BChan, drained: bool, idle: bool) -> None:
        """After a pump: credit for the ring's sender, waking its waiting
        senders, and asking it for a wake-up if receivers wait for values.

        The sender is topped up to half the capacity whenever it has written
        since the last grant (or waits); its senders are woken once it holds
        half the capacity, or room was made, or this hub is about to idle."""
        r = c.ring
        assert r is not None
        w = c.ring_w
        if not c.closed:
            nput = _load(r + RG_NPUT)
            waiting = _load(r + RG_PWAIT)
            unspent = c.credits.get(w, 0) - (nput - c.ring_taken)
            if nput != c.ring_put0 or waiting:
                n = min(c.free(), max(1, c.cap // 2) - unspent)
                if n > 0:
                    c.credits[w] = c.credits.get(w, 0) + n
                    unspent += n
                    c.ring_put0 = nput
                    _add(r + RG_GRANT, n)       # a full barrier before the load below
            if unspent > 0 and (unspent >= max(1, c.cap // 2) or drained or idle) \
                    and _load(r + RG_PWAIT) and _cas(r + RG_PWAIT, 1, 0):
                self.send(w, [_wire.CH_RING_WAKE, c.cid])
        if not c.buf and self._next_receiver(c) is not None:
            _store(r + RG_HWAIT, 1)
            if _load(r + RG_WPOS) != _load(r + RG_RPOS) and self.ring_drain(c):
                self.pump(c)        # written before the flag was seen: serve it now

    def ring_idle(self) -> None:
        """This hub is about to idle: read the rings, wake senders with credit."""
        for cid in list(self.ring_lease.values()):
            c = self.chans.get(cid)
            if c is not None and c.ring_on:
                drained = self.ring_drain(c)
                if drained:
                    self.pump(c)
                self._ring_tail(c, drained, True)

    def ring_end(self, c: BChan, gseen: int | None) -> None:
        """c stops using its ring (the sender stopped writing: it fenced, let go
        of the channel, or the channel goes away): read what is left and give
        the ring back. Grants the sender never saw (gseen: what it had seen)
        are taken back from its credit."""
        if c.ring is None:
            return
        r = c.ring
        if c.ring_on:
            self.ring_drain(c)
            if gseen is not None:
                unseen = _load(r + RG_GRANT) - gseen
                if unseen > 0:
                    _less(c.credits, c.ring_w, unseen)
        if self.ring_lease.get(c.ring_w) == c.cid:
            del self.ring_lease[c.ring_w]
        c.ring, c.ring_on = None, False

    def _recall_idle(self, c: BChan, workers: dict[int, int], waiting: set[int]) -> None:
        """Recall what idle holders keep (values or credit) while others wait.

        Only from a worker that has not consumed or sent on c for RECALL_IDLE:
        recalled values are received by someone else, possibly after values
        sent later, so a worker still consuming keeps its prefetch (P1).
        """
        now = _monotonic()
        for w, k in workers.items():
            if k <= 0 or w in c.recalling or w in waiting:
                continue
            last = c.active.get(w, 0.0)
            if now - last >= RECALL_IDLE:
                c.recalling.add(w)
                self.send(w, [_wire.CH_RECALL, c.cid])
            else:
                t = last + RECALL_IDLE
                if self.recheck.get(c.cid, t + 1) > t:
                    self.recheck[c.cid] = t

    def _pair_around_self(self, c: BChan, s: Any, r: Any) -> bool:
        """Head sender and head receiver are one select: match it with another
        live receiver or sender queued behind. True if a pair was made."""
        for other in list(c.recvq)[1:]:
            live = (type(other) is _Demand and other.n > 0) or \
                (type(other) is _SelCase and not other.sel.done)
            if live:
                c.sendq.popleft()
                v = s.value
                self._fire_sel(s, None, True)
                if type(other) is _Demand:
                    other.n -= 1
                    if other.n == 0:
                        c.recvq.remove(other)
                    self.deliver(other.w, c, v, True)
                else:
                    c.recvq.remove(other)
                    self._fire_sel(other, v, True)
                return True
        for other in list(c.sendq)[1:]:
            if type(other) is tuple or not other.sel.done:
                c.sendq.remove(other)
                c.recvq.popleft()
                if type(other) is _SelCase:
                    v = other.value
                    self._fire_sel(other, None, True)
                else:
                    w, ticket, v = other
                    self.send(w, [_wire.CH_SENT, ticket, 0, False])
                self._fire_sel(r, v, True)
                return True
        return False

    def _maybe_recall_or_drain(self, c: BChan) -> None:
        if c.cap and (c.sendq or c.want) and c.credits and c.free() <= 0:
            # blocked senders (or senders waiting for a grant) wait for room
            # that idle credit holders keep
            self._recall_idle(c, c.credits, set(c.want))
        if c.buf:
            return
        head = self._next_receiver(c)
        if head is None:
            return
        if c.cap and c.held and not (c.closed and c.sendq) \
                and not (len(c.held) == 1 and type(head) is _Demand and head.w in c.held):
            # (the common case skipped: the one holder is the receiver waiting)
            waiting = {r.w for r in c.recvq if type(r) is _Demand and r.n > 0}
            waiting |= {r.sel.w for r in c.recvq if type(r) is _SelCase and not r.sel.done}
            self._recall_idle(c, c.held, waiting)
        if c.closed and not c.sendq and not c.recalling and not any(c.held.values()):
            # closed and drained: every waiting receiver gets (None, False)
            while c.recvq:
                r = c.recvq.popleft()
                if type(r) is _Demand:
                    if r.n > 0:
                        r.n = 0
                        self.send(r.w, [_wire.CH_DRAINED, c.cid])
                elif not r.sel.done:
                    self._fire_sel(r, None, False)

    # -- select ----------------------------------------------------------------

    def select(self, w: int, ticket: int, cases: list[Any], dflt: int) -> None:
        ready: list[int] = []
        for i, case in enumerate(cases):
            kind, cid = case[0], case[1]
            c = self.chans.get(cid)
            if c is None:
                continue
            if kind == SEND:
                if c.closed or (c.cap and c.free() > 0) or \
                        (not c.cap and self._ready_receiver_not(c, w, ticket)):
                    ready.append(i)
            else:
                if c.buf or self._next_sender(c) is not None or \
                        (c.closed and not any(c.held.values())):
                    ready.append(i)
        if ready:
            i = ready[0] if len(ready) == 1 else ready[self.rand.randrange(len(ready))]
            kind, cid = cases[i][0], cases[i][1]
            c = self.chans[cid]
            if kind == SEND:
                if c.closed:
                    self.send(w, [_wire.SELECT_DONE, ticket, i, None, "closed"])
                    return
                v = cases[i][2]
                if c.cap:
                    c.buf.append(v)
                else:
                    r = self._next_receiver(c)
                    self._give(c, r, v)
                self.send(w, [_wire.SELECT_DONE, ticket, i, None, True])
                self.pump(c)
                return
            if c.buf:
                v = c.take()
            elif self._next_sender(c) is not None:
                v = self._take_sender(c, False)
            else:
                self.send(w, [_wire.SELECT_DONE, ticket, i, None, False])
                return
            self.send(w, [_wire.SELECT_DONE, ticket, i, v, True])
            self.pump(c)
            return
        if dflt >= 0:
            self.send(w, [_wire.SELECT_DONE, ticket, dflt, None, True])
            return
        sel = _Sel(w, ticket, cases)
        chans = []
        for i, case in enumerate(cases):
            kind, cid = case[0], case[1]
            c = self.chans.get(cid)
            if c is None:
                continue
            sc = _SelCase(sel, i, kind, case[2] if kind == SEND else None)
            (c.sendq if kind == SEND else c.recvq).append(sc)
            chans.append(c)
        for c in chans:
            self.pump(c)
            if sel.done:
                break

    def _ready_receiver_not(self, c: BChan, w: int, ticket: int) -> bool:
        r = self._next_receiver(c)
        return r is not None

    # -- close -----------------------------------------------------------------

    def close(self, w: int, ticket: int, c: BChan) -> None:
        if c.closed:
            self.send(w, [_wire.CH_CLOSE_DONE, ticket, False])
            return
        c.closed = True
        wanters = set(c.want)       # senders may wait for this credit: they hear of the close
        c.want.clear()
        # blocked senders raise
        while c.sendq:
            s = c.sendq.popleft()
            if type(s) is _SelCase:
                if not s.sel.done:
                    s.sel.done = True
                    self.send(s.sel.w, [_wire.SELECT_DONE, s.sel.ticket, s.idx, None, "closed"])
            else:
                self.send(s[0], [_wire.CH_SENT, s[1], 0, True])
        # every worker that knows the channel hears of the close; credit holders ack
        holders = {x for x, n in c.credits.items() if n > 0}
        c.close_wait = {"w": w, "ticket": ticket, "left": set(holders)}
        told = set(holders) | set(c.held) | {r.w for r in c.recvq if type(r) is _Demand} | wanters
        if c.ring_on:
            told.add(c.ring_w)      # its senders may wait for ring credit
        for x in told:
            self.send(x, [_wire.CH_CLOSED, c.cid])
        if not holders:
            c.close_wait = None
            self.send(w, [_wire.CH_CLOSE_DONE, ticket, True])
        self.pump(c)

    def closed_ack(self, w: int, c: BChan, credits: int) -> None:
        c.credits.pop(w, None)
        cw = c.close_wait
        if cw is not None:
            cw["left"].discard(w)
            if not cw["left"]:
                c.close_wait = None
                self.send(cw["w"], [_wire.CH_CLOSE_DONE, cw["ticket"], True])
        self.pump(c)

    # -- worker death ------------------------------------------------------------

    def forget_worker(self, w: int) -> None:
        for c in self.chans.values():
            c.credits.pop(w, None)
            c.held.pop(w, None)
            c.spec.pop(w, None)
            c.recalling.discard(w)
            c.want = [x for x in c.want if x != w]
            c.recvq = deque(r for r in c.recvq
                            if not ((type(r) is _Demand and r.w == w)
                                    or (type(r) is _SelCase and r.sel.w == w)))
            c.sendq = deque(s for s in c.sendq
                            if not ((type(s) is _SelCase and s.sel.w == w)
                                    or (type(s) is tuple and s[0] == w)))


# ---------------------------------------------------------------------------
# frame handlers (supervisor loop)
# ---------------------------------------------------------------------------

    # -- frames ----------------------------------------------------------------

    def handle(self, src: int, f: list[Any]) -> None:
        """Apply one channel frame addressed to this home."""
        c = self.chans.get(f[1])
        if c is None:
            if f[0] not in (_wire.CH_RING_ON, _wire.CH_RING_POKE):
                self.pending.setdefault(f[1], []).append((src, f))
            return
        if c.ring_on:
            # what the sender wrote before this frame comes first (P1)
            self.ring_drain(c)
        _DISPATCH[f[0]](self, c, src, f)

    def replay(self, cid: int) -> None:
        """Frames that arrived before the channel did (its PROMOTE or HOME)."""
        for src, f in self.pending.pop(cid, ()):
            if f[0] == _wire.SELECT:
                self.on_select(src, f)
            else:
                self.handle(src, f)

    def on_select(self, src: int, f: list[Any]) -> None:
        ticket, cases, dflt = f[1], f[2], f[3]
        missing = [case[1] for case in cases if case[1] is not None and case[1] not in self.chans]
        if missing:
            # a channel whose PROMOTE has not arrived yet: wait for it, then retry
            self.pending.setdefault(missing[0], []).append((src, f))
            return
        for case in cases:
            c = self.chans.get(case[1]) if case[1] is not None else None
            if c is not None and case[0] != SEND and c.held.get(src, 0) > 0:
                # Values delivered to src are still on their way there (it gave
                # back what it had before this select): they are older than
                # what the buffer holds, and src sends them back on arrival.
                # Settling now could hand src a newer value first (P1).
                c.sel_wait.append((src, f))
                return
        self.select(src, ticket, cases, dflt)

    def _selects_again(self, c: BChan, w: int) -> None:
        """w's values came back: its selects waiting on c are settled now."""
        if not c.sel_wait or c.held.get(w, 0) > 0:
            return
        mine = [x for x in c.sel_wait if x[0] == w]
        c.sel_wait = [x for x in c.sel_wait if x[0] != w]
        for src, f in mine:
            self.on_select(src, f)

    def _f_send(self, c: BChan, src: int, f: list[Any]) -> None:
        ticket, v = f[2], f[3]
        if c.closed:
            self.send(src, [_wire.CH_SENT, ticket, 0, True])
            return
        # (A blocking send never takes a slot of credit granted to its worker:
        # the worker may have spent that credit already, its CH_PUT still on
        # the way — the answer "-1" that did so let a buffer hold cap + 1
        # values and left the worker one credit short of the home's count.)
        if c.cap and c.free() > 0 and not c.sendq:
            c.buf.append(v)
            self.send(src, [_wire.CH_SENT, ticket, self._grant(c, src), False])
        else:
            c.sendq.append((src, ticket, v))
        self.pump(c)

    def _f_trysend(self, c: BChan, src: int, f: list[Any]) -> None:
        if c.closed:
            return
        if c.cap:
            if c.free() > 0:
                c.buf.append(f[2])
        else:
            r = self._next_receiver(c)
            if r is not None:
                self._give(c, r, f[2])
        self.pump(c)

    def _f_ring_on(self, c: BChan, src: int, f: list[Any]) -> None:
        if c.ring is None or src != c.ring_w:
            return
        if f[2]:
            c.ring_on = True
            if src in c.want:
                c.want.remove(src)      # ring grants serve it from now on
            self.pump(c)
        else:
            self.ring_end(c, None)

    def _f_ring_poke(self, c: BChan, src: int, f: list[Any]) -> None:
        self.pump(c)

    def _f_big(self, c: BChan, src: int, f: list[Any]) -> None:
        if c.ring_on and src == c.ring_w:
            c.big.append(f[2])
            self.pump(c)            # its placeholder may be read now
        else:
            self._f_put(c, src, [_wire.CH_PUT, c.cid, [f[2]]])

    def _f_put(self, c: BChan, src: int, f: list[Any]) -> None:
        if not c.ring_tried and self.ring_pool is not None:
            self.ring_offer(c, src)
        vals = f[2]
        c.active[src] = _monotonic()
        _less(c.credits, src, len(vals))
        c.buf.extend(vals)
        self.pump(c)

    def _f_want(self, c: BChan, src: int, f: list[Any]) -> None:
        if not c.ring_tried and self.ring_pool is not None:
            self.ring_offer(c, src)
        if c.closed:
            # its senders may wait for this grant: they learn of the close
            self.send(src, [_wire.CH_CLOSED, c.cid])
            return
        n = self._grant(c, src)
        if n:
            self.send(src, [_wire.CH_CREDIT, c.cid, n])
        elif src not in c.want:
            c.want.append(src)

    def _f_demand(self, c: BChan, src: int, f: list[Any]) -> None:
        dc, ds = f[2], f[3]
        if dc < 0:
            # withdrawn demand (its receivers were served by prefetched values);
            # what was already served is on its way and lands in their cache
            for r in reversed(c.recvq):
                if dc == 0:
                    break
                if type(r) is _Demand and r.w == src and r.n > 0:
                    k = min(r.n, -dc)
                    r.n -= k
                    dc += k
            dc = 0
        if dc:
            q = c.recvq
            if q and type(q[-1]) is _Demand and q[-1].w == src:
                q[-1].n += dc
            else:
                q.append(_Demand(src, dc))
        if ds and c.cap:
            c.spec[src] = c.spec.get(src, 0) + ds
        self.pump(c)

    def _f_consumed(self, c: BChan, src: int, f: list[Any]) -> None:
        c.active[src] = _monotonic()
        _less(c.held, src, f[2])
        self.pump(c)
        self._selects_again(c, src)

    def _f_return(self, c: BChan, src: int, f: list[Any]) -> None:
        vals, credits = f[2], f[3]
        c.recalling.discard(src)
        if len(f) > 4 and f[4]:
            # the worker keeps nothing of this channel any more
            if c.ring is not None and src == c.ring_w:
                self.ring_end(c, None)
            c.give_back(vals)
            c.held.pop(src, None)
            c.credits.pop(src, None)
            c.spec.pop(src, None)
            self.pump(c)
            self._selects_again(c, src)
            return
        if len(f) > 5 and f[5]:
            # no receiver of src is parked: its committed demand is stale
            for r in c.recvq:
                if type(r) is _Demand and r.w == src:
                    r.n = 0
        c.give_back(vals)
        _less(c.held, src, len(vals))
        if credits:
            _less(c.credits, src, credits)
        c.spec.pop(src, None)
        self.pump(c)
        self._selects_again(c, src)

    def _f_close(self, c: BChan, src: int, f: list[Any]) -> None:
        self.close(src, f[2], c)

    def _f_closed_ack(self, c: BChan, src: int, f: list[Any]) -> None:
        self.closed_ack(src, c, f[2])

    def _f_len(self, c: BChan, src: int, f: list[Any]) -> None:
        n = len(c.buf) + sum(c.held.values())
        self.send(src, [_wire.CH_LEN_IS, f[2], n])

    # -- moving a channel between homes (pair mode, §6.7) -----------------------

    def movable(self, c: BChan) -> bool:
        """Whether c's state can travel: no select case and no close in progress."""
        return (not c.closed and c.close_wait is None and not c.recalling
                and not any(type(r) is _SelCase for r in c.recvq)
                and not any(type(s) is _SelCase for s in c.sendq))

    def export(self, cid: int, gseen: int | None = None) -> list[Any]:
        """Remove channel cid from this home and return its state as plain data.
        gseen: the ring grant its sender had seen when it fenced (§6.9)."""
        c = self.chans[cid]
        self.ring_end(c, gseen)
        self.flush_deliveries()
        c = self.chans.pop(cid)
        return [c.cid, c.cap, c.closed, list(c.buf),
                [list(s) for s in c.sendq if type(s) is tuple],
                [[r.w, r.n] for r in c.recvq if type(r) is _Demand and r.n > 0],
                list(c.spec.items()), list(c.credits.items()), list(c.held.items()),
                list(c.want), c.stale]

    def install(self, state: list[Any]) -> BChan:
        """Make this process the home of a channel exported elsewhere."""
        cid, cap, closed, buf, sendq, recvq, spec, credits, held, want, stale = state
        c = BChan(cid, cap)
        c.closed = closed
        c.buf.extend(buf)
        c.sendq.extend(tuple(s) for s in sendq)
        c.recvq.extend(_Demand(w, n) for w, n in recvq)
        c.spec = dict(spec)
        c.credits = dict(credits)
        c.held = dict(held)
        c.want = list(want)
        c.stale = stale
        self.chans[cid] = c
        self.pump(c)
        self.replay(cid)
        return c


_DISPATCH: dict[int, Callable[[Home, BChan, int, list[Any]], None]] = {
    _wire.CH_SEND: Home._f_send,
    _wire.CH_TRYSEND: Home._f_trysend,
    _wire.CH_PUT: Home._f_put,
    _wire.CH_WANT: Home._f_want,
    _wire.CH_DEMAND: Home._f_demand,
    _wire.CH_CONSUMED: Home._f_consumed,
    _wire.CH_RETURN: Home._f_return,
    _wire.CH_CLOSE: Home._f_close,
    _wire.CH_CLOSED_ACK: Home._f_closed_ack,
    _wire.CH_LEN: Home._f_len,
    _wire.CH_RING_ON: Home._f_ring_on,
    _wire.CH_RING_POKE: Home._f_ring_poke,
    _wire.CH_BIG: Home._f_big,
}
DATA_FRAMES = frozenset(_DISPATCH)
