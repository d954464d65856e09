"""Integration tests of the runtime: real forked workers, real ZeroMQ sockets.

Every test runs under the leak check of conftest.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import mpgo
from mpgo import GoroutineError, RemoteException
from mpgo.testing import go_on


def spin(n):
    s = 0
    for i in range(n):
        s += i
    return s


def where():
    return mpgo.worker_id()


def test_run_returns_main_value_and_passes_arguments():
    assert mpgo.run(lambda a, b=0: a * 10 + b, 4, b=2, workers=2) == 42


def test_run_main_is_goroutine_1_on_worker_0():
    def main():
        return mpgo.worker_id(), mpgo.num_workers()
    assert mpgo.run(main, workers=3) == (0, 3)


class MyError(Exception):
    pass


def test_main_exception_keeps_its_type_and_remote_traceback():
    def main():
        raise MyError("from main")
    with pytest.raises(MyError, match="from main") as ei:
        mpgo.run(main, workers=1)
    assert "Traceback" in str(ei.value.__cause__)


def test_goroutine_exception_is_fatal_goroutine_error():
    def bad():
        raise ZeroDivisionError("bad division")

    def main():
        mpgo.go(bad)
        mpgo.sleep(10)
    with pytest.raises(GoroutineError) as ei:
        mpgo.run(main, workers=2)
    assert isinstance(ei.value.__cause__, ZeroDivisionError)
    assert "bad division" in str(ei.value)
    assert "Traceback" in ei.value.remote_traceback


def test_unpicklable_exception_arrives_as_text():
    class Unpicklable(Exception):
        def __init__(self, msg):
            super().__init__(msg)
            self.lock = threading.Lock()

    def bad():
        raise Unpicklable("cannot pickle me")

    def main():
        go_on(1, bad)
        mpgo.sleep(10)
    with pytest.raises(GoroutineError) as ei:
        mpgo.run(main, workers=2)
    cause = ei.value.__cause__
    assert isinstance(cause, RemoteException)
    assert "cannot pickle me" in str(cause)


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
def test_systemexit_in_goroutine_is_reported_not_silent(exc):
    def bad():
        raise exc(3)

    def main():
        go_on(1, bad)
        mpgo.sleep(10)
    with pytest.raises(GoroutineError) as ei:
        mpgo.run(main, workers=2)
    assert isinstance(ei.value.__cause__, exc)


def test_join_returns_values_from_every_worker():
    def main():
        gs = [mpgo.go(spin, 300_000) for _ in range(12)]
        return [g.join() for g in gs]
    assert mpgo.run(main, workers=2) == [spin(300_000)] * 12


def test_cpu_bound_goroutines_spread_over_every_worker():
    def task():
        spin(2_000_000)
        return mpgo.worker_id()

    def main():
        gs = [mpgo.go(task) for _ in range(8)]
        return [g.join() for g in gs]
    wids = mpgo.run(main, workers=2)
    assert set(wids) == {0, 1}


def test_closures_spawned_in_a_loop_are_one_burst_spread_over_the_workers():
    # Go's `for ... { go func() {...}() }`: a new closure per iteration, the
    # same code. Each goroutine stays alive (parked on `start`) until all are
    # spawned, so placement by load splits them (worker 1, idle meanwhile,
    # may also steal much of worker 0's queue: hence no upper bound; taken
    # one by one, as separate bursts, 1-12 of the 100 reached worker 1).
    def main():
        start = mpgo.Chan()
        gs = []
        for i in range(100):
            def task(i=i):
                start.recv_ok()
                return mpgo.worker_id()
            gs.append(mpgo.go(task))
        start.close()
        return [g.join() for g in gs]
    wids = mpgo.run(main, workers=2)
    assert wids.count(1) >= 25 and wids.count(0) >= 1, wids


def test_hog_spawner_still_gets_its_goroutines_run_elsewhere():
    # main spawns 8 CPU-bound goroutines then computes without ever parking:
    # the other worker must take and finish all of them meanwhile (DESIGN
    # "the hard case", P17). Progress is watched in shared memory, since main
    # cannot hear results while it never parks.
    done = mpgo.AtomicInt()

    def task():
        spin(300_000)
        done.add(1)
        return mpgo.worker_id()

    def main():
        done.store(0)
        gs = [mpgo.go(task) for _ in range(8)]
        t0 = time.monotonic()
        while done.load() < 8 and time.monotonic() - t0 < 30:   # compute, never park
            spin(10_000)
        finished_while_hogging = done.load()
        return finished_while_hogging, [g.join() for g in gs]
    finished, wids = mpgo.run(main, workers=2)
    assert finished == 8, "goroutines queued behind a hog were not run elsewhere"
    assert wids == [1] * 8


def test_join_timeout_and_done():
    def main():
        g = mpgo.go(mpgo.sleep, 0.5)
        with pytest.raises(TimeoutError):
            g.join(timeout=0.05)
        assert g.done() is False
        g.join()
        return g.done()
    assert mpgo.run(main, workers=1) is True


def test_handle_joined_from_another_worker():
    def producer():
        spin(100_000)
        return "value"

    def joiner(h):
        return h.join(), h.done(), mpgo.worker_id()

    def main():
        h = mpgo.go_local(producer)
        j = go_on(1, joiner, h)
        return j.join()
    assert mpgo.run(main, workers=2) == ("value", True, 1)


def test_unpicklable_goroutine_is_pinned_and_runs_where_spawned():
    lock = threading.Lock()

    def uses_lock():
        with lock:
            spin(100_000)
        return mpgo.worker_id()

    def main():
        gs = [mpgo.go(uses_lock) for _ in range(6)]
        return [g.join() for g in gs]
    assert mpgo.run(main, workers=2) == [0] * 6


def test_unpicklable_result_fails_only_that_join():
    def make_lock():
        return threading.Lock()

    def main():
        g = go_on(1, make_lock)
        with pytest.raises(TypeError, match="cannot"):
            g.join()
        return go_on(1, spin, 10).join()
    assert mpgo.run(main, workers=2) == spin(10)


def test_num_goroutine_counts_every_worker():
    def main():
        stop = mpgo.Chan()
        gs = [go_on(i % 2, stop.recv) for i in range(10)]
        mpgo.sleep(0.2)
        n = mpgo.num_goroutine()
        stop.close()
        for g in gs:
            g.join()
        return n, mpgo.num_goroutine()
    n, after = mpgo.run(main, workers=2)
    assert n == 11
    assert after == 1


def test_gosched_and_sleep_let_others_run():
    def main():
        order = []

        def other():
            order.append("other")
        mpgo.go_local(other)
        mpgo.gosched()
        order.append("main")
        mpgo.sleep(0.01)
        return order
    assert mpgo.run(main, workers=1) == ["other", "main"]


def _spin_on_channel_ops(ch, recv: bool) -> tuple[int, bool]:
    """Loop on channel operations that never park until a flag says stop, or
    5 s pass. Returns (operations, stopped)."""
    ch.send(-1)                         # the first cross-worker send waits for credit
    if recv:
        ch.recv()
    flag = mpgo.Chan(1)
    mpgo.go_local(flag.send, True)      # runnable now, but only runs if we yield
    deadline = time.monotonic() + 5.0
    ops = 0
    while time.monotonic() < deadline:
        ch.send(ops)
        if recv:
            ch.recv()
        ops += 1
        if len(flag):
            return ops, True
    return ops, False


def test_a_goroutine_that_never_parks_is_preempted_at_its_channel_operations():
    # Go's sysmon asks a goroutine that ran too long to yield; ours does it at
    # the next channel operation (here: the C fast path of a local buffered
    # channel), so a runnable goroutine of the same worker is not starved.
    def main():
        return _spin_on_channel_ops(mpgo.Chan(1), recv=True)
    ops, stopped = mpgo.run(main, workers=1)
    assert stopped, f"the other goroutine never ran in 5 s ({ops} channel operations)"


def test_cross_worker_sends_on_credit_still_give_the_hub_its_turns():
    # A cross-worker buffered send with credit never parks; the hub (which
    # answers other workers' frames) must still get a turn every ~1 ms.
    def main():
        ch = mpgo.Chan(1_000_000)         # credit for 500,000 sends at the first grant
        go_on(1, len, ch).join()          # worker 1 knows ch: cross-worker now
        return _spin_on_channel_ops(ch, recv=False)
    ops, stopped = mpgo.run(main, workers=2)
    assert stopped and ops < 50_000, (ops, stopped)


def test_a_channel_promoted_while_its_receiver_yields_to_preemption_still_delivers():
    # The preemption yield happens inside the local channel's slow path: a
    # goroutine that runs meanwhile can promote the channel (here: by passing
    # it to worker 1), and the receive must then take the cross-worker path.
    from mpgo._core import _sched

    def main():
        ch = mpgo.Chan()
        mpgo.go_local(lambda: go_on(1, ch.send, "from worker 1"))
        _sched.request_preempt()          # what sysmon does after 2 ms without a switch
        return ch.recv()
    assert mpgo.run(main, workers=2) == "from worker 1"


def test_runtime_reuses_workers_for_several_mains():
    with mpgo.Runtime(workers=2) as rt:
        pids1 = rt.run(lambda: sorted({go_on(i, os.getpid).join() for i in range(2)}))
        pids2 = rt.run(lambda: sorted({go_on(i, os.getpid).join() for i in range(2)}))
        assert pids1 == pids2 and len(pids1) == 2
        assert rt.run(lambda x: x + 1, 41) == 42
        with pytest.raises(ValueError):
            rt.run(_raise_value_error)
        assert rt.run(lambda: "still usable") == "still usable"


def _raise_value_error():
    raise ValueError("x")


def test_leftover_goroutines_do_not_leak_into_the_next_run():
    with mpgo.Runtime(workers=2) as rt:
        def first():
            for i in range(4):
                go_on(i % 2, mpgo.sleep, 30)
            return mpgo.num_goroutine()
        assert rt.run(first) == 5
        assert rt.run(mpgo.num_goroutine) == 1


def test_api_outside_a_run_raises_clearly():
    with pytest.raises(RuntimeError, match="inside mpgo.run"):
        mpgo.go(print)
    with pytest.raises(RuntimeError, match="inside mpgo.run"):
        mpgo.worker_id()


def test_run_inside_a_goroutine_is_refused():
    def main():
        mpgo.run(lambda: 1, workers=1)
    with pytest.raises(RuntimeError, match="inside a goroutine"):
        mpgo.run(main, workers=1)


def test_bad_arguments():
    with pytest.raises(TypeError):
        mpgo.run(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mpgo.run(print, workers=0)

    def main():
        with pytest.raises(TypeError, match="not callable"):
            mpgo.go(42)  # type: ignore[arg-type]
        return True
    assert mpgo.run(main, workers=1)


def test_mpgo_workers_environment_variable(monkeypatch):
    monkeypatch.setenv("MPGO_WORKERS", "3")
    assert mpgo.run(mpgo.num_workers) == 3


def test_goroutine_printing_while_main_sleeps(capfd):
    # the article's printNumbers program, scaled down
    def print_numbers():
        for i in range(5):
            mpgo.sleep(0.01)
            print(i)

    def main():
        mpgo.go(print_numbers)
        mpgo.sleep(0.3)
    mpgo.run(main, workers=2)
    out = capfd.readouterr().out
    assert out.split() == ["0", "1", "2", "3", "4"]


def test_no_orphans_when_the_supervisor_is_sigkilled(tmp_path):
    # P14: run a supervisor in a child process, SIGKILL it, workers must exit.
    import subprocess
    import sys
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import mpgo, os, sys\n"
        "def main():\n"
        "    pids = [mpgo.testing.go_on(i, os.getpid).join() for i in range(2)]\n"
        "    print(' '.join(map(str, pids)), flush=True)\n"
        "    mpgo.sleep(60)\n"
        "import mpgo.testing\n"
        "mpgo.run(main, workers=2)\n")
    p = subprocess.Popen([sys.executable, str(prog)], stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        pids = [int(x) for x in line.split()]
        assert len(pids) == 2
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 5
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [x for x in alive if _alive(x)]
            time.sleep(0.02)
        assert alive == [], f"orphaned workers {alive}"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _recv_n(ch, n):
    return [ch.recv() for _ in range(n)]


def _send_n(ch, n):
    for i in range(n):
        ch.send(100 + i)


def test_senders_and_recv_receivers_parked_in_c_survive_the_promotion():
    # A send with no receiver and a recv() on an empty channel park in C when
    # another started goroutine is runnable (mpgo/_speedups.c, "Parking in
    # C"); promotion wakes them with RETRY and each must redo its operation
    # on the promoted channel, losing nothing.
    sp = pytest.importorskip("mpgo._speedups")

    def main():
        to_other, from_other = mpgo.Chan(), mpgo.Chan()
        done = mpgo.Chan(2)
        before = sp.c_park_count()

        def receiver():
            mpgo.gosched()            # started, so the other may switch to it
            done.send(sorted(from_other.recv() for _ in range(3)))

        def sender():
            mpgo.gosched()
            for i in range(3):
                to_other.send(i)      # unbuffered, nobody receives yet: parks
            done.send("sent")
        mpgo.go_local(receiver)
        mpgo.go_local(sender)
        mpgo.sleep(0.05)              # both are parked on local channels
        parked_in_c = sp.c_park_count() - before
        got = go_on(1, _recv_n, to_other, 3)      # shipping them promotes both
        go_on(1, _send_n, from_other, 3)
        outcome = sorted([done.recv(), done.recv()], key=str)
        return parked_in_c, got.join(), outcome
    parked_in_c, got, outcome = mpgo.run(main, workers=2)
    assert parked_in_c >= 1, "nothing parked in C: the test no longer covers that path"
    assert got == [0, 1, 2]
    assert outcome == [[100, 101, 102], "sent"]


def test_goroutines_parked_on_a_local_channel_survive_its_promotion():
    # regression: a receiver parked on a local channel that got promoted
    # (captured by a goroutine shipped to another worker) got raw bytes
    def producer(ch):
        for i in range(100):
            ch.send(i)
        ch.close()

    def main():
        ch = mpgo.Chan(4)
        out = mpgo.Chan(1)

        def consumer():
            out.send(sum(v for v in ch))
        mpgo.go_local(consumer)
        mpgo.sleep(0.05)                  # the consumer is parked on the local channel
        go_on(1, producer, ch)            # pickling promotes the channel
        return out.recv()
    assert mpgo.run(main, workers=2) == sum(range(100))
