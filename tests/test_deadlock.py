"""Global deadlock detection and goroutine dumps (P5, P16, F18, F19).

Ported from Go's deadlock tests (runtime/crash_test.go and its testprog
programs: SimpleDeadlock's `select {}`, a main blocked on a channel nobody
sends on, nil channels, locks held by blocked goroutines, a deadlock among
goroutines while main waits for them) to real forked workers. Each deadlock
must be reported within about a second (the detector samples every 100 ms),
Go-style: ``all goroutines are asleep - deadlock!`` and then every blocked
goroutine with its id, wait reason, worker and a stack line of this file.

And the other half of P16: nothing that sleeps, waits on a timer, computes
or waits on foreign I/O is a deadlock.

Every test runs under the leak check of conftest.py.
"""

from __future__ import annotations

import os
import re
import select as _select
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import mpgo
from mpgo.testing import go_on

pytestmark = pytest.mark.timeout(60)

HEADER = "all goroutines are asleep - deadlock!"
REPORT_WITHIN = 3.0          # "about a second"; generous for a loaded 2-core box
THIS_FILE = os.path.abspath(__file__)

_HEAD = re.compile(r"^goroutine (\d+) \[([^\]]*)\] \(worker (\d+)\):$")


def parse_dump(text: str) -> list[dict]:
    """Blocks of a Go-style dump: id, reason (without the wait time), worker,
    the function names of this file's frames, and the block's text."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip("\n").splitlines()
        if not lines:
            continue
        m = _HEAD.match(lines[0].strip())
        if m is None:
            continue
        reason = m.group(2)
        # "chan receive, 207 ms" -> "chan receive"; a reason itself has no comma
        reason = reason.split(", ")[0] if re.search(r", [\d.]+ m?s$", reason) else reason
        funcs = [fm.group(1) for fm in re.finditer(
            r'File "' + re.escape(THIS_FILE) + r'", line \d+, in (\S+)', block)]
        out.append({"id": int(m.group(1)), "reason": reason, "worker": int(m.group(3)),
                    "funcs": funcs, "text": block})
    return out


def deadlock_report(main, workers: int = 2) -> tuple[str, list[dict], float]:
    """Run main, which must deadlock; return the message, its parsed goroutines
    and the seconds from the start of the run to the Deadlock."""
    t0 = time.monotonic()
    with pytest.raises(mpgo.Deadlock) as ei:
        mpgo.run(main, workers=workers)
    elapsed = time.monotonic() - t0
    msg = str(ei.value)
    assert isinstance(ei.value, RuntimeError)
    assert msg.startswith(HEADER), msg[:200]
    return msg, parse_dump(msg), elapsed


def expect(gs: list[dict], func: str, reason: str, worker: int) -> dict:
    """The one goroutine whose innermost frame of this file is `func`; check it."""
    mine = [g for g in gs if g["funcs"] and g["funcs"][-1] == func]
    assert len(mine) == 1, f"expected one goroutine in {func}, got:\n" + \
        "\n\n".join(g["text"] for g in gs)
    g = mine[0]
    assert g["reason"] == reason, g["text"]
    assert g["worker"] == worker, g["text"]
    return g


# -- goroutine bodies (module level: each must show up by name in the stack) ---

def recv_forever(ch):
    ch.recv()


def send_forever(ch):
    ch.send("never taken")


def relay(inbox, outbox):
    v = inbox.recv()            # both ends of the cycle wait here
    outbox.send(v)


def wait_group_forever(wg):
    wg.wait()


def lock_then_wait(mu, locked, never):
    mu.lock()
    locked.send(True)
    never.recv()                # blocked while holding the mutex


def lock_forever(mu):
    mu.lock()


def empty_select():
    mpgo.select()


def nil_send():
    mpgo.nilchan.send(1)


def nil_recv():
    mpgo.nilchan.recv()


def select_on_nil():
    mpgo.select(mpgo.nilchan.recv, (mpgo.nilchan.send, 1))


def join_forever(g):
    g.join()


def once_forever(once, never):
    once.do(lambda: never.recv())


def rlock_then_wait(rw, locked, never):
    rw.rlock()
    locked.send(True)
    never.recv()


def wlock_forever(rw):
    rw.lock()


# -- deadlocks (F18, P5) --------------------------------------------------------

def test_main_receiving_from_a_channel_nobody_sends_on():
    def main():
        ch = mpgo.Chan()
        recv_forever(ch)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN
    assert len(gs) == 1
    g = expect(gs, "recv_forever", "chan receive", 0)
    assert g["id"] == 1
    assert "ch.recv()" in g["text"]


def test_main_sending_on_an_unbuffered_channel_nobody_receives():
    def main():
        send_forever(mpgo.Chan())
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN
    assert len(gs) == 1
    expect(gs, "send_forever", "chan send", 0)


def test_main_sending_on_a_full_buffered_channel():
    def main():
        ch = mpgo.Chan(2)
        ch.send(1)
        ch.send(2)
        send_forever(ch)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN
    expect(gs, "send_forever", "chan send", 0)


def test_simple_deadlock_empty_select_in_main():
    # Go's testprog SimpleDeadlock: `select {}` in main
    def main():
        empty_select()
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN
    assert len(gs) == 1
    expect(gs, "empty_select", "select (no cases)", 0)


def test_receive_on_a_channel_promoted_to_another_worker_that_never_sends():
    # the channel is known to the broker (it crossed processes): the receive
    # is parked there, and still nothing can ever send
    def main():
        ch = mpgo.Chan()
        go_on(1, len, [ch]).join()
        recv_forever(ch)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN
    assert len(gs) == 1
    expect(gs, "recv_forever", "chan receive", 0)


def test_cycle_across_two_workers():
    # g1 (worker 0) waits on a, then would send on b; g2 (worker 1) waits on b,
    # then would send on a: neither can start; main waits for both.
    def main():
        a, b = mpgo.Chan(), mpgo.Chan()
        g1 = go_on(0, relay, a, b)
        g2 = go_on(1, relay, b, a)
        join_forever(g1)
        g2.join()
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN
    assert len(gs) == 3
    relays = [g for g in gs if g["funcs"] and g["funcs"][-1] == "relay"]
    assert sorted((g["reason"], g["worker"]) for g in relays) == [
        ("chan receive", 0), ("chan receive", 1)]
    expect(gs, "join_forever", "goroutine join", 0)


def test_everyone_in_waitgroup_wait():
    def main():
        wg = mpgo.WaitGroup()
        wg.add(1)                        # nobody will ever call done
        go_on(0, wait_group_forever, wg)
        go_on(1, wait_group_forever, wg)
        go_on(1, wait_group_forever, wg)
        mpgo.sleep(0.05)
        wait_group_forever(wg)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN + 0.05
    assert len(gs) == 4
    assert all(g["reason"] == "semacquire" for g in gs), msg
    assert sorted(g["worker"] for g in gs) == [0, 0, 1, 1]
    assert all(g["funcs"][-1] == "wait_group_forever" for g in gs), msg
    assert any("wg.wait()" in g["text"] for g in gs)


def test_everyone_on_a_mutex_held_by_a_blocked_goroutine():
    def main():
        mu = mpgo.Mutex()
        locked, never = mpgo.Chan(), mpgo.Chan()
        go_on(1, lock_then_wait, mu, locked, never)
        locked.recv()
        go_on(0, lock_forever, mu)
        go_on(1, lock_forever, mu)
        mpgo.sleep(0.05)
        lock_forever(mu)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN + 0.05
    assert len(gs) == 4
    expect(gs, "lock_then_wait", "chan receive", 1)
    lockers = [g for g in gs if g["funcs"][-1] == "lock_forever"]
    assert sorted((g["reason"], g["worker"]) for g in lockers) == [
        ("mutex", 0), ("mutex", 0), ("mutex", 1)]
    assert 1 in [g["id"] for g in lockers]          # main is among them


def test_nil_channel_send_and_receive_block_forever_in_every_worker():
    # P5: the nil channel blocks forever, in every worker
    def main():
        go_on(1, nil_send)
        go_on(1, nil_recv)
        go_on(1, empty_select)
        mpgo.sleep(0.05)
        nil_recv()
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN + 0.05
    assert len(gs) == 4
    expect(gs, "nil_send", "chan send (nil chan)", 1)
    expect(gs, "empty_select", "select (no cases)", 1)
    recvs = [g for g in gs if g["funcs"][-1] == "nil_recv"]
    assert sorted((g["reason"], g["worker"]) for g in recvs) == [
        ("chan receive (nil chan)", 0), ("chan receive (nil chan)", 1)]


def test_select_on_nil_channels_only_is_a_deadlock():
    def main():
        go_on(1, select_on_nil)
        mpgo.sleep(0.05)
        select_on_nil()
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN + 0.05
    assert len(gs) == 2
    assert sorted(g["worker"] for g in gs) == [0, 1]
    assert all(g["funcs"][-1] == "select_on_nil" for g in gs), msg


def test_select_on_nil_channels_waits_as_select_not_as_empty_select():
    # Go's selectgo omits nil-channel cases and parks with waitReasonSelect;
    # "select (no cases)" is only `select {}`
    def main():
        select_on_nil()
    msg, gs, elapsed = deadlock_report(main)
    expect(gs, "select_on_nil", "select", 0)


def test_deadlock_among_goroutines_while_main_waits_on_join():
    # The goroutines deadlock among themselves in the other worker; main is
    # in join: the whole run is asleep.
    def pair():
        ch = mpgo.Chan()
        h = mpgo.go_local(send_forever, mpgo.Chan())
        recv_forever(ch)
        h.join()

    def main():
        join_forever(go_on(1, pair))
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN
    assert len(gs) == 3
    expect(gs, "join_forever", "goroutine join", 0)
    expect(gs, "recv_forever", "chan receive", 1)
    expect(gs, "send_forever", "chan send", 1)


def test_remote_join_of_a_blocked_goroutine():
    # the joiner is in another worker than the goroutine's home: the join
    # waits at the home worker, and is still part of the deadlock
    def main():
        ch = mpgo.Chan()
        h = mpgo.go_local(recv_forever, ch)
        go_on(1, join_forever, h)
        mpgo.sleep(0.05)
        recv_forever(ch)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN + 0.05
    assert len(gs) == 3
    expect(gs, "join_forever", "goroutine join", 1)
    receivers = [g for g in gs if g["funcs"][-1] == "recv_forever"]
    assert sorted((g["reason"], g["worker"]) for g in receivers) == [
        ("chan receive", 0), ("chan receive", 0)]


def test_everyone_waiting_for_a_once_whose_function_blocks():
    def main():
        once, never = mpgo.Once(), mpgo.Chan()
        go_on(1, once_forever, once, never)
        mpgo.sleep(0.05)
        go_on(1, once_forever, once, never)
        go_on(0, once_forever, once, never)
        mpgo.sleep(0.05)
        once_forever(once, never)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN + 0.1
    assert len(gs) == 4
    assert all("once_forever" in g["funcs"] for g in gs), msg
    running_fn = [g for g in gs if g["reason"] == "chan receive"]
    assert len(running_fn) == 1                # the one running the function
    assert all(g["reason"] in ("sync.Once", "semacquire") for g in gs if g not in running_fn), msg


def test_writers_and_readers_on_an_rwmutex_held_by_a_blocked_reader():
    def main():
        rw, locked, never = mpgo.RWMutex(), mpgo.Chan(), mpgo.Chan()
        go_on(1, rlock_then_wait, rw, locked, never)
        locked.recv()
        go_on(1, wlock_forever, rw)
        mpgo.sleep(0.05)
        wlock_forever(rw)
    msg, gs, elapsed = deadlock_report(main)
    assert elapsed < REPORT_WITHIN + 0.05
    assert len(gs) == 3
    expect(gs, "rlock_then_wait", "chan receive", 1)
    writers = [g for g in gs if g["funcs"][-1] == "wlock_forever"]
    assert sorted(g["worker"] for g in writers) == [0, 1]
    assert all(g["reason"].startswith("rwmutex") for g in writers), msg


def test_deadlock_is_reported_only_after_the_last_sleeper_left():
    # Go: a deadlock is reported when the last goroutine that could act is
    # gone, never before; here a goroutine sleeps 0.6 s and exits without sending.
    def sleeper():
        mpgo.sleep(0.6)

    def main():
        go_on(1, sleeper)
        recv_forever(mpgo.Chan())
    msg, gs, elapsed = deadlock_report(main)
    assert 0.6 <= elapsed < 0.6 + REPORT_WITHIN
    assert len(gs) == 1
    expect(gs, "recv_forever", "chan receive", 0)


def test_the_report_carries_how_long_each_goroutine_waited():
    def main():
        recv_forever(mpgo.Chan())
    msg, gs, elapsed = deadlock_report(main)
    m = re.search(r"goroutine 1 \[chan receive, (\d+) ms\]", msg)
    assert m is not None, msg
    assert 50 <= int(m.group(1)) <= elapsed * 1000 + 50


def test_testing_run_reports_a_deadlock_across_workers():
    def main():
        go_on(1, recv_forever, mpgo.Chan())
        recv_forever(mpgo.Chan())
    with pytest.raises(mpgo.Deadlock) as ei:
        mpgo.testing.run(main, workers=2, timeout=20)
    gs = parse_dump(str(ei.value))
    assert sorted(g["worker"] for g in gs) == [0, 1]


def test_runtime_is_usable_after_a_deadlock():
    # the failed run leaves nothing behind that breaks the next one
    def main():
        recv_forever(mpgo.Chan())
    with pytest.raises(mpgo.Deadlock):
        mpgo.run(main, workers=2)
    assert mpgo.run(lambda: go_on(1, sum, [1, 2]).join(), workers=2) == 3


def _thousand_blocked():
    ch = mpgo.Chan()
    for i in range(1000):
        go_on(i % 2, recv_forever, ch)
    recv_forever(ch)


def test_held_runtime_reports_a_deadlock_of_a_thousand_goroutines_and_goes_on():
    with mpgo.Runtime(workers=2) as rt:
        t0 = time.monotonic()
        with pytest.raises(mpgo.Deadlock) as ei:
            rt.run(_thousand_blocked)
        assert time.monotonic() - t0 < REPORT_WITHIN + 1.0
        gs = parse_dump(str(ei.value))
        assert len(gs) == 1001
        assert sorted({g["worker"] for g in gs}) == [0, 1]
        assert rt.run(lambda: go_on(1, sum, [1, 2]).join()) == 3


# -- no false positives (F19, P16) ----------------------------------------------

def no_deadlock(main, workers: int = 2):
    """Run main; a Deadlock fails the test with the report."""
    try:
        return mpgo.run(main, workers=workers)
    except mpgo.Deadlock as e:      # pragma: no cover - the failure path
        pytest.fail(f"false deadlock:\n{e}")


def spin_for(seconds):
    t = time.monotonic()
    n = 0
    while time.monotonic() - t < seconds:
        n += 1
    return n


def test_goroutine_in_mpgo_sleep_is_not_a_deadlock():
    def sleeper(ch):
        mpgo.sleep(0.8)
        ch.send("woke")

    def main():
        ch = mpgo.Chan()
        go_on(1, sleeper, ch)
        return ch.recv()
    assert no_deadlock(main) == "woke"


def test_main_in_mpgo_sleep_is_not_a_deadlock():
    def main():
        mpgo.sleep(0.6)
        return "slept"
    assert no_deadlock(main, workers=1) == "slept"


def test_goroutine_in_time_sleep_blocking_its_worker_is_not_a_deadlock():
    def blocker(ch):
        time.sleep(0.8)               # a foreign blocking call: the worker is busy
        ch.send("woke")

    def main():
        ch = mpgo.Chan()
        go_on(1, blocker, ch)
        return ch.recv()
    assert no_deadlock(main) == "woke"


def test_goroutine_computing_is_not_a_deadlock():
    def main():
        g = go_on(1, spin_for, 0.8)
        return g.join() > 0
    assert no_deadlock(main) is True


def test_goroutine_waiting_on_a_socket_is_not_a_deadlock():
    # Everything mpgo knows of is parked; only a foreign process (a child of
    # the worker) will write to the socket, after a second.
    def reader():
        r, w = socket.socketpair()
        r.setblocking(False)
        p = subprocess.Popen(
            [sys.executable, "-c",
             f"import os, time; time.sleep(0.8); os.write({w.fileno()}, b'x')"],
            pass_fds=[w.fileno()])
        w.close()
        try:
            assert mpgo.wait_readable(r) is True
            return r.recv(1)
        finally:
            r.close()
            p.wait()

    def main():
        return go_on(1, reader).join()
    assert no_deadlock(main) == b"x"


def test_select_with_a_timeout_is_not_a_deadlock():
    def main():
        ch = mpgo.Chan()
        go_on(1, len, [ch]).join()                 # promoted, never sent on
        return mpgo.select(ch.recv, mpgo.after(0.6).recv)[0]
    assert no_deadlock(main) == 1


def test_goroutines_fed_by_a_ticker_in_another_worker_are_not_a_deadlock():
    def count_ticks(c, n):
        for _ in range(n):
            c.recv()
        return n

    def main():
        t = mpgo.Ticker(0.1)
        try:
            return go_on(1, count_ticks, t.c, 8).join()
        finally:
            t.stop()
    assert no_deadlock(main) == 8


def test_all_kinds_of_waiting_at_once_is_not_a_deadlock():
    # F19 in one run: a sleeper, a time.sleep, a computation and a ticker,
    # all while main is blocked on a channel
    def main():
        done = mpgo.Chan(4)

        def sleeper():
            mpgo.sleep(0.6)
            done.send("sleep")

        def blocker():
            time.sleep(0.6)
            done.send("time.sleep")

        def computer():
            spin_for(0.6)
            done.send("compute")

        def ticks():
            t = mpgo.Ticker(0.05)
            for _ in range(12):
                t.c.recv()
            t.stop()
            done.send("ticker")
        go_on(1, sleeper)
        go_on(1, blocker)
        go_on(0, ticks)
        go_on(0, computer)
        return sorted(done.recv() for _ in range(4))
    assert no_deadlock(main) == ["compute", "sleep", "ticker", "time.sleep"]


# -- dumps ---------------------------------------------------------------------

def dumper(out):
    out.send(mpgo.dump())


def test_dump_from_a_goroutine_lists_every_goroutine_of_every_worker():
    def main():
        stop, out = mpgo.Chan(), mpgo.Chan(1)
        hs = [go_on(0, recv_forever, stop), go_on(1, recv_forever, stop),
              go_on(1, send_forever, mpgo.Chan())]
        mpgo.sleep(0.1)
        d = go_on(1, dumper, out)
        text = out.recv()
        stop.close()
        d.join()
        hs[0].join()
        hs[1].join()
        return text, [h.id for h in hs], d.id
    text, ids, dumper_id = mpgo.run(main, workers=2, )
    gs = {g["id"]: g for g in parse_dump(text)}
    assert gs[1]["worker"] == 0 and gs[1]["reason"] == "chan receive", text
    assert (gs[ids[0]]["reason"], gs[ids[0]]["worker"]) == ("chan receive", 0)
    assert (gs[ids[1]]["reason"], gs[ids[1]]["worker"]) == ("chan receive", 1)
    assert (gs[ids[2]]["reason"], gs[ids[2]]["worker"]) == ("chan send", 1)
    assert gs[ids[0]]["funcs"][-1] == "recv_forever"
    assert gs[ids[2]]["funcs"][-1] == "send_forever"
    assert set(gs) == {1, *ids, dumper_id}


def test_dump_shows_the_caller_as_running_with_its_stack():
    # Go's runtime.Stack(all=true): the calling goroutine is "running", with
    # the stack of the call
    def main():
        out = mpgo.Chan(1)
        d = go_on(1, dumper, out)
        text = out.recv()
        d.join()
        return text, d.id
    text, dumper_id = mpgo.run(main, workers=2)
    gs = {g["id"]: g for g in parse_dump(text)}
    assert gs[dumper_id]["reason"] == "running", text
    assert gs[dumper_id]["worker"] == 1
    assert gs[dumper_id]["funcs"][-1] == "dumper", text


def test_dump_answers_while_a_worker_computes_without_parking():
    # a worker that does not park cannot answer at once; dump must not hang
    def main():
        out = mpgo.Chan(1)
        c = go_on(1, spin_for, 0.5)
        mpgo.sleep(0.05)
        t = time.monotonic()
        dumper(out)
        text = out.recv()
        c.join()
        return text, time.monotonic() - t
    text, took = mpgo.run(main, workers=2)
    assert "goroutine 1 " in text
    assert took < 3.0


def crunch_forever():
    while True:
        pass


def test_dump_returns_while_another_worker_never_parks():
    # Deadlock reports and SIGUSR1 give a busy worker 2 s, then say it is busy;
    # mpgo.dump() must not hang either
    def main():
        go_on(1, crunch_forever)
        mpgo.sleep(0.1)
        t = time.monotonic()
        text = mpgo.dump()
        return text, time.monotonic() - t
    # today the run times out (TimeoutError) with main still in dump()
    text, took = mpgo.testing.run(main, workers=2, timeout=3.5, leaks=False)
    assert took < 3.0
    assert "goroutine 1 " in text
    assert "worker 1" in text                 # named, even if only as busy


SIGUSR1_PROG = textwrap.dedent("""
    import os, sys
    import mpgo
    from mpgo.testing import go_on

    def parked_in_worker_one(ch):
        ch.recv()

    def main():
        ch = mpgo.Chan()
        g = go_on(1, parked_in_worker_one, ch)
        mpgo.sleep(0.1)
        print("ready", flush=True)
        mpgo.wait_readable(0)          # until the test writes a line
        line = os.read(0, 100).decode().strip()
        ch.send(None)
        g.join()
        return line

    print("result", mpgo.run(main, workers=2), flush=True)
