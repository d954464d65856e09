"""Unit tests of local channels and select (one scheduler, no fork).

In the style of Go's runtime/chan_test.go and test/chan/*.go.
"""

from __future__ import annotations

import pytest

from mpgo import ClosedChannelError, default, nilchan, select
from mpgo._core import _chan, _sched
from mpgo._core._chan import Chan, _check_invariants

run = _sched.run_local


def go(fn, *args):
    g = _sched.new_g(fn, args, None)
    _sched.spawn(g)
    return g


def test_unbuffered_send_waits_for_a_receiver():
    events = []

    def main():
        ch = Chan()

        def sender():
            ch.send(1)
            events.append("sent")
        go(sender)
        _sched.sleep(0.01)
        events.append("before recv")
        assert ch.recv() == 1
        _sched.gosched()
        return events
    assert run(main) == ["before recv", "sent"]


@pytest.mark.parametrize("cap", [0, 1, 10, 1000])
def test_values_arrive_in_order_exactly_once(cap):
    n = 3000

    def main():
        ch = Chan(cap)

        def producer():
            for i in range(n):
                ch.send(i)
            ch.close()
        go(producer)
        return list(ch)
    assert run(main) == list(range(n))


def test_buffered_capacity_is_exact():
    def main():
        ch = Chan(3)
        sent = []

        def producer():
            for i in range(10):
                ch.send(i)
                sent.append(i)
        go(producer)
        _sched.sleep(0.01)
        assert sent == [0, 1, 2]            # blocked on the 4th
        assert len(ch) == 3 and ch.cap == 3
        _check_invariants(ch)
        assert ch.recv() == 0
        _sched.sleep(0.01)
        assert sent == [0, 1, 2, 3]
        _check_invariants(ch)
        return [ch.recv() for _ in range(9)]
    assert run(main) == list(range(1, 10))


def test_many_senders_and_receivers_multiset():
    def main():
        ch = Chan(5)
        out = Chan(100)

        def producer(base):
            for i in range(200):
                ch.send(base + i)

        def consumer():
            got = []
            while True:
                v, ok = ch.recv_ok()
                if not ok:
                    break
                got.append(v)
            out.send(got)
        for p in range(4):
            go(producer, p * 1000)
        for _ in range(3):
            go(consumer)
        _sched.sleep(0.05)
        ch.close()
        allv = []
        for _ in range(3):
            part = out.recv()
            # per-sender FIFO within each receiver's stream
            for p in range(4):
                mine = [v for v in part if p * 1000 <= v < p * 1000 + 200]
                assert mine == sorted(mine)
            allv += part
        return sorted(allv)
    assert run(main) == sorted(p * 1000 + i for p in range(4) for i in range(200))


def test_close_semantics():
    def main():
        ch = Chan(2)
        ch.send(1)
        ch.close()
        with pytest.raises(ClosedChannelError):
            ch.send(2)
        with pytest.raises(ClosedChannelError):
            ch.close()
        assert ch.recv_ok() == (1, True)
        assert ch.recv_ok() == (None, False)
        assert ch.recv() is None
        return True
    assert run(main)


def test_close_wakes_parked_receivers_and_fails_parked_senders():
    def main():
        ch = Chan()
        results = Chan(10)

        def receiver():
            results.send(("r", ch.recv_ok()))

        def sender():
            try:
                ch.send(1)
                results.send(("s", "sent"))
            except ClosedChannelError:
                results.send(("s", "closed"))
        for _ in range(2):
            go(receiver)
        _sched.sleep(0.01)
        ch.close()
        got = [results.recv() for _ in range(2)]
        ch2 = Chan()
        ch = ch2
        return got

    assert run(main) == [("r", (None, False))] * 2

    def main2():
        ch = Chan()
        results = Chan(10)

        def sender():
            try:
                ch.send(1)
                results.send("sent")
            except ClosedChannelError:
                results.send("closed")
        for _ in range(3):
            go(sender)
        _sched.sleep(0.01)
        ch.close()
        return [results.recv() for _ in range(3)]
    assert run(main2) == ["closed"] * 3


