"""Contexts across workers, in the style of Go's context tests.

Real forked workers (2); every test runs under the leak check.
"""

from __future__ import annotations

import pickle
import time

import pytest

import mpgo
from mpgo import _context
from mpgo.testing import go_on

pytestmark = pytest.mark.timeout(60)

# the public names, whether or not the facade exports them yet
background = getattr(mpgo, "background", _context.background)
with_cancel = getattr(mpgo, "with_cancel", _context.with_cancel)
with_timeout = getattr(mpgo, "with_timeout", _context.with_timeout)
with_deadline = getattr(mpgo, "with_deadline", _context.with_deadline)


def _run_on(w, fn, *args):
    if mpgo.worker_id() != w:           # stolen before it started: send it back
        return go_on(w, _run_on, w, fn, *args).join()
    return fn(*args)


def _on_worker_1(fn, *args):
    """Start fn so that it surely runs on worker 1 (`go_on` places a record,
    but an idle worker may steal it before it starts)."""
    return go_on(1, _run_on, 1, fn, *args)


def _closed(ch, wait: float = 0.05) -> bool:
    """Whether a receive on ch proceeds (within `wait`) with (None, False)."""
    i, v = mpgo.select(ch.recv_ok, mpgo.after(wait).recv)
    return i == 0 and v == (None, False)


def test_background_is_never_done():
    def main():
        ctx = background()
        i, _ = mpgo.select(ctx.done().recv, mpgo.after(0.05).recv)
        return ctx.done() is mpgo.nilchan, ctx.err(), ctx.deadline(), i
    assert mpgo.run(main, workers=2) == (True, None, None, 1)


def test_cancel_closes_done_sets_err_and_is_idempotent():
    def main():
        ctx, cancel = with_cancel(background())
        before = (ctx.err(), _closed(ctx.done()))
        cancel()
        cancel()
        cancel()
        return before, type(ctx.err()), _closed(ctx.done()), str(ctx.err())
    before, err, closed, text = mpgo.run(main, workers=2)
    assert before == (None, False)
    assert err is mpgo.Canceled and closed
    assert text == "context canceled"


def test_err_is_an_instance_of_the_public_error_classes():
    def main():
        c1, cancel1 = with_cancel(background())
        c2, cancel2 = with_timeout(background(), 0)
        cancel1()
        cancel2()
        return c1.err(), c2.err()
    e1, e2 = mpgo.run(main, workers=2)
    assert isinstance(e1, mpgo.Canceled) and not isinstance(e1, mpgo.DeadlineExceeded)
    assert isinstance(e2, mpgo.DeadlineExceeded)


def test_children_are_cancelled_with_their_parent_not_the_reverse():
    def main():
        parent, cancel_p = with_cancel(background())
        child, cancel_c = with_cancel(parent)
        grandchild, cancel_g = with_cancel(child)
        sibling, cancel_s = with_cancel(parent)
        cancel_s()
        after_sibling = (parent.err(), child.err())
        cancel_p()
        for c in (child, grandchild):
            c.done().recv()
        cancel_c()
        cancel_g()
        return after_sibling, type(child.err()), type(grandchild.err())
    after_sibling, child_err, grand_err = mpgo.run(main, workers=2)
    assert after_sibling == (None, None)
    assert child_err is mpgo.Canceled and grand_err is mpgo.Canceled


def test_child_of_a_cancelled_parent_is_born_cancelled():
    def main():
        parent, cancel = with_cancel(background())
        cancel()
        child, _ = with_cancel(parent)
        timed, _ = with_timeout(parent, 10)
        return type(child.err()), _closed(child.done()), type(timed.err())
    assert mpgo.run(main, workers=2) == (mpgo.Canceled, True, mpgo.Canceled)


