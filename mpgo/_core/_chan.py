"""Local channels (Go's hchan) and select, for goroutines of one worker.

Strategy
--------
A channel starts local: a plain object whose operations are greenlet
hand-offs through `_sched.park`/`ready`, with no serialisation and no syscall.
When it is first pickled it is *promoted* by the runtime (`_remote.py`): its
class is swapped for the proxy class, so every reference in this worker sees
the change at once. The core knows promotion only through `HOOKS`.

Wait queues hold either a parked goroutine (`G`, plain send/recv) or a
`_SelWaiter` (one case of a parked select). A select that fired leaves its
other waiters behind as *stale* entries; they are skipped when met and swept
when they outnumber the live ones (amortised O(1); Go unlinks eagerly).

Invariants (Go's, checked by `_check_invariants` in tests):
* not (live recvq and live sendq), except one select waiting on both
  ends of one unbuffered channel;
* buf non-empty  ⇒ no live receiver waits;
* len(buf) < cap ⇒ no live sender waits.

Who may call: every public operation, any goroutine of the owning worker.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from threading import get_ident
from typing import TYPE_CHECKING, Any

from .._errors import ClosedChannelError
from . import _sched
from ._sched import G, check_thread, park, ready, ready_err

_rand = random.Random()


def seed(n: int | None) -> None:
    """Seed the choices the spec leaves unspecified (select). Tests use it."""
    _rand.seed(n)


class ChanHooks:
    """Plugged in by the runtime: what happens when a channel leaves this worker."""

    def reduce(self, ch: Chan) -> Any:
        raise TypeError("a local mpgo channel cannot be pickled outside a running mpgo runtime")

    def created_outside(self, ch: Chan) -> None:
        """A channel was made outside any goroutine (module level, supervisor)."""

    def select(self, cases: list[tuple[int, Any, Any]], default: int) -> tuple[int, Any]:
        raise TypeError("select on a promoted channel needs the mpgo runtime")


HOOKS = ChanHooks()

# What park returns to a goroutine whose channel was promoted while it was
# parked on it: the operation runs again, on the channel's new (remote) class.
RETRY = object()

# case kinds
RECV, RECV_OK, SEND = 0, 1, 2


class _SelState:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


class _SelWaiter:
    """One case of a parked select, sitting in one channel's queue."""

    __slots__ = ("g", "idx", "kind", "value", "sel")

    def __init__(self, g: G, idx: int, kind: int, value: Any, sel: _SelState) -> None:
        self.g = g
        self.idx = idx
        self.kind = kind
        self.value = value
        self.sel = sel


def _pop_live(q: deque[Any]) -> Any:
    """Pop the first live waiter of q, dropping stale select waiters; None if none."""
    while q:
        w = q.popleft()
        if type(w) is _SelWaiter:
            sel = w.sel
            if sel.done:
                continue
            sel.done = True
        return w
    return None


def _peek_live(q: deque[Any]) -> bool:
    while q:
        w = q[0]
        if type(w) is _SelWaiter and w.sel.done:
            q.popleft()
            continue
        return True
    return False


def _wake_recv(w: Any, v: Any, ok: bool) -> None:
    """Hand value `v` (ok=False: closed) to a live receiving waiter."""
    if type(w) is G:
        w.ok = ok
        ready(w, v)
    elif w.kind == RECV_OK:
        ready(w.g, (w.idx, (v, ok)))
    else:
        ready(w.g, (w.idx, v))


def _wake_send(w: Any) -> Any:
    """Take the value of a live sending waiter and wake it."""
    if type(w) is G:
        v = w.value
        ready(w, None)
        return v
    ready(w.g, (w.idx, None))
    return w.value


class _ChanBasePy:
    """The pure-Python stand-in for `_speedups.ChanBase` (same fields, no fast path)."""

    __slots__ = ("_buf", "_cap", "_recvq", "_sendq", "_closed", "_id", "_r", "_stale")

    def send(self, v: Any) -> None:
        self._send_slow(v)  # type: ignore[attr-defined]

    def recv(self) -> Any:
        return self._recv_slow()[0]  # type: ignore[attr-defined]

    def recv_ok(self) -> tuple[Any, bool]:
        return self._recv_slow()  # type: ignore[attr-defined]

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        v, ok = self._recv_slow()  # type: ignore[attr-defined]
        if not ok:
            raise StopIteration
        return v


if TYPE_CHECKING:
    _ChanBase = _ChanBasePy