""")


def _read_until(stream, needle: str, deadline: float) -> str:
    """Read a pipe (bytes) until `needle` appears or the deadline passes."""
    buf = b""
    fd = stream.fileno()
    while needle.encode() not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = _select.select([fd], [], [], left)
        if not r:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace")


def test_sigusr1_to_the_supervisor_prints_the_dump_and_the_run_goes_on(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(SIGUSR1_PROG)
    p = subprocess.Popen([sys.executable, str(prog)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = _read_until(p.stdout, "ready", time.monotonic() + 20)
        assert "ready" in out
        os.kill(p.pid, signal.SIGUSR1)
        err = _read_until(p.stderr, "parked_in_worker_one", time.monotonic() + 10)
        gs = parse_dump_any(err)
        assert any(g["worker"] == 1 and g["reason"] == "chan receive"
                   and "parked_in_worker_one" in g["text"] for g in gs), err
        assert any(g["id"] == 1 and g["worker"] == 0 for g in gs), err
        assert p.poll() is None, "SIGUSR1 ended the run"
        p.stdin.write(b"go on\n")
        p.stdin.flush()
        rest, err2 = p.communicate(timeout=20)
        assert p.returncode == 0, err + err2.decode()
        assert "result go on" in rest.decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            f.close()


def parse_dump_any(text: str) -> list[dict]:
    """As parse_dump, for a dump from another file (no function names)."""
    out = []
    for block in re.split(r"\n\s*\n|\nmpgo: SIGUSR1 dump\n", "\n" + text):
        lines = block.strip("\n").splitlines()
        while lines and not _HEAD.match(lines[0].strip()):
            lines.pop(0)
        if not lines:
            continue
        m = _HEAD.match(lines[0].strip())
        reason = m.group(2)
        reason = reason.split(", ")[0] if re.search(r", [\d.]+ m?s$", reason) else reason
        out.append({"id": int(m.group(1)), "reason": reason, "worker": int(m.group(3)),
                    "text": "\n".join(lines)})
    return out
