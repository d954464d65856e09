"""The user-facing test helpers: mpgo.testing.run and the pytest marker."""

from __future__ import annotations

import pytest

import mpgo
from mpgo.testing import LeakedGoroutines, go_on, run

pytestmark = pytest.mark.timeout(60)


def test_run_returns_value():
    assert run(lambda: 41 + 1, workers=2) == 42


def test_run_reports_deadlock_with_dump_instead_of_hanging():
    def main():
        mpgo.Chan().recv()
    with pytest.raises(mpgo.Deadlock) as ei:
        run(main, workers=2, timeout=20)
    assert "all goroutines are asleep - deadlock!" in str(ei.value)
    assert "[chan receive" in str(ei.value)


def test_run_times_out_with_the_goroutines_stacks():
    def spinner():
        while True:
            mpgo.sleep(0.01)

    def main():
        spinner()
    with pytest.raises(TimeoutError) as ei:
        run(main, workers=1, timeout=0.5)
    assert "spinner" in str(ei.value)


def test_run_reports_goroutines_that_outlive_main():
    def forever(ch):
        ch.recv()

    def main():
        ch = mpgo.Chan()
        go_on(1, forever, ch)
        mpgo.sleep(0.05)
    with pytest.raises(LeakedGoroutines) as ei:
        run(main, workers=2)
    assert "forever" in str(ei.value) and "chan receive" in str(ei.value)


def test_no_leak_report_when_goroutines_finish():
    def main():
        gs = [mpgo.go(sum, range(10)) for _ in range(5)]
        return [g.join() for g in gs]
    assert run(main, workers=2) == [45] * 5


@pytest.mark.mpgo(workers=2, timeout=20)
def test_marker_runs_the_body_as_main_goroutine():
    assert mpgo.num_workers() == 2
    ch = mpgo.Chan()
    g = go_on(1, lambda c: [c.send(i) for i in range(3)] and None, ch)
    assert [ch.recv() for _ in range(3)] == [0, 1, 2]
    g.join()


@pytest.mark.mpgo(workers=1)
def test_marker_passes_fixtures(tmp_path):
    assert tmp_path.exists() and mpgo.worker_id() == 0