else:
    try:
        from .. import _speedups as _sp
        _ChanBase = _sp.ChanBase

        def _on_init(ident: int) -> None:
            _sp.set_thread(ident)
            _sp.set_sched(G, _sched._runq, vars(_sched), RETRY)
        _sched.ON_INIT.append(_on_init)
        _sched.PREEMPT_SETTERS.append(_sp.set_preempt)
    except (ImportError, AttributeError):
        _ChanBase = _ChanBasePy


class Chan(_ChanBase):
    """A Go channel. ``Chan()`` is unbuffered, ``Chan(n)`` buffers n values.

    The same object works in every worker: pass it to `go`, capture it in a
    closure, or send it over another channel. Within one worker the receiver
    gets the very object that was sent; across workers, a copy.

    ``send``, ``recv``, ``recv_ok`` and iteration take a C fast path for the
    buffered, nobody-waiting cases; the full algorithm is `_send_slow` /
    `_recv_slow` below.
    """

    __slots__ = ("__weakref__",)

    def __init__(self, cap: int = 0) -> None:
        if type(cap) is not int:
            if isinstance(cap, bool) or not isinstance(cap, int):
                raise TypeError(f"channel capacity must be an int, not {type(cap).__name__}")
            cap = int(cap)
        if cap < 0:
            raise ValueError(f"channel capacity must be >= 0, got {cap}")
        self._buf: deque[Any] = deque()
        self._cap = cap
        self._recvq: deque[Any] = deque()
        self._sendq: deque[Any] = deque()
        self._closed = False
        self._id = 0
        self._r: Any = None
        self._stale = 0
        if _sched.current_or_none() is None:
            HOOKS.created_outside(self)

    # -- sending -----------------------------------------------------------

    def _send_slow(self, v: Any) -> None:
        """Send `v`; park until a receiver takes it (unbuffered) or there is room.

        Raises `ClosedChannelError` if the channel is closed, also when it is
        closed while this send is parked.
        """
        if get_ident() != _sched._hub_thread:
            check_thread()
        if _sched._preempt:
            _sched.preempt_point()
            # re-dispatch: while we yielded the channel may have been promoted
            # (its class changed), and this method's state is no longer its own
            self.send(v)
            return
        if self._closed:
            raise ClosedChannelError("send on closed channel")
        if self._recvq:
            w = _pop_live(self._recvq)
            if w is not None:
                _wake_recv(w, v, True)
                return
        buf = self._buf
        if len(buf) < self._cap:
            buf.append(v)
            return
        g = _sched._cur
        g.value = v  # type: ignore[union-attr]
        q = self._sendq
        q.append(g)
        g.waitq = q  # type: ignore[union-attr]
        r = park("chan send")
        g.waitq = None  # type: ignore[union-attr]
        if r is RETRY:
            self.send(v)   # the channel's class changed: its own send

    # -- receiving ---------------------------------------------------------

    def _recv_slow(self) -> tuple[Any, bool]:
        if get_ident() != _sched._hub_thread:
            check_thread()
        if _sched._preempt:
            _sched.preempt_point()
            return self.recv_ok()           # re-dispatch, as in _send_slow
        buf = self._buf
        if buf:
            v = buf.popleft()
            if self._sendq:
                w = _pop_live(self._sendq)
                if w is not None:
                    buf.append(_wake_send(w))
            return v, True
        if self._sendq:
            w = _pop_live(self._sendq)
            if w is not None:
                return _wake_send(w), True
        if self._closed:
            return None, False
        g = _sched._cur
        q = self._recvq
        q.append(g)
        g.waitq = q  # type: ignore[union-attr]
        v = park("chan receive")
        g.waitq = None  # type: ignore[union-attr]
        if v is RETRY:
            return self._recv_slow()
        return v, g.ok  # type: ignore[union-attr]

    _recv = _recv_slow

    if _ChanBase is _ChanBasePy and not TYPE_CHECKING:
        send = _send_slow

    def __iter__(self) -> Iterator[Any]:
        """Receive until the channel is closed and drained (``for v in ch``)."""
        return self

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        """Close. Parked receivers get ``(None, False)`` once the buffer is drained;
        parked senders raise `ClosedChannelError`. Closing twice raises it too."""
        check_thread()
        if self._closed:
            raise ClosedChannelError("close of closed channel")
        self._closed = True
        rq, sq = self._recvq, self._sendq
        self._recvq, self._sendq = deque(), deque()
        while rq:
            w = _pop_live(rq)
            if w is not None:
                _wake_recv(w, None, False)
        while sq:
            w = _pop_live(sq)
            if w is not None:
                g = w if type(w) is G else w.g
                ready_err(g, ClosedChannelError("send on closed channel"))

    # -- inspection ------------------------------------------------------------

    def __len__(self) -> int:
        """Values buffered now."""
        return len(self._buf)

    @property
    def cap(self) -> int:
        """The capacity (0: unbuffered)."""
        return self._cap

    @property
    def closed(self) -> bool:
        """Whether `close` was called (a snapshot)."""
        return self._closed

    def __repr__(self) -> str:
        where = "local" if type(self) is Chan else "promoted"
        state = " closed" if self._closed else ""
        return f"<mpgo.Chan cap={self._cap} len={len(self)} {where}{state}>"

    def __reduce__(self) -> Any:
        return HOOKS.reduce(self)