def test_with_timeout_fires_with_deadline_exceeded():
    def main():
        t0 = time.monotonic()
        ctx, cancel = with_timeout(background(), 0.2)
        d = ctx.deadline()
        ctx.done().recv()
        dt = time.monotonic() - t0
        err = ctx.err()
        cancel()                      # after the deadline: changes nothing
        return dt, type(err), type(ctx.err()), d - time.time()
    dt, err, err_after, d_left = mpgo.run(main, workers=2)
    assert 0.19 <= dt < 1.0
    assert err is mpgo.DeadlineExceeded and err_after is mpgo.DeadlineExceeded
    assert d_left < 0


def test_cancel_before_the_deadline_gives_canceled_and_stops_the_timer():
    def main():
        from mpgo._core import _sched
        ctx, cancel = with_timeout(background(), 30)
        cancel()
        mpgo.sleep(0.02)               # the watcher sees it and stops the timer
        return type(ctx.err()), _sched.pending_timers()
    assert mpgo.run(main, workers=2) == (mpgo.Canceled, 0)


def test_zero_or_negative_timeout_is_already_exceeded():
    def main():
        a, _ = with_timeout(background(), 0)
        b, _ = with_timeout(background(), -5)
        return type(a.err()), type(b.err()), _closed(a.done())
    assert mpgo.run(main, workers=2) == (mpgo.DeadlineExceeded, mpgo.DeadlineExceeded, True)


def test_child_keeps_the_earlier_deadline_of_its_parent():
    def main():
        parent, cancel_p = with_timeout(background(), 0.15)
        child, cancel_c = with_timeout(parent, 60)
        later, cancel_l = with_deadline(parent, time.time() + 60)
        plain, cancel_x = with_cancel(parent)
        same = child.deadline() == parent.deadline() == later.deadline() == plain.deadline()
        t0 = time.monotonic()
        child.done().recv()
        plain.done().recv()
        dt = time.monotonic() - t0
        for c in (cancel_p, cancel_c, cancel_l, cancel_x):
            c()
        return same, type(child.err()), type(plain.err()), dt
    same, err, err_plain, dt = mpgo.run(main, workers=2)
    assert same
    assert err is mpgo.DeadlineExceeded and err_plain is mpgo.DeadlineExceeded
    assert dt < 1.0


def test_a_child_deadline_does_not_cancel_the_parent():
    def main():
        parent, cancel_p = with_cancel(background())
        child, _ = with_timeout(parent, 0.05)
        child.done().recv()
        err = parent.err()
        cancel_p()
        return type(child.err()), err
    assert mpgo.run(main, workers=2) == (mpgo.DeadlineExceeded, None)


def _wait_done(ctx, started):
    """In another worker: block in select on ctx.done(); report when it woke."""
    started.send(mpgo.worker_id())
    i, _ = mpgo.select(ctx.done().recv, mpgo.after(10).recv)
    return i, time.monotonic(), type(ctx.err()), mpgo.worker_id()


def test_cancellation_crosses_workers_promptly():
    def main():
        ctx, cancel = with_cancel(background())
        started = mpgo.Chan(1)
        g = _on_worker_1(_wait_done, ctx, started)
        where = started.recv()
        mpgo.sleep(0.05)                 # it is parked in select now
        t0 = time.monotonic()
        cancel()
        i, woke, err, wid = g.join()
        return where, i, woke - t0, err, wid
    where, i, latency, err, wid = mpgo.run(main, workers=2)
    assert where == 1 and wid == 1
    assert i == 0 and err is mpgo.Canceled
    assert latency < 0.5


def _child_waits_in_worker(parent, started):
    child, cancel = with_cancel(parent)
    started.send(mpgo.worker_id())
    child.done().recv()
    t = time.monotonic()
    cancel()
    return t, type(child.err()), mpgo.worker_id()


def test_child_made_in_another_worker_is_cancelled_with_its_parent():
    def main():
        parent, cancel = with_cancel(background())
        started = mpgo.Chan(3)
        gs = [_on_worker_1(_child_waits_in_worker, parent, started) for _ in range(3)]
        wids = [started.recv() for _ in gs]
        mpgo.sleep(0.05)
        t0 = time.monotonic()
        cancel()
        out = [g.join() for g in gs]
        return wids, [(t - t0, err, wid) for t, err, wid in out]
    wids, out = mpgo.run(main, workers=2)
    assert wids == [1, 1, 1]
    for latency, err, wid in out:
        assert err is mpgo.Canceled and wid == 1
        assert latency < 0.5


