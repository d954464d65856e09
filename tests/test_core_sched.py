"""Unit tests of the single-process scheduler (no fork): `_sched.run_local`."""

from __future__ import annotations

import threading

import pytest

from mpgo import Deadlock, GoroutineError
from mpgo._core import _sched
from mpgo._core._chan import Chan


def spawn(fn, *args):
    g = _sched.new_g(fn, args, None)
    _sched.spawn(g)
    return g


def test_main_value_is_returned():
    assert _sched.run_local(lambda a, b: a + b, 2, 3) == 5


def test_main_exception_propagates_with_its_type():
    def main():
        raise KeyError("boom")
    with pytest.raises(KeyError, match="boom"):
        _sched.run_local(main)


def test_other_goroutine_exception_is_goroutine_error_with_cause():
    def bad():
        raise ValueError("inner")

    def main():
        spawn(bad)
        _sched.sleep(1)

    with pytest.raises(GoroutineError) as ei:
        _sched.run_local(main)
    assert isinstance(ei.value.__cause__, ValueError)


def test_park_and_ready_hand_over_a_value():
    def main():
        me = _sched.current()
        got = []

        def waker():
            _sched.ready(me, "hello")
        spawn(waker)
        got.append(_sched.park("test"))
        return got
    assert _sched.run_local(main) == ["hello"]


def test_gosched_interleaves_fifo():
    order = []

    def worker(name):
        for i in range(3):
            order.append((name, i))
            _sched.gosched()

    def main():
        spawn(worker, "a")
        spawn(worker, "b")
        _sched.sleep(0.01)
    _sched.run_local(main)
    # both ran all their steps and alternated at least once
    assert sorted(order) == [(n, i) for n in "ab" for i in range(3)]
    names = [n for n, _ in order]
    assert names != sorted(names)


def test_sleep_orders_by_deadline():
    woke = []

    def sleeper(d):
        _sched.sleep(d)
        woke.append(d)

    def main():
        for d in (0.03, 0.01, 0.02):
            spawn(sleeper, d)
        _sched.sleep(0.06)
    _sched.run_local(main)
    assert woke == [0.01, 0.02, 0.03]


def test_timer_cancel_prevents_firing():
    fired = []

    def main():
        t = _sched.add_timer(0.01, fired.append, 1)
        assert t.cancel() is True
        assert t.cancel() is False
        _sched.sleep(0.03)
    _sched.run_local(main)
    assert fired == []


def test_greenlets_are_reused_for_short_goroutines():
    created = []
    import greenlet as gl
    real = gl.greenlet

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            created.append(1)
            super().__init__(*a, **k)

    def main():
        for _ in range(200):
            spawn(lambda: None)
            _sched.gosched()
    _sched.greenlet.greenlet = Counting
    try:
        _sched.run_local(main)
    finally:
        _sched.greenlet.greenlet = real
    assert len(created) < 10, f"{len(created)} greenlets for 200 short goroutines"


def test_local_deadlock_is_detected():
    def main():
        Chan().recv()
    with pytest.raises(Deadlock, match="all goroutines are asleep"):
        _sched.run_local(main)


def test_sleeping_goroutine_is_not_a_deadlock():
    def main():
        _sched.sleep(0.02)
        return "woke"
    assert _sched.run_local(main) == "woke"


def test_park_from_foreign_thread_raises_clearly():
    errors = []

    def main():
        ch = Chan(1)

        def thread_body():
            try:
                ch.send(1)
            except RuntimeError as e:
                errors.append(str(e))
        t = threading.Thread(target=thread_body)
        t.start()
        t.join()
        return len(ch)
    assert _sched.run_local(main) == 0
    assert errors and "foreign OS thread" in errors[0]


def test_current_outside_a_goroutine_raises():
    _sched.init()
    with pytest.raises(RuntimeError, match="goroutine"):
        _sched.current()


def test_yielding_loop_does_not_starve_new_goroutines():
    # regression: woken goroutines used to be picked before new ones, so a
    # goroutine yielding in a loop never let a freshly spawned one start
    started = []

    def child(i):
        started.append(i)

    def main():
        for i in range(5):
            spawn(child, i)
        for _ in range(1000):
            if len(started) == 5:
                return True
            _sched.gosched()
        return False
    assert _sched.run_local(main)