def _check_invariants(ch: Chan) -> None:
    """Assert Go's hchan invariants (tests call this)."""
    live_r = sum(1 for w in ch._recvq if not (type(w) is _SelWaiter and w.sel.done))
    live_s = sum(1 for w in ch._sendq if not (type(w) is _SelWaiter and w.sel.done))
    if live_r and live_s:
        gr = {(w if type(w) is G else w.g) for w in ch._recvq}
        gs = {(w if type(w) is G else w.g) for w in ch._sendq}
        assert ch._cap == 0 and gr == gs and len(gr) == 1, "recvq and sendq both non-empty"
    if ch._buf:
        assert not live_r, "buffered values while receivers wait"
    if len(ch._buf) < ch._cap:
        assert not live_s, "free buffer space while senders wait"


class _NilChan:
    """The nil channel: send and receive block forever; select never picks it."""

    __slots__ = ()

    def send(self, v: Any) -> None:
        check_thread()
        park("chan send (nil chan)")

    def recv(self) -> Any:
        check_thread()
        park("chan receive (nil chan)")

    def recv_ok(self) -> tuple[Any, bool]:
        check_thread()
        park("chan receive (nil chan)")
        return None, False

    def close(self) -> None:
        raise ClosedChannelError("close of nil channel")

    def __len__(self) -> int:
        return 0

    @property
    def cap(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Any]:
        self.recv()
        yield from ()

    def __repr__(self) -> str:
        return "mpgo.nilchan"

    def __reduce__(self) -> str:
        return "nilchan"


nilchan = _NilChan()


class _Default:
    __slots__ = ()

    def __repr__(self) -> str:
        return "mpgo.default"

    def __reduce__(self) -> str:
        return "default"


default = _Default()

# (the C fast paths of a promoted channel's send and recv are named _rc_*)
_KINDS = {"recv": RECV, "recv_ok": RECV_OK, "send": SEND, "_rc_recv": RECV, "_rc_send": SEND}


def _case_of(c: Any) -> tuple[int, Any] | None:
    """(kind, channel) of a bound ch.recv / ch.recv_ok / ch.send, else None.

    Works for Python and C bound methods alike; a nil-channel case has None.
    """
    ch = getattr(c, "__self__", None)
    if isinstance(ch, Chan):
        kind = _KINDS.get(getattr(c, "__name__", ""))
        return None if kind is None else (kind, ch)
    if ch is nilchan:
        kind = _KINDS.get(getattr(c, "__name__", ""))
        return None if kind is None else (kind, None)
    return None


def parse_cases(cases: tuple[Any, ...]) -> tuple[list[tuple[int, Any, Any]], int]:
    """Turn select's arguments into [(kind, chan-or-None, value)] and the default index.

    A nil-channel case has chan None (never ready). Raises TypeError/ValueError
    naming the bad case.
    """
    out: list[tuple[int, Any, Any]] = []
    dflt = -1
    for i, c in enumerate(cases):
        if c is default:
            if dflt >= 0:
                raise ValueError("select: more than one mpgo.default case")
            dflt = i
            out.append((-1, None, None))
            continue
        if type(c) is tuple:
            if len(c) != 2:
                raise TypeError(f"select case {i}: a send case is (ch.send, value), got {c!r}")
            kc = _case_of(c[0])
            if kc is None or kc[0] != SEND:
                raise TypeError(
                    f"select case {i}: a tuple case must be (ch.send, value), got {c!r}")
            out.append((SEND, kc[1], c[1]))
            continue
        kc = _case_of(c)
        if kc is None:
            raise TypeError(
                f"select case {i}: expected ch.recv, ch.recv_ok, (ch.send, value) or "
                f"mpgo.default, got {c!r}")
        if kc[0] == SEND:
            raise TypeError(f"select case {i}: a send case must be written (ch.send, value)")
        out.append((kc[0], kc[1], None))
    return out, dflt