def _cancel_from_here(cancel, ready):
    ready.recv()
    cancel()
    return mpgo.worker_id()


def test_cancel_func_pickles_and_cancels_from_another_worker():
    def main():
        ctx, cancel = with_cancel(background())
        child, cancel_child = with_cancel(ctx)
        ready = mpgo.Chan()
        g = _on_worker_1(_cancel_from_here, cancel, ready)
        ready.send(None)
        child.done().recv()           # the grandparent's cancellation reached us
        cancel_child()
        return g.join(), type(ctx.err()), type(child.err())
    assert mpgo.run(main, workers=2) == (1, mpgo.Canceled, mpgo.Canceled)


def _deadline_in_worker(ctx):
    ctx.done().recv()
    return time.time() - ctx.deadline(), type(ctx.err()), mpgo.worker_id()


def test_deadline_reaches_a_goroutine_in_another_worker():
    def main():
        ctx, cancel = with_timeout(background(), 0.2)
        r = _on_worker_1(_deadline_in_worker, ctx).join()
        cancel()
        return r
    late, err, wid = mpgo.run(main, workers=2)
    assert wid == 1 and err is mpgo.DeadlineExceeded
    assert -0.01 <= late < 0.5


def _racing_cancel(cancel, go_ch):
    go_ch.recv()
    cancel()
    return mpgo.worker_id()


def test_concurrent_cancels_in_two_workers_both_return_with_done_closed():
    def main():
        out = []
        for _ in range(10):
            ctx, cancel = with_cancel(background())
            go_ch = mpgo.Chan()
            gs = [go_on(0, _racing_cancel, cancel, go_ch),
                  _on_worker_1(_racing_cancel, cancel, go_ch)]
            go_ch.close()
            out.append(sorted(g.join() for g in gs))
            assert _closed(ctx.done())
            assert isinstance(ctx.err(), mpgo.Canceled)
        return out
    assert mpgo.run(main, workers=2) == [[0, 1]] * 10


def test_watchers_end_with_their_context():
    def main():
        base = mpgo.num_goroutine()
        parent, cancel_p = with_cancel(background())
        cancels = [with_cancel(parent)[1] for _ in range(20)]
        cancels += [with_timeout(background(), 30)[1] for _ in range(20)]
        grew = mpgo.num_goroutine() - base
        for c in cancels:
            c()
        cancel_p()
        for _ in range(100):
            if mpgo.num_goroutine() == base:
                break
            mpgo.sleep(0.01)
        return grew, mpgo.num_goroutine() - base
    grew, left = mpgo.run(main, workers=2)
    assert grew == 40
    assert left == 0


def test_context_round_trips_through_pickle_in_a_goroutine():
    def main():
        ctx, cancel = with_timeout(background(), 30)
        copy = pickle.loads(pickle.dumps(ctx))
        cancel_copy = pickle.loads(pickle.dumps(cancel))
        cancel_copy()
        return type(copy.err()), type(ctx.err()), copy.deadline() == ctx.deadline(), \
            pickle.loads(pickle.dumps(background())) is background()
    assert mpgo.run(main, workers=2) == (mpgo.Canceled, mpgo.Canceled, True, True)


def test_bad_arguments():
    def main():
        errs = []
        for call in (lambda: with_cancel(None), lambda: with_timeout("x", 1),
                     lambda: with_deadline(background(), float("nan"))):
            try:
                call()
            except (TypeError, ValueError) as e:
                errs.append(type(e))
        return errs
    assert mpgo.run(main, workers=2) == [TypeError, TypeError, ValueError]


def test_with_cancel_outside_a_goroutine_raises():
    with pytest.raises(RuntimeError):
        with_cancel(background())