def test_nil_channel_blocks_forever_and_select_skips_it():
    def main():
        i, _ = select(nilchan.recv, (nilchan.send, 1), default)
        assert i == 2
        with pytest.raises(ClosedChannelError):
            nilchan.close()
        nilchan.recv()
    with pytest.raises(Exception, match="deadlock"):
        run(main)


def test_empty_select_blocks_forever():
    def main():
        select()
    with pytest.raises(Exception, match="deadlock"):
        run(main)


def test_select_picks_the_ready_case_and_default_only_when_none():
    def main():
        a, b = Chan(1), Chan(1)
        assert select(a.recv, b.recv, default) == (2, None)
        b.send("x")
        assert select(a.recv, b.recv, default) == (1, "x")
        assert select(a.recv_ok, (b.send, "y"), default) == (1, None)
        assert b.recv() == "y"
        a.close()
        assert select(a.recv_ok, b.recv) == (0, (None, False))
        return True
    assert run(main)


def test_select_send_on_closed_raises():
    def main():
        a = Chan(1)
        a.close()
        with pytest.raises(ClosedChannelError):
            select((a.send, 1))
        return True
    assert run(main)


def test_select_fairness_is_uniform():
    n = 4000

    def main():
        a, b, c = Chan(n), Chan(n), Chan(n)
        for i in range(n):
            a.send(i)
            b.send(i)
            c.send(i)
        counts = [0, 0, 0]
        for _ in range(n):
            i, _v = select(a.recv, b.recv, c.recv)
            counts[i] += 1
        return counts
    counts = run(main)
    # each ~1333; 6 sigma ~ 180
    for k in counts:
        assert abs(k - n / 3) < 200, counts


def test_blocking_select_wakes_on_one_case_only():
    def main():
        a, b = Chan(), Chan()
        res = Chan(1)

        def selector():
            res.send(select(a.recv, b.recv))
        go(selector)
        _sched.sleep(0.01)
        b.send("B")
        r = res.recv()
        # the waiter left on `a` is stale: a send on a must not be taken by it
        i, _ = select((a.send, "A"), default)
        _check_invariants(a)
        return r, i
    assert run(main) == ((1, "B"), 1)


def test_select_with_send_and_recv_on_same_unbuffered_channel_does_not_self_match():
    def main():
        ch = Chan()
        res = Chan(1)

        def selector():
            res.send(select(ch.recv, (ch.send, 1)))
        go(selector)
        _sched.sleep(0.01)
        _check_invariants(ch)
        assert ch.recv() == 1
        return res.recv()
    assert run(main) == (1, None)


def test_stale_select_waiters_are_swept():
    def main():
        done = Chan()
        work = Chan(1)
        for i in range(500):
            work.send(i)
            select(done.recv, work.recv)
        return len(done._recvq)
    assert run(main) <= 40


def test_bad_cases_raise_typeerror_naming_the_case():
    def main():
        ch = Chan()
        with pytest.raises(TypeError, match="case 1"):
            select(ch.recv, 42)
        with pytest.raises(TypeError, match="send case"):
            select(ch.send)
        with pytest.raises(ValueError, match="more than one"):
            select(ch.recv, default, default)
        return True
    assert run(main)


def test_channel_of_channels():
    def main():
        reqs = Chan()

        def server():
            for reply in reqs:
                reply.send("pong")
        go(server)
        out = []
        for _ in range(3):
            r = Chan()
            reqs.send(r)
            out.append(r.recv())
        reqs.close()
        return out
    assert run(main) == ["pong"] * 3


def test_capacity_validation():
    with pytest.raises(ValueError):
        Chan(-1)
    with pytest.raises(TypeError):
        Chan("3")  # type: ignore[arg-type]


def test_after_fire_is_non_blocking():
    def main():
        ch = Chan(1)
        _chan.after_fire(ch, 1)
        _chan.after_fire(ch, 2)      # dropped: full
        return ch.recv(), len(ch)
    assert run(main) == (1, 0)