def select(*cases: Any) -> tuple[int, Any]:
    """Go's select: returns (index, value) of the one case that proceeded.

    Any goroutine. `value` is what a receive case got (``(v, ok)`` for
    ``recv_ok``), None for a send case or `default`.
    """
    check_thread()
    parsed, dflt = parse_cases(cases)
    while True:
        for _kind, ch, _v in parsed:
            if ch is not None and type(ch) is not Chan:
                return HOOKS.select(parsed, dflt)
        r = select_local(parsed, dflt)
        if r is not RETRY:
            return r


def _ready_case(kind: int, ch: Chan) -> bool:
    if kind == SEND:
        return ch._closed or _peek_live(ch._recvq) or len(ch._buf) < ch._cap
    return bool(ch._buf) or _peek_live(ch._sendq) or ch._closed


def _fire(idx: int, kind: int, ch: Chan, v: Any) -> tuple[int, Any]:
    """Perform case idx, known ready. No parking."""
    if kind == SEND:
        if ch._closed:
            raise ClosedChannelError("send on closed channel")
        w = _pop_live(ch._recvq)
        if w is not None:
            _wake_recv(w, v, True)
        else:
            ch._buf.append(v)
        return idx, None
    buf = ch._buf
    if buf:
        val = buf.popleft()
        w = _pop_live(ch._sendq)
        if w is not None:
            buf.append(_wake_send(w))
        ok = True
    else:
        w = _pop_live(ch._sendq)
        if w is not None:
            val, ok = _wake_send(w), True
        else:
            val, ok = None, False
    return idx, ((val, ok) if kind == RECV_OK else val)


def select_local(parsed: list[tuple[int, Any, Any]], dflt: int) -> tuple[int, Any]:
    """Go's selectgo on channels that are all local. Any goroutine."""
    # Pass 1: which cases can proceed now? Single-threaded, so the state cannot
    # change between this check and acting on the chosen case.
    ready_idx = [i for i, (kind, ch, _v) in enumerate(parsed)
                 if ch is not None and _ready_case(kind, ch)]
    if ready_idx:
        i = ready_idx[0] if len(ready_idx) == 1 else ready_idx[int(_rand.random() * len(ready_idx))]
        kind, ch, v = parsed[i]
        return _fire(i, kind, ch, v)
    if dflt >= 0:
        return dflt, None
    g = _sched.current()
    live = [(i, k, ch, v) for i, (k, ch, v) in enumerate(parsed) if ch is not None]
    if not live:
        # Go: `select {}` parks as "select (no cases)"; a select whose cases are
        # all nil channels parks as a plain "select".
        park("select" if parsed else "select (no cases)")
        raise AssertionError("unreachable")
    # Pass 2: enqueue on every channel, then park.
    sel = _SelState()
    for i, kind, ch, v in live:
        w = _SelWaiter(g, i, kind, v, sel)
        (ch._sendq if kind == SEND else ch._recvq).append(w)
    g.sel = sel
    try:
        result = park("select")
    finally:
        g.sel = None
    # Pass 3: the other waiters are stale now; sweep a channel when they pile up.
    for _i, _kind, ch, _v in live:
        ch._stale += 1
        if ch._stale > 32:
            _sweep(ch)
    return result


def _sweep(ch: Chan) -> None:
    ch._stale = 0
    for name in ("_recvq", "_sendq"):
        q = getattr(ch, name)
        if any(type(w) is _SelWaiter and w.sel.done for w in q):
            setattr(ch, name, deque(w for w in q
                                    if not (type(w) is _SelWaiter and w.sel.done)))


def after_fire(ch: Chan, value: Any) -> None:
    """Timer callback for `after`/`Ticker`: a non-blocking send (hub only)."""
    if type(ch) is not Chan:
        ch.timer_send(value)  # type: ignore[attr-defined]
        return
    if ch._closed:
        return
    w = _pop_live(ch._recvq)
    if w is not None:
        _wake_recv(w, value, True)
    elif len(ch._buf) < ch._cap:
        ch._buf.append(value)
