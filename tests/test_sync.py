"""Shared-memory sync across workers, in the style of Go's sync tests.

Real forked workers; every test runs under the leak check.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import mpgo
from mpgo import LockPoisoned, WorkerDied
from mpgo.testing import go_on

pytestmark = pytest.mark.timeout(60)

# module level, as Go programs write them: the same objects in every worker
MU = mpgo.Mutex()
COUNTER = mpgo.AtomicInt()
POISON_MU = mpgo.Mutex()


def test_module_level_mutex_and_counter_exact_under_contention():
    def worker(n):
        for _ in range(n):
            with MU:
                COUNTER.store(COUNTER.load() + 1)   # racy without the mutex
        return mpgo.worker_id()

    def main():
        COUNTER.store(0)
        gs = [go_on(i % 2, worker, 20_000) for i in range(4)]
        wids = [g.join() for g in gs]
        return COUNTER.load(), sorted(set(wids))
    assert mpgo.run(main, workers=2) == (80_000, [0, 1])


def test_mutex_made_in_a_goroutine_works_in_other_workers():
    def main():
        mu = mpgo.Mutex()
        n = mpgo.AtomicInt()

        def worker():
            for _ in range(5000):
                mu.lock()
                n.store(n.load() + 1)
                mu.unlock()
        gs = [go_on(i % 2, worker) for i in range(4)]
        for g in gs:
            g.join()
        return n.load()
    assert mpgo.run(main, workers=2) == 20_000


def test_the_articles_thousand_increments_spread_over_workers():
    def main():
        mu, total = mpgo.Mutex(), mpgo.AtomicInt()
        seen = [mpgo.AtomicInt() for _ in range(2)]
        wg = mpgo.WaitGroup()
        for _ in range(1000):
            wg.add(1)

            def inc():
                with mu:
                    total.store(total.load() + 1)
                seen[mpgo.worker_id()].add(1)
                # a little work so that idle workers steal some
                sum(range(200))
                wg.done()
            mpgo.go(inc)
        wg.wait()
        return total.load(), [s.load() for s in seen]
    total, per = mpgo.run(main, workers=2)
    assert total == 1000
    assert sum(per) == 1000
    assert all(n > 0 for n in per), per          # the goroutines ran on both workers


def test_try_lock_and_locked():
    def main():
        mu = mpgo.Mutex()
        assert mu.try_lock() is True
        assert mu.locked()
        assert mu.try_lock() is False
        other = go_on(1, mu.try_lock).join()
        mu.unlock()
        return other, mu.locked(), go_on(1, mu.try_lock).join()
    assert mpgo.run(main, workers=2) == (False, False, True)


def test_unlock_of_unlocked_mutex_raises():
    def main():
        mu = mpgo.Mutex()
        with pytest.raises(RuntimeError, match="unlock of unlocked mutex"):
            mu.unlock()
        mu.lock()
        mu.unlock()
        with pytest.raises(RuntimeError, match="unlock of unlocked mutex"):
            mu.unlock()
        return True
    assert mpgo.run(main, workers=1)


def test_lock_timeout_comes_off_the_queue_cleanly():
    def holder(mu, release):
        mu.lock()
        release.recv()
        mu.unlock()

    def main():
        mu = mpgo.Mutex()
        release = mpgo.Chan()
        go_on(1, holder, mu, release)
        while not mu.locked():
            mpgo.sleep(0.005)
        t = time.monotonic()
        got = mu.lock(timeout=0.1)
        waited = time.monotonic() - t
        release.send(None)
        got2 = mu.lock(timeout=5)      # the queue is clean: the lock comes
        mu.unlock()
        return got, waited, got2, repr(mu)
    got, waited, got2, r = mpgo.run(main, workers=2)
    assert got is False and 0.09 < waited < 2.0
    assert got2 is True
    assert "waiters=0" in r


def test_waiting_parks_only_the_caller():
    def main():
        mu = mpgo.Mutex()
        mu.lock()
        ticks = []

        def waiter():
            mu.lock()
            mu.unlock()
            return "got it"

        def ticker():
            for i in range(5):
                ticks.append(i)
                mpgo.sleep(0.01)
        w = mpgo.go_local(waiter)
        t = mpgo.go_local(ticker)
        t.join()                       # ran while the waiter was parked
        mu.unlock()
        return ticks, w.join()
    assert mpgo.run(main, workers=1) == ([0, 1, 2, 3, 4], "got it")


def test_no_waiter_starves_while_another_relocks_in_a_loop():
    # Go's TestMutexFairness: one goroutine re-locks in a tight loop, another
    # must still get the lock (starvation mode, FIFO hand-off after ~1 ms).
    def hog(mu, stop):
        n = 0
        while not stop.load():
            with mu:
                t = time.perf_counter()
                while time.perf_counter() - t < 50e-6:
                    pass
            n += 1
        return n

    def main():
        mu, stop = mpgo.Mutex(), mpgo.AtomicInt()
        h = go_on(1, hog, mu, stop)
        mpgo.sleep(0.05)
        waits = []
        for _ in range(10):
            t = time.monotonic()
            with mu:
                waits.append(time.monotonic() - t)
            mpgo.sleep(0.01)
        stop.store(1)
        return max(waits), h.join()
    worst, hog_loops = mpgo.run(main, workers=2)
    assert worst < 1.0, f"a waiter waited {worst:.3f}s"
    assert hog_loops > 10


def test_rwmutex_readers_share_and_writers_exclude():
    def reader(rw, inside, max_inside, writers_inside, errors):
        for _ in range(30):
            rw.rlock()
            n = inside.add(1)
            while True:
                m = max_inside.load()
                if n <= m or max_inside.cas(m, n):
                    break
            if writers_inside.load():
                errors.add(1)
            mpgo.sleep(0.001)
            inside.add(-1)
            rw.runlock()

    def writer(rw, inside, writers_inside, errors):
        for _ in range(10):
            rw.lock()
            if writers_inside.add(1) != 1 or inside.load():
                errors.add(1)
            mpgo.sleep(0.001)
            writers_inside.add(-1)
            rw.unlock()

    def main():
        rw = mpgo.RWMutex()
        inside, max_inside, wi, errors = (mpgo.AtomicInt() for _ in range(4))
        gs = [go_on(i % 2, reader, rw, inside, max_inside, wi, errors) for i in range(4)]
        gs += [go_on(i % 2, writer, rw, inside, wi, errors) for i in range(2)]
        for g in gs:
            g.join()
        return errors.load(), max_inside.load()
    errors, max_inside = mpgo.run(main, workers=2)
    assert errors == 0
    assert max_inside >= 2        # readers were inside together


def test_rwmutex_misuse():
    def main():
        rw = mpgo.RWMutex()
        with pytest.raises(RuntimeError):
            rw.runlock()
        with pytest.raises(RuntimeError):
            rw.unlock()
        with rw.reader():
            pass
        with rw.writer():
            pass
        return True
    assert mpgo.run(main, workers=1)


def test_waitgroup_waits_for_goroutines_in_every_worker():
    def work(wg, n):
        mpgo.sleep(0.02)
        n.add(1)
        wg.done()

    def main():
        wg, n = mpgo.WaitGroup(), mpgo.AtomicInt()
        for i in range(10):
            wg.add(1)
            go_on(i % 2, work, wg, n)
        assert wg.wait() is True
        return n.load(), wg.counter
    assert mpgo.run(main, workers=2) == (10, 0)


def test_waitgroup_negative_counter_and_timeout():
    def main():
        wg = mpgo.WaitGroup()
        with pytest.raises(ValueError, match="negative WaitGroup counter"):
            wg.done()
        assert wg.counter == 0
        wg.add(2)
        assert wg.wait(timeout=0.05) is False
        wg.done()
        wg.done()
        assert wg.wait(timeout=0.05) is True
        return True
    assert mpgo.run(main, workers=1)


def test_waitgroup_wait_never_returns_early():
    def slow(wg, finished):
        mpgo.sleep(0.05)
        finished.add(1)
        wg.done()

    def waiter(wg, finished):
        wg.wait()
        return finished.load()

    def main():
        wg, finished = mpgo.WaitGroup(), mpgo.AtomicInt()
        wg.add(6)
        ws = [go_on(i % 2, waiter, wg, finished) for i in range(4)]
        for i in range(6):
            go_on(i % 2, slow, wg, finished)
        return [w.join() for w in ws]
    assert mpgo.run(main, workers=2) == [6, 6, 6, 6]


def test_once_runs_once_under_a_race_and_others_wait():
    def racer(once, calls, done_seen):
        def init():
            calls.add(1)
            mpgo.sleep(0.05)
            done_seen.store(1)
        once.do(init)
        return done_seen.load()      # do returned only after init finished

    def main():
        once, calls, done_seen = mpgo.Once(), mpgo.AtomicInt(), mpgo.AtomicInt()
        gs = [go_on(i % 2, racer, once, calls, done_seen) for i in range(8)]
        return [g.join() for g in gs], calls.load(), once.done()
    seen, calls, done = mpgo.run(main, workers=2)
    assert calls == 1 and done
    assert seen == [1] * 8


def test_atomicint_add_and_cas_from_every_worker_exact():
    def adder(a, c, n):
        for _ in range(n):
            a.add(1)
        for _ in range(n // 10):
            while True:
                v = c.load()
                if c.cas(v, v + 2):
                    break

    def main():
        a, c = mpgo.AtomicInt(), mpgo.AtomicInt(7)
        gs = [go_on(i % 2, adder, a, c, 20_000) for i in range(4)]
        for g in gs:
            g.join()
        return a.load(), c.load(), c.swap(0), c.load()
    assert mpgo.run(main, workers=2) == (80_000, 7 + 4 * 2000 * 2, 7 + 16000, 0)


def test_atomicint_works_outside_goroutines_and_wraps():
    a = mpgo.AtomicInt(2**63 - 1)
    assert a.add(1) == -(2**63)
    assert a.cas(-(2**63), 5) and a.load() == 5 and int(a) == 5


def test_mutex_from_a_foreign_thread_is_a_clear_error():
    def main():
        mu = mpgo.Mutex()
        errors = []

        def thread_body():
            try:
                mu.lock()
            except RuntimeError as e:
                errors.append(str(e))
        t = threading.Thread(target=thread_body)
        t.start()
        t.join()
        return errors, mu.locked()
    errors, locked = mpgo.run(main, workers=1)
    assert errors and "foreign OS thread" in errors[0]
    assert locked is False


def _lock_and_die(mu):
    mu.lock()
    os.kill(os.getpid(), signal.SIGKILL)


def test_holder_killed_poisons_the_mutex():
    def main():
        go_on(1, _lock_and_die, POISON_MU)
        mpgo.sleep(10)
    with pytest.raises(WorkerDied) as ei:
        mpgo.run(main, workers=2)
    assert ei.value.signal == "SIGKILL" and ei.value.worker == 1
    dead_pid = ei.value.pid

    def main2():
        with pytest.raises(LockPoisoned) as pi:
            POISON_MU.lock()
        assert pi.value.worker == 1 and pi.value.pid == dead_pid
        assert f"worker 1 (pid {dead_pid})" in str(pi.value)
        with pytest.raises(LockPoisoned):
            POISON_MU.try_lock()
        POISON_MU.clear_poison()
        return POISON_MU.lock(timeout=1)
    assert mpgo.run(main2, workers=2) is True


def test_waiter_of_a_killed_holder_gets_poisoned_error_not_a_hang():
    def holder(mu):
        mu.lock()
        mpgo.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)

    def main():
        mu = mpgo.Mutex()
        go_on(1, holder, mu)
        while not mu.locked():
            mpgo.sleep(0.005)
        try:
            mu.lock()
        except LockPoisoned as e:
            return f"poisoned: {e.worker}"
        return "locked?"
    # the run fails with WorkerDied or main sees the poison first: never a hang
    try:
        r = mpgo.run(main, workers=2)
        assert r == "poisoned: 1"
    except WorkerDied as e:
        assert e.worker == 1
