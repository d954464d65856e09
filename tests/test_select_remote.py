"""select across worker processes: cases whose channels are promoted.

In the style of Go's runtime/chan_test.go (TestSelectFairness,
TestNonblockSelectRace, TestSelectStress) and test/chan/select*.go, with the
goroutines at the other ends placed in another worker so the select is
settled at the broker (docs/design.md §6.6). Promise pinned: P6 (exactly one
case fires, uniform choice among the ready ones, never `default` when a case
was ready), with P1 (nothing lost or duplicated) and P4/P5 (closed and nil
channels in a select).

Every test runs under the leak check of conftest.py.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

import mpgo
from mpgo import ClosedChannelError, default, nilchan, select
from mpgo.testing import go_on

BASE = 1_000_000

xfail = pytest.mark.xfail


# ---------------------------------------------------------------------------
# helpers (module level: they travel to the other worker by reference)
# ---------------------------------------------------------------------------

def _spawn_all(w, specs):
    if mpgo.worker_id() != w:             # stolen before it started: send it back
        return go_on(w, _spawn_all, w, specs).join()
    return [mpgo.go_local(fn, *args) for fn, args in specs]


def place(*specs):
    """Start (worker, fn, *args) goroutines pinned to their workers; handles in order.

    `go_on` places a record but an idle worker may still steal it before it
    starts (seen under load); a spawner that checks where it runs and then
    `go_local`s the goroutines pins them.
    """
    me = mpgo.worker_id()
    handles = [None] * len(specs)
    for w in sorted({s[0] for s in specs}):
        idx = [i for i, s in enumerate(specs) if s[0] == w]
        batch = [(specs[i][1], specs[i][2:]) for i in idx]
        hs = _spawn_all(w, batch) if w == me else go_on(w, _spawn_all, w, batch).join()
        for i, h in zip(idx, hs, strict=True):
            handles[i] = h
    return handles


def on(w, fn, *args):
    """One goroutine, pinned to worker w."""
    return place((w, fn, *args))[0]


def send_seq(ch, tag, n, close=False):
    for i in range(n):
        ch.send(tag * BASE + i)
    if close:
        ch.close()
    return mpgo.worker_id()


def recv_all(ch):
    return mpgo.worker_id(), list(ch)


def hold(ch, stop):
    """Keep `ch` known in this worker (promoted) until `stop` is closed; never use it."""
    stop.recv()
    return mpgo.worker_id()


def never_ready(stop):
    """A promoted channel on which nothing is ever sent or received."""
    ch = mpgo.Chan()
    place((1, hold, ch, stop))
    return ch


def fill(ch, n):
    for i in range(n):
        ch.send(i)
    return mpgo.worker_id()


def close_after(ch, delay):
    mpgo.sleep(delay)
    ch.close()
    return mpgo.worker_id()


# ---------------------------------------------------------------------------
# exactly one case fires; nothing lost
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_select_over_two_remote_streams_receives_each_value_exactly_once():
    n = 300

    def main():
        a, b = mpgo.Chan(), mpgo.Chan(8)
        place((1, send_seq, a, 0, n, True), (1, send_seq, b, 1, n, True))
        got = {0: [], 1: []}
        chans = [a, b]
        while True:
            i, (v, ok) = select(a.recv_ok, b.recv_ok)
            if not ok:
                break
            got[i].append(v)
        got[1 - i] += list(chans[1 - i])        # the other one, until it closes too
        return got
    got = mpgo.run(main, workers=2)
    assert got[0] == [i for i in range(n)]
    assert got[1] == [BASE + i for i in range(n)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cap", [0, 4])
def test_select_with_send_and_recv_cases_fires_exactly_one_each_time(cap):
    n = 200

    def main():
        out, inp = mpgo.Chan(cap), mpgo.Chan(cap)
        r, s = place((1, recv_all, out), (1, send_seq, inp, 7, n, True))
        sent, got = 0, []
        while sent < n:
            i, v = select((out.send, sent), inp.recv_ok)
            if i == 0:
                sent += 1
            elif v[1]:
                got.append(v[0])
            else:
                break
        for k in range(sent, n):              # inp closed first: finish plainly
            out.send(k)
        got += list(inp)                      # or out was done first
        out.close()
        return r.join(), s.join(), got
    (rw, received), sw, got = mpgo.run(main, workers=2)
    assert (rw, sw) == (1, 1)
    assert received == list(range(n)), "a send case fired without its value arriving (or twice)"
    assert got == [7 * BASE + i for i in range(n)]


def send_one_each(a, b, rounds, go_sig):
    for _ in range(rounds):
        go_sig.recv()
        mpgo.go_local(a.send, "a")
        mpgo.go_local(b.send, "b")
    return mpgo.worker_id()


@pytest.mark.timeout(60)
def test_parked_select_takes_one_value_and_leaves_the_other():
    # Two senders in another worker become ready at once while main is parked in
    # select: one case fires, the other value stays in its channel.
    rounds = 40

    def main():
        a, b = mpgo.Chan(), mpgo.Chan()
        go_sig = mpgo.Chan()
        (g,) = place((1, send_one_each, a, b, rounds, go_sig))
        firsts = []
        for _ in range(rounds):
            go_sig.send(None)
            i, v = select(a.recv, b.recv)
            firsts.append(v)
            other = b if v == "a" else a
            rest = other.recv()               # the other value was not consumed
            assert {v, rest} == {"a", "b"}
        g.join()
        return firsts
    firsts = mpgo.run(main, workers=2)
    assert len(firsts) == rounds


def recv_after(ch, delay, n):
    out = []
    for _ in range(n):
        mpgo.sleep(delay)                 # the select is parked at the broker by then
        out.append(ch.recv())
    return mpgo.worker_id(), out


def send_after(ch, delay, n):
    for i in range(n):
        mpgo.sleep(delay)
        ch.send(i)
    return mpgo.worker_id()


@pytest.mark.timeout(60)
def test_select_send_and_recv_on_same_unbuffered_channel_sends_to_other_worker():
    # A select never rendezvouses with itself: the receiver in worker 1, which
    # arrives while the select waits, takes the value.
    def main():
        c = mpgo.Chan()
        r = on(1, recv_after, c, 0.1, 3)
        sends = [select((c.send, i), c.recv) for i in range(3)]
        return sends, r.join()
    assert mpgo.run(main, workers=2) == ([(0, None)] * 3, (1, [0, 1, 2]))


@pytest.mark.timeout(60)
def test_select_send_and_recv_on_same_unbuffered_channel_receives_from_other_worker():
    def main():
        d = mpgo.Chan()
        s = on(1, send_after, d, 0.1, 3)
        recvs = [select((d.send, -1), d.recv) for _ in range(3)]
        return recvs, s.join()
    assert mpgo.run(main, workers=2) == ([(1, 0), (1, 1), (1, 2)], 1)


@pytest.mark.timeout(60)
def test_select_send_and_recv_on_same_unbuffered_channel_partner_already_waiting():
    # The partner in worker 1 is parked before the select arrives.
    def main():
        c = mpgo.Chan()
        r = on(1, recv_all, c)
        mpgo.sleep(0.1)
        first = select((c.send, "to r"), c.recv)
        c.close()
        d = mpgo.Chan()
        s = on(1, send_seq, d, 3, 1)
        mpgo.sleep(0.1)
        second = select((d.send, -1), d.recv)
        return first, r.join(), second, s.join()
    assert mpgo.run(main, workers=2) == ((0, None), (1, ["to r"]), (1, 3 * BASE), 1)


def select_stress_sender(chans, n):
    cnt = [0] * len(chans)
    while True:
        live = [i for i in range(len(chans)) if cnt[i] < n]     # (Go sets the rest to nil)
        if not live:
            return mpgo.worker_id()
        j, _ = select(*[(chans[i].send, i * BASE + 500_000 + cnt[i]) for i in live])
        cnt[live[j]] += 1


def select_stress_receiver(chans, n):
    cnt = [0] * len(chans)
    got = []
    while True:
        live = [i for i in range(len(chans)) if cnt[i] < n]
        if not live:
            return mpgo.worker_id(), got
        j, v = select(*[chans[i].recv for i in live])
        cnt[live[j]] += 1
        got.append(v)


def plain_sender(ch, k, n):
    for j in range(n):
        ch.send(k * BASE + j)
    return mpgo.worker_id()


def plain_receiver(ch, n):
    return mpgo.worker_id(), [ch.recv() for _ in range(n)]


@pytest.mark.timeout(60)
def test_select_stress_across_workers():
    # Go's TestSelectStress, scaled down: per channel a plain sender, a plain
    # receiver, and a select sender and select receiver over all channels.
    n = 150
    caps = (0, 2, 3, 10)

    def main():
        chans = [mpgo.Chan(c) for c in caps]
        specs = []
        for k, c in enumerate(chans):
            specs.append((1, plain_sender, c, k, n))
            specs.append((0, plain_receiver, c, n))
        specs.append((0, select_stress_sender, chans, n))
        specs.append((1, select_stress_receiver, chans, n))
        gs = place(*specs)
        return [g.join() for g in gs]
    res = mpgo.run(main, workers=2)
    received = []
    for r in res:
        if isinstance(r, tuple):
            received += r[1]
    want = [k * BASE + j for k in range(4) for j in range(n)]
    want += [k * BASE + 500_000 + j for k in range(4) for j in range(n)]
    assert Counter(received) == Counter(want)


# ---------------------------------------------------------------------------
# fairness (P6)
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("extra", [False, True], ids=["two", "with-never-ready"])
def test_select_fairness_between_ready_promoted_channels(extra):
    # Go's TestSelectFairness: two always-ready channels (filled from worker 1),
    # optionally among never-ready ones.
    trials = 2000

    def main():
        stop = mpgo.Chan()
        # room to spare: filling a buffer to the brim is test_chan_remote's business
        c1, c2 = mpgo.Chan(4 * trials), mpgo.Chan(4 * trials)
        for g in place((1, fill, c1, trials + 1), (1, fill, c2, trials + 1)):
            g.join()
        cases = [c1.recv, c2.recv]
        if extra:
            cases = [never_ready(stop).recv, never_ready(stop).recv] + cases
        counts = Counter()
        for _ in range(trials):
            i, _v = select(*cases)
            counts[i] += 1
        stop.close()
        return counts, len(cases)
    counts, k = mpgo.run(main, workers=2)
    a, b = counts[k - 2], counts[k - 1]
    assert a + b == trials, f"a never-ready case fired: {counts}"
    assert 0.35 * trials <= a <= 0.65 * trials, f"unfair choice: {a} vs {b}"


def fill_both(c1, c2, n):
    for i in range(n):
        c1.send(i)
        c2.send(i)
    return mpgo.worker_id()


@pytest.mark.timeout(60)
def test_select_fairness_in_worker_that_also_receives_plainly():
    # The selecting worker has prefetched values of one channel (a plain recv
    # first): the choice must still be uniform among the ready cases.
    trials = 1500

    def main():
        c1, c2 = mpgo.Chan(4 * trials), mpgo.Chan(4 * trials)
        place((1, fill_both, c1, c2, trials + 10))[0].join()
        c1.recv()
        counts = Counter()
        for _ in range(trials):
            i, _v = select(c1.recv, c2.recv)
            counts[i] += 1
        return counts
    counts = mpgo.run(main, workers=2)
    assert 0.35 * trials <= counts[0] <= 0.65 * trials, f"unfair choice: {counts}"


# ---------------------------------------------------------------------------
# default (P6: never taken when a case was ready)
# ---------------------------------------------------------------------------

def nonblock_server(pairs, done):
    n = 0
    for c1, c2 in pairs:
        i, _v = select(c1.recv, c2.recv, default)
        done.send(i != 2)
        n += 1
    return mpgo.worker_id(), n


@pytest.mark.timeout(60)
def test_nonblock_select_race_never_takes_default_when_a_case_is_ready():
    # Go's TestNonblockSelectRace, with the racing goroutine in another worker.
    n = 100

    def main():
        pairs, done = mpgo.Chan(), mpgo.Chan()
        (g,) = place((1, nonblock_server, pairs, done))
        bad = 0
        for _ in range(n):
            c1, c2 = mpgo.Chan(1), mpgo.Chan(1)
            c1.send(1)
            pairs.send((c1, c2))
            c2.send(1)
            select(c1.recv, c2.recv, default)
            if not done.recv():
                bad += 1
        pairs.close()
        return bad, g.join()
    assert mpgo.run(main, workers=2) == (0, (1, n))


def nonblock_server2(pairs, done):
    n = 0
    for c1, c2 in pairs:
        i, _v = select(c1.recv, c2.recv, default)
        done.send(i != 2)
        n += 1
    return n


@pytest.mark.timeout(60)
def test_nonblock_select_race_with_closed_channel():
    # Go's TestNonblockSelectRace2: a closed channel is always ready.
    n = 100

    def main():
        pairs, done = mpgo.Chan(), mpgo.Chan()
        (g,) = place((1, nonblock_server2, pairs, done))
        bad = 0
        for _ in range(n):
            c1, c2 = mpgo.Chan(1), mpgo.Chan()
            c1.send(1)
            pairs.send((c1, c2))
            c2.close()
            select(c1.recv, c2.recv, default)
            if not done.recv():
                bad += 1
        pairs.close()
        return bad, g.join()
    assert mpgo.run(main, workers=2) == (0, n)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cap", [0, 4])
def test_nonblocking_select_never_loses_a_value_from_another_worker(cap):
    n = 300

    def main():
        ch = mpgo.Chan(cap)
        (g,) = place((1, send_seq, ch, 0, n, True))
        got, defaults = [], 0
        while True:
            i, v = select(ch.recv_ok, default)
            if i == 1:
                defaults += 1
                mpgo.gosched()
                continue
            if not v[1]:
                break
            got.append(v[0])
        return got, defaults, g.join()
    got, defaults, where = mpgo.run(main, workers=2)
    assert where == 1
    assert got == list(range(n))


@pytest.mark.timeout(60)
def test_default_is_taken_when_no_promoted_case_is_ready():
    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        out = [select(never.recv, default), select((never.send, 1), default),
               select(never.recv_ok, (never.send, 2), default)]
        stop.close()
        return out
    assert mpgo.run(main, workers=2) == [(1, None), (1, None), (2, None)]


# ---------------------------------------------------------------------------
# mixing local and promoted channels; send cases
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_select_mixing_a_local_and_a_promoted_channel():
    n = 200

    def main():
        local, remote = mpgo.Chan(), mpgo.Chan()
        mpgo.go_local(send_seq, local, 0, n, True)    # never pickled by us
        place((1, send_seq, remote, 1, n, True))
        got = {0: [], 1: []}
        chans = [local, remote]
        while True:
            i, (v, ok) = select(local.recv_ok, remote.recv_ok)
            if not ok:
                break
            got[i].append(v)
        got[1 - i] += list(chans[1 - i])
        return got
    got = mpgo.run(main, workers=2)
    assert got[0] == list(range(n))
    assert got[1] == [BASE + i for i in range(n)]


@pytest.mark.timeout(60)
def test_ready_local_case_fires_when_promoted_case_never_does():
    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        out = []
        for i in range(20):
            local = mpgo.Chan(1)
            local.send(i)
            out.append(select(never.recv, local.recv))
        stop.close()
        return out
    assert mpgo.run(main, workers=2) == [(1, i) for i in range(20)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cap", [0, 16])
def test_select_send_case_to_receiver_in_other_worker(cap):
    n = 200

    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        ch = mpgo.Chan(cap)
        (r,) = place((1, recv_all, ch))
        idx = [select(never.recv, (ch.send, i))[0] for i in range(n)]
        ch.close()
        stop.close()
        return idx, r.join()
    idx, (w, got) = mpgo.run(main, workers=2)
    assert idx == [1] * n
    assert w == 1 and got == list(range(n))


def slow_receiver(ch, events, delay):
    mpgo.sleep(delay)
    events.send("receiving")
    v = ch.recv()
    return mpgo.worker_id(), v


@pytest.mark.timeout(60)
def test_select_send_on_unbuffered_waits_for_the_receiver():
    def main():
        ch, events = mpgo.Chan(), mpgo.Chan(2)
        (r,) = place((1, slow_receiver, ch, events, 0.3))
        i, _ = select((ch.send, "x"), mpgo.after(10).recv)
        # the receiver announced itself before it took the value (happens-before)
        n = len(events)
        return i, n, events.recv(), r.join()
    assert mpgo.run(main, workers=2) == (0, 1, "receiving", (1, "x"))


# ---------------------------------------------------------------------------
# timeouts
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_select_after_timeout_fires_while_promoted_case_never_does():
    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        res = []
        for case in (never.recv, never.recv_ok, (never.send, 1)):
            t0 = time.monotonic()
            i, v = select(case, mpgo.after(0.05).recv)
            res.append((i, type(v).__name__, time.monotonic() - t0))
        stop.close()
        return res
    res = mpgo.run(main, workers=2)
    for i, typ, took in res:
        assert (i, typ) == (1, "float")
        assert 0.045 <= took < 2.0, took


@pytest.mark.timeout(60)
def test_select_timeout_does_not_steal_a_late_value():
    # A value that arrives after the timeout fired stays in the channel.
    def late_sender(ch, delay):
        mpgo.sleep(delay)
        ch.send("late")
        return mpgo.worker_id()

    def main():
        ch = mpgo.Chan()
        (g,) = place((1, late_sender, ch, 0.2))
        i, _ = select(ch.recv, mpgo.after(0.05).recv)
        v = ch.recv()
        return i, v, g.join()
    assert mpgo.run(main, workers=2) == (1, "late", 1)


# ---------------------------------------------------------------------------
# closed and nil channels
# ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_select_on_closed_promoted_channel():
    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        ch = mpgo.Chan(3)
        ch.send("left")
        on(1, close_after, ch, 0).join()          # promoted and closed in worker 1
        out = [select(ch.recv_ok, never.recv),         # drains the buffered value first
               select(ch.recv_ok, never.recv),
               select(never.recv, ch.recv)]
        with pytest.raises(ClosedChannelError):
            select((ch.send, 1), never.recv)
        stop.close()
        return out
    assert mpgo.run(main, workers=2) == [(0, ("left", True)), (0, (None, False)), (1, None)]


@pytest.mark.timeout(60)
def test_closed_promoted_channel_is_ready_so_default_is_not_taken():
    def main():
        ch = mpgo.Chan(3)
        ch.send("left")
        on(1, close_after, ch, 0).join()
        out = [select(ch.recv_ok, default), select(ch.recv_ok, default)]
        with pytest.raises(ClosedChannelError):
            select((ch.send, 1), default)
        return out
    assert mpgo.run(main, workers=2) == [(0, ("left", True)), (0, (None, False))]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cap", [0, 2])
def test_close_in_other_worker_wakes_a_parked_select(cap):
    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        ch = mpgo.Chan(cap)
        place((1, close_after, ch, 0.2))
        t0 = time.monotonic()
        r = select(never.recv, ch.recv_ok)
        took = time.monotonic() - t0
        stop.close()
        return r, took
    r, took = mpgo.run(main, workers=2)
    assert r == (1, (None, False))
    assert took < 2.0


@pytest.mark.timeout(60)
def test_close_in_other_worker_fails_a_select_parked_on_send():
    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        ch = mpgo.Chan()
        place((1, close_after, ch, 0.2))
        try:
            select(never.recv, (ch.send, 1))
        except ClosedChannelError:
            out = "raised"
        else:
            out = "sent"
        stop.close()
        return out
    assert mpgo.run(main, workers=2) == "raised"


@pytest.mark.timeout(60)
def test_nil_channel_case_never_fires_beside_a_promoted_channel():
    n = 50

    def main():
        ch = mpgo.Chan()
        (g,) = place((1, send_seq, ch, 0, n, True))
        out = []
        while True:
            i, v = select(nilchan.recv, (nilchan.send, 0), ch.recv_ok)
            if not v[1]:
                break
            out.append((i, v[0]))
        g.join()
        return out
    assert mpgo.run(main, workers=2) == [(2, i) for i in range(50)]


@pytest.mark.timeout(60)
def test_nil_channel_with_promoted_channel_and_default_or_timeout():
    def main():
        stop = mpgo.Chan()
        never = never_ready(stop)
        a = select(nilchan.recv, never.recv, default)
        t0 = time.monotonic()
        b = select(nilchan.recv, never.recv, mpgo.after(0.05).recv)[0]
        took = time.monotonic() - t0
        stop.close()
        return a, b, took
    a, b, took = mpgo.run(main, workers=2)
    assert a == (2, None) and b == 2
    assert took < 2.0


@pytest.mark.timeout(60)
def test_select_on_nil_and_abandoned_promoted_channel_is_a_deadlock():
    # P5: blocks forever, and the deadlock detector says so.
    def main():
        ch = mpgo.Chan()
        on(1, lambda c: None, ch).join()       # promoted; nobody will ever send
        select(nilchan.recv, ch.recv)
    t0 = time.monotonic()
    with pytest.raises(mpgo.Deadlock, match="select"):
        mpgo.run(main, workers=2)
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------------------
# P19: what selects leave behind, in every process. The supervisor is this
# process: the probe counts its objects when main returns (Supervisor.finish).
# ---------------------------------------------------------------------------

def gc_objects():
    import gc
    gc.collect()
    return len(gc.get_objects())


@pytest.fixture
def supervisor_objects(monkeypatch):
    from mpgo._runtime import _supervisor
    seen: list[int] = []
    orig = _supervisor.Supervisor.finish

    def finish(self, kind, value):
        if self.outcome is None:
            seen.append(gc_objects())
        return orig(self, kind, value)
    monkeypatch.setattr(_supervisor.Supervisor, "finish", finish)
    return seen


def trickle(ch, n, delay):
    for i in range(n):
        mpgo.sleep(delay)
        ch.send(i)
    return mpgo.worker_id()


def growth(run_once, seen, small, large):
    """Objects gained per extra iteration, per process: (supervisor, w0, w1)."""
    a = run_once(small)
    b = run_once(large)
    per = [(y - x) / (large - small) for x, y in zip(a + [seen[0]], b + [seen[1]],
                                                       strict=True)]
    return per[2], per[0], per[1]


@pytest.mark.timeout(60)
def test_fired_selects_leave_no_waiters_behind_a_parked_receiver(supervisor_objects):
    # Each select parks on ch (where a plain receiver waits for good) and on
    # `other`, then `other` fires: its case on ch is stale and must not stay.
    def run_once(n):
        def main():
            ch, other = mpgo.Chan(), mpgo.Chan()
            on(1, ch.recv)                        # parked for good
            s = on(1, trickle, other, n, 0.001)
            for _ in range(n):
                i, _v = select(ch.recv, other.recv)
                assert i == 1
            s.join()
            return [gc_objects(), on(1, gc_objects).join()]
        return mpgo.run(main, workers=2)
    per = growth(run_once, supervisor_objects, 100, 500)
    assert max(per) < 1.0, f"objects kept per select (supervisor, w0, w1): {per}"


@pytest.mark.timeout(60)
def test_select_loop_with_timeouts_keeps_every_process_bounded(supervisor_objects):
    # A server loop `select(jobs.recv, after(t).recv)`: every iteration makes a
    # timer channel that is promoted; none may outlive its select for long.
    def run_once(n):
        def main():
            stop = mpgo.Chan()
            never = never_ready(stop)
            for _ in range(n):
                i, _v = select(never.recv, mpgo.after(0).recv)
                assert i == 1
            out = [gc_objects(), on(1, gc_objects).join()]
            stop.close()
            return out
        return mpgo.run(main, workers=2)
    per = growth(run_once, supervisor_objects, 100, 600)
    assert max(per) < 1.0, f"objects kept per select (supervisor, w0, w1): {per}"


def _send_n_close(ch, n):
    for i in range(n):
        ch.send(i)
    ch.close()


@pytest.mark.timeout(60)
def test_one_receiver_switching_from_recv_to_select_keeps_the_senders_order():
    # Go: one receiver sees one sender's values in order, however it receives
    # them. Values prefetched for its plain receives go back to the home for
    # the select; values still on their way come back behind them, and
    # committed demand of receivers already served must not take one first.
    # (Before: 10, 14, 15, 16, 17, 11, 12, 13 in every run.)
    n, rounds = 20, 15

    def main():
        out = []
        for _ in range(rounds):
            ch = mpgo.Chan(64)
            on(1, _send_n_close, ch, n)
            got = [ch.recv() for _ in range(n // 2)]
            while True:
                i, v = select(ch.recv_ok, mpgo.after(10).recv)
                assert i == 0, "the select timed out"
                v, ok = v
                if not ok:
                    break
                got.append(v)
            out.append(got)
        return out
    for got in mpgo.run(main, workers=2):
        assert got == list(range(n))
