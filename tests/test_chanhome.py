"""The channel home's algorithm (`_chanhome.Home`) and the pair-ring C
functions, driven frame by frame in one process: exact capacity and credit
accounting in interleavings that are rare between real workers."""

from __future__ import annotations

import pytest

from mpgo._runtime._chanhome import (
    RG_GRANT,
    RG_HWAIT,
    RG_NPUT,
    RG_PWAIT,
    RG_RPOS,
    RG_WPOS,
    BChan,
    Home,
)
from mpgo._transport import _arena, _wire
from mpgo._transport._atomic import load, store

sp = pytest.importorskip("mpgo._speedups")

SENDER = 1


def _home(me=0, rings=False):
    out = []
    h = Home(me, lambda dst, frame: out.append((dst, frame)))
    if rings:
        h.ring_pool = {}
    return h, out


def _chan(h, cap, cid=7):
    c = BChan(cid, cap)
    h.chans[cid] = c
    return c


def _used(c):
    return len(c.buf) + sum(c.held.values()) + sum(c.credits.values())


def test_a_blocking_send_never_takes_a_slot_of_credit_its_worker_may_have_spent():
    # Two goroutines of worker 1 send with no credit at once. The first answer
    # grants a slot, which the worker spends (CH_PUT) before the second answer
    # reaches it. The second send must wait for room: taking the granted slot
    # ("the worker's credit is in flight") buffered cap + 1 values.
    h, out = _home()
    c = _chan(h, 2)
    h.handle(SENDER, [_wire.CH_SEND, 7, 1, b"a"])
    h.handle(SENDER, [_wire.CH_SEND, 7, 2, b"b"])
    h.handle(SENDER, [_wire.CH_PUT, 7, [b"c"]])
    assert len(c.buf) <= c.cap, f"{len(c.buf)} values buffered, capacity {c.cap}"
    assert _used(c) <= c.cap
    answers = {f[1]: f[2] for _, f in out if f[0] == _wire.CH_SENT}
    assert answers.get(1) == 1                   # accepted, one slot granted
    assert 2 not in answers or answers[2] >= 0   # never "take one of your credits"
    # a receiver frees room: the waiting send goes in, nothing is lost
    h.handle(0, [_wire.CH_DEMAND, 7, 3, 0])
    h.handle(0, [_wire.CH_CONSUMED, 7, 2])
    h.flush_deliveries()
    got = [v for _, f in out if f[0] == _wire.CH_DELIVER for v in f[2]]
    assert got == [b"a", b"c", b"b"]
    assert 2 in {f[1] for _, f in out if f[0] == _wire.CH_SENT}, "the waiting send was never answered"


# -- the pair ring's C functions -------------------------------------------------

@pytest.fixture
def ring():
    off = _arena.alloc_ring()
    if off is None:
        pytest.skip("no pair ring left in this arena")
    for w in (RG_WPOS, RG_NPUT, RG_RPOS, RG_GRANT, RG_HWAIT, RG_PWAIT):
        store(off + w, 0)
    return off


def test_ring_entries_come_out_in_order_across_the_wrap(ring):
    data = _arena.RING_BYTES - 256
    sent, got = [], []
    for i in range(3 * data // 100):
        b = bytes([i % 256]) * (i % 97)
        assert sp.ring_put(ring, b) == 1
        sent.append(b)
        if i % 7 == 6:
            got += sp.ring_take(ring, 0)
    got += sp.ring_take(ring, 0)
    assert got == sent
    assert load(ring + RG_WPOS) == load(ring + RG_RPOS) > data   # wrapped


def test_a_full_ring_refuses_and_a_read_makes_room(ring):
    big = b"x" * sp.RING_BIG
    n = 0
    while sp.ring_put(ring, big) == 1:
        n += 1
    assert n == (_arena.RING_BYTES - 256) // (sp.RING_BIG + 4)
    assert sp.ring_put(ring, big) == 0               # nothing written
    assert len(sp.ring_take(ring, 0)) == n
    assert sp.ring_put(ring, big) == 1
    with pytest.raises(ValueError):
        sp.ring_put(ring, big + b"x")                # over an entry's bound


def test_a_placeholder_stops_the_reader_until_its_value_is_there(ring):
    assert sp.ring_put(ring, b"1") == 1
    assert sp.ring_put(ring, None) == 1
    assert sp.ring_put(ring, b"3") == 1
    assert sp.ring_take(ring, 0) == [b"1"]
    assert sp.ring_take(ring, 1) == [None, b"3"]


def test_a_write_after_the_home_asked_reports_the_wake_up_once(ring):
    store(ring + RG_HWAIT, 1)
    assert sp.ring_put(ring, b"a") == 2
    assert load(ring + RG_HWAIT) == 0
    assert sp.ring_put(ring, b"b") == 1


# -- a home that lends a ring ------------------------------------------------------

def _lent(h, out, cap):
    """A channel homed at h whose sender (SENDER) asked for credit: the home
    lends it the ring, the sender accepts. (channel, ring, credit granted by
    frame before the ring)"""
    c = _chan(h, cap)
    h.handle(SENDER, [_wire.CH_WANT, 7])             # a sender with credit: lend
    ring = [f for _, f in out if f[0] == _wire.CH_RING]
    assert ring, "the home did not lend its ring"
    off = ring[0][2]
    h.handle(SENDER, [_wire.CH_RING_ON, 7, True])
    return c, off, sum(f[2] for _, f in out if f[0] == _wire.CH_CREDIT)


def _write(off, n):
    """The sender writes values 0..n-1 into the ring (one byte each)."""
    for i in range(n):
        assert sp.ring_put(off, bytes([i])) == 1


def test_ring_values_join_the_buffer_on_the_senders_credit_and_credit_comes_back():
    h, out = _home(rings=True)
    c, off, granted = _lent(h, out, 8)
    _write(off, granted)
    h.handle(0, [_wire.CH_DEMAND, 7, 0, 8])          # the home's own receiver asks
    h.flush_deliveries()
    got = [v for _, f in out if f[0] == _wire.CH_DELIVER for v in f[2]]
    assert got == [bytes([i]) for i in range(granted)]
    assert _used(c) <= c.cap
    h.handle(0, [_wire.CH_CONSUMED, 7, granted])
    assert load(off + RG_GRANT) > 0, "room made by the receiver was not granted through the ring"
    assert _used(c) <= c.cap


def test_a_waiting_ring_sender_is_woken_when_credit_is_granted():
    h, out = _home(rings=True)
    c, off, granted = _lent(h, out, 4)
    _write(off, granted)
    c.held[0] = 4 - granted                        # the home's receiver holds the rest
    h.handle(SENDER, [_wire.CH_RING_POKE, 7])     # read; no room yet
    store(off + RG_PWAIT, 1)                        # the sender waits for credit
    out.clear()
    h.handle(0, [_wire.CH_CONSUMED, 7, 4 - granted])
    h.ring_idle()                                   # the hub is about to idle
    assert [f for _, f in out if f[0] == _wire.CH_RING_WAKE], "the waiting sender was not woken"
    assert load(off + RG_PWAIT) == 0


def test_grants_the_sender_never_saw_are_taken_back_when_the_ring_ends():
    h, out = _home(rings=True)
    c, off, msg = _lent(h, out, 8)
    _write(off, msg)
    h.handle(SENDER, [_wire.CH_RING_POKE, 7])
    h.handle(0, [_wire.CH_DEMAND, 7, 0, 8])
    h.handle(0, [_wire.CH_CONSUMED, 7, msg])
    g = load(off + RG_GRANT)
    assert g > 0
    # the sender fenced having seen none of the ring's grants
    state = h.export(7, 0)
    credits = dict(state[7])
    assert credits.get(SENDER, 0) == 0, f"unseen grants kept as the sender's credit: {credits}"
    assert SENDER not in h.ring_lease
