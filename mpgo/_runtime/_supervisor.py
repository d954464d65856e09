"""The supervisor: forks the workers, runs the event loop, watches, shuts down.

Strategy
--------
The process that calls `run` (or holds a `Runtime`) forks M workers *before* it
creates any ZeroMQ context, thread or hub (P18). Then one loop, which never runs
user code, waits on its inbox, the workers' pidfds and a signal wake-up pipe:

* frames go to `SUP_HANDLERS` (run control here; the broker and the lock
  queues register theirs);
* a readable pidfd is a dead worker: the run ends with `WorkerDied` (P10);
* every `DEADLOCK_EVERY` seconds it samples the worker table for global
  quiescence (docs/design.md §8) and raises `Deadlock` with every goroutine.

Shutdown is bounded (P13): EXIT, then SIGTERM after 1 s, SIGKILL after 5 s; the
supervisor reaps every child it forked, so no process is left behind.

Who may call: everything here runs in the supervisor's calling thread.
"""

from __future__ import annotations

import os
import pickle
import select as _select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import _errors
from .._errors import (
    Deadlock,
    GoroutineError,
    LeakedGoroutines,
    RemoteException,
    RemoteTraceback,
    WorkerDied,
)
from .._transport import _arena, _wire
from .._transport._arena import (
    H_GID,
    H_GLOBALQ,
    H_SUP_RECV,
    H_SUP_SENT,
    W_EPOCH,
    W_FDS,
    W_IDLE,
    W_LIVE,
    W_NRUN,
    W_RECV,
    W_RUNNING,
    W_SENT,
    W_STEALABLE,
    W_SYSMON,
    W_TIMERS,
    worker_off,
)
from .._transport._atomic import add, load, store
from .._transport._link import SUPERVISOR, Link

DEADLOCK_EVERY = float(os.environ.get("MPGO_DEADLOCK_INTERVAL", "0.1"))
START_TIMEOUT = 30.0
LEAK_GRACE = 0.5            # how long leak_check waits for goroutines to finish
INTERRUPT_GRACE = 5.0       # after SIGINT/SIGTERM, how long main may take to unwind
DUMP_WAIT = 2.0             # mpgo.dump() waits this long for a busy worker's answer
EXIT_GRACE = 1.0
KILL_AFTER = 5.0

SupHandler = Callable[["Supervisor", int, list[Any]], None]
SUP_HANDLERS: dict[int, SupHandler] = {}
# Called with (supervisor, dead worker id) before the run fails (poison locks, fail channels).
ON_WORKER_DEATH: list[Callable[[Supervisor, int], None]] = []
ON_RUN_START: list[Callable[[Supervisor], None]] = []
ON_RUN_END: list[Callable[[Supervisor], None]] = []
BEFORE_FLUSH: list[Callable[[Supervisor], None]] = []

ACTIVE: Supervisor | None = None     # the supervisor of this process, if any


def sup_handler(kind: int) -> Callable[[SupHandler], SupHandler]:
    def deco(fn: SupHandler) -> SupHandler:
        SUP_HANDLERS[kind] = fn
        return fn
    return deco


class _RunOver(Exception):
    """Internal: ends the event loop of a run with an outcome."""


class Supervisor:
    """Owns M forked workers and the loop that serves them."""

    closed: bool
    outcome: tuple[str, Any] | None

    def __init__(self, workers: int, inherited: Any = None) -> None:
        global ACTIVE
        if workers < 1 or workers > _arena.MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {_arena.MAX_WORKERS}, got {workers}")
        if ACTIVE is not None and not ACTIVE.closed:
            raise RuntimeError("mpgo: a runtime is already running in this process")
        if _in_worker():
            raise RuntimeError("mpgo: run/Runtime cannot be started from inside a goroutine")
        self.n = workers
        self.token = _wire.new_token()
        self.run_tag = f"{os.getpid()}-{self.token[:6].hex()}"
        self.pids: list[int] = []
        self.pidfds: list[int] = []
        self.alive: list[bool] = []
        self.exitinfo: dict[int, tuple[int | None, str | None]] = {}
        self.closed = False
        self.broken: BaseException | None = None
        self.run_id = 0
        self.outcome: tuple[str, Any] | None = None
        self.globalq: deque[list[Any]] = deque()
        self.link: Link | None = None
        self.ep: Any = None
        self.dump_waits: dict[int, dict[str, Any]] = {}
        self._ticket = 0
        self.hogs: list[tuple[int, int, float, str, str]] = []
        self.last_sample: tuple[Any, ...] | None = None
        self.signal_fd_r = self.signal_fd_w = -1
        self.pending_signals: list[int] = []
        self.state: dict[str, Any] = {}          # per-subsystem state (broker, locks)
        self.deadline: float | None = None
        self._fork_workers(inherited)
        ACTIVE = self
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    # -- start -----------------------------------------------------------------

    def _fork_workers(self, inherited: Any) -> None:
        from ._worker import Worker
        _arena.reset_workers(self.n)
        store(H_GID, 0)
        death_r, death_w = os.pipe()
        for fd in (death_r, death_w):
            os.set_inheritable(fd, False)
        sup_pid = os.getpid()
        for fl in (sys.stdout, sys.stderr):
            try:
                fl.flush()
            except (AttributeError, ValueError, OSError):
                pass
        _arena.forking_workers = True
        try:
            for wid in range(self.n):
                pid = os.fork()
                if pid == 0:
                    try:
                        os.close(death_w)
                        Worker(wid, self.n, self.token, self.run_tag, sup_pid,
                               death_r).main(inherited)
                    finally:
                        os._exit(70)
                self.pids.append(pid)
                self.alive.append(True)
                store(worker_off(wid, 0), pid)
        finally:
            _arena.forking_workers = False
            os.close(death_r)
        self.death_w = death_w
        for pid in self.pids:
            self.pidfds.append(os.pidfd_open(pid))

    def _connect(self) -> None:
        self.link = Link(self.token, self.run_tag, SUPERVISOR,
                         on_sent=lambda k: add(H_SUP_SENT, k),
                         on_recv=lambda k: add(H_SUP_RECV, k))
        self.ep = _select.epoll()
        self.ep.register(self.link.fd, _select.EPOLLIN)
        for fd in self.pidfds:
            self.ep.register(fd, _select.EPOLLIN)
        self.signal_fd_r, self.signal_fd_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ep.register(self.signal_fd_r, _select.EPOLLIN)
        hello: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT
        while len(hello) < self.n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("mpgo: workers did not start within "
                                   f"{START_TIMEOUT:.0f} s ({len(hello)}/{self.n} ready)")
            for fd, _ev in self._poll(min(left, 0.5)):
                if fd in self.pidfds:
                    self._worker_died(self.pidfds.index(fd))
            for msg in self.link.recv_all():
                for frame in msg[2:]:
                    if frame[0] == _wire.HELLO:
                        hello.add(msg[0])

    def _poll(self, timeout: float) -> list[tuple[int, int]]:
        try:
            return self.ep.poll(timeout)
        except InterruptedError:
            return []

    # -- messaging -------------------------------------------------------------

    def send(self, dst: int, frame: list[Any]) -> None:
        assert self.link is not None
        self.link.queue.append((dst, frame))

    def ticket(self) -> int:
        self._ticket += 1
        return self._ticket

    # -- one run ---------------------------------------------------------------

    def run(self, main_blob: bytes | None, timeout: float | None = None,
            leak_check: bool = False) -> Any:
        """Run main (inherited when main_blob is None) and return its value.

        timeout: give up after that many seconds with `TimeoutError` carrying
        every goroutine's dump (tests). leak_check: after main returned, wait
        briefly for the other goroutines to finish, then raise
        `LeakedGoroutines` with the dump of those still alive.
        """
        self.deadline = None if timeout is None else time.monotonic() + timeout
        if self.broken is not None:
            raise RuntimeError(f"mpgo: this runtime is broken by an earlier failure: "
                               f"{self.broken}") from self.broken
        assert self.link is not None
        self.run_id += 1
        self.link.run = 0           # START_RUN travels outside any run
        self.outcome = None
        self.last_sample = None
        self.state.pop("interrupted", None)
        self.hogs.clear()
        self.globalq.clear()
        store(H_GLOBALQ, 0)
        store(H_GID, 0)
        for hook in ON_RUN_START:
            hook(self)
        # Every worker but 0 starts the run idle: say so now, so that main's
        # first spawns are handed out before main's own worker starts them.
        for wid in range(1, self.n):
            _arena.set_idle(wid)
        for wid in range(self.n):
            self.send(wid, [_wire.START_RUN, self.run_id, main_blob if wid == 0 else None])
        self.link.flush()
        self.link.run = self.run_id
        old = self._install_signals()
        try:
            self._loop()
        finally:
            self._restore_signals(old)
        assert self.outcome is not None
        kind, value = self.outcome
        if kind == "ok" and leak_check:
            self._check_leaks()
        if kind == "ok":
            return value
        raise value

    def live_goroutines(self) -> int:
        return sum(load(worker_off(w, W_LIVE)) for w in range(self.n) if self.alive[w])

    def _check_leaks(self) -> None:
        assert self.link is not None
        deadline = time.monotonic() + LEAK_GRACE
        while self.live_goroutines() > 0 and time.monotonic() < deadline:
            self._poll(0.01)
            for msg in self.link.recv_all():
                self._dispatch(msg)
            for hook in BEFORE_FLUSH:
                hook(self)
            self.link.flush()
        n = self.live_goroutines()
        if n > 0:
            text = self.collect_dump()
            raise LeakedGoroutines(
                f"mpgo: {n} goroutine(s) still alive after main returned:\n\n{text}")

    def _loop(self) -> None:
        link = self.link
        assert link is not None
        next_sample = time.monotonic() + DEADLOCK_EVERY
        while self.outcome is None:
            timeout = max(0.0, next_sample - time.monotonic())
            b = self.state.get("broker")
            due = b.home.next_deadline() if b is not None else None
            if due is not None:
                timeout = max(0.0, min(timeout, due - time.monotonic()))
            if link.readable() or link.queue:
                timeout = 0.0
            events = self._poll(timeout)
            for fd, _ev in events:
                if fd == self.signal_fd_r:
                    self._drain_signal_pipe()
                elif fd != link.fd and fd in self.pidfds:
                    self._worker_died(self.pidfds.index(fd))
                    if self.outcome is not None:
                        return
            for msg in link.recv_all(limit=4096):
                self._dispatch(msg)
                if self.outcome is not None:
                    break
            if self.pending_signals:
                self._handle_signals()
            for hook in BEFORE_FLUSH:
                hook(self)
            link.flush()
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + DEADLOCK_EVERY
                self._sample()
                expire_dumps(self)
                if self.deadline is not None and now > self.deadline:
                    text = self.collect_dump()
                    self.finish("err", TimeoutError(
                        f"mpgo: main did not return in time; goroutines:\n\n{text}"))
                intr = self.state.get("interrupted")
                if intr and now - intr > INTERRUPT_GRACE:
                    # main's finally blocks had their chance: bounded exit (P13)
                    self.finish("err", KeyboardInterrupt())

    def _dispatch(self, msg: list[Any]) -> None:
        src, run = msg[0], msg[1]
        if run != self.run_id and run != 0:
            return
        for frame in msg[2:]:
            h = SUP_HANDLERS.get(frame[0])
            if h is not None:
                h(self, src, frame)

    def finish(self, kind: str, value: Any) -> None:
        """Set the run's outcome (first one wins)."""
        if self.outcome is None:
            self.outcome = (kind, value)

    def end_run(self) -> None:
        """Reused runtime: drop every goroutine of the run, wait until all did."""
        assert self.link is not None
        for hook in ON_RUN_END:
            hook(self)
        for wid in range(self.n):
            self.send(wid, [_wire.END_RUN, self.run_id])
        self.link.flush()
        waiting = set(range(self.n))
        deadline = time.monotonic() + KILL_AFTER
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                self.broken = RuntimeError(
                    f"mpgo: workers {sorted(waiting)} did not finish the previous run "
                    f"(a goroutine may be computing without parking)")
                return
            for fd, _ev in self._poll(min(left, 0.2)):
                if fd in self.pidfds:
                    wid = self.pidfds.index(fd)
                    self._worker_died(wid)
                    waiting.discard(wid)
            for msg in self.link.recv_all():
                for frame in msg[2:]:
                    if frame[0] == _wire.RUN_ENDED and frame[1] == self.run_id:
                        waiting.discard(msg[0])
        self.link.run = 0

    # -- failures --------------------------------------------------------------

    def _worker_died(self, wid: int) -> None:
        if not self.alive[wid]:
            return
        pid = self.pids[wid]
        try:
            _, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            status = 0
        if status == 0 and self.closed:
            return
        self.alive[wid] = False
        try:
            self.ep.unregister(self.pidfds[wid])
        except (OSError, ValueError):
            pass
        code: int | None = None
        sig: str | None = None
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
        elif os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
        self.exitinfo[wid] = (code, sig)
        snap = _arena.read_snapshot(wid)
        gids = tuple(int(x.split()[1]) for x in snap.splitlines() if x.startswith("goroutine "))
        running = load(worker_off(wid, W_RUNNING))
        if running and running not in gids:
            snap = f"goroutine {running} [running]\n" + snap
            gids = (running, *gids)
        how = f"was killed by {sig}" if sig else f"exited with status {code}"
        held = "; it held:\n  " + "\n  ".join(snap.splitlines()) if snap else \
            "; it held no goroutines that mpgo knows of"
        err = WorkerDied(f"mpgo: worker {wid} (pid {pid}) {how}{held}",
                         worker=wid, pid=pid, exitcode=code, signal=sig, goroutines=gids)
        for hook in ON_WORKER_DEATH:
            try:
                hook(self, wid)
            except Exception:  # noqa: BLE001 - the run is failing anyway; keep going
                pass
        for t, st in list(self.dump_waits.items()):
            st["want"].discard(wid)
            if set(st["got"]) >= st["want"]:
                _answer_dump(self, t)
        self.broken = err
        self.finish("err", err)

    # -- deadlock detection (docs/design.md §8) --------------------------------

    def _sample(self) -> None:
        sent = load(H_SUP_SENT)
        recv = load(H_SUP_RECV)
        epochs = []
        for wid in range(self.n):
            if not self.alive[wid]:
                return
            if load(worker_off(wid, W_IDLE)) != 1:
                self.last_sample = None
                return
            if (load(worker_off(wid, W_TIMERS)) or load(worker_off(wid, W_FDS))
                    or load(worker_off(wid, W_STEALABLE)) or load(worker_off(wid, W_SYSMON))):
                self.last_sample = None
                return
            sent += load(worker_off(wid, W_SENT))
            recv += load(worker_off(wid, W_RECV))
            epochs.append(load(worker_off(wid, W_EPOCH)))
        if sent != recv or self.globalq or (self.link and self.link.queue):
            self.last_sample = None
            return
        sample = (sent, recv, tuple(epochs), self.busy_token())
        if sample != self.last_sample:
            self.last_sample = sample
            return
        self.last_sample = None
        text = self.collect_dump(timeout=2.0)
        self.finish("err", Deadlock("all goroutines are asleep - deadlock!\n\n" + text))

    def busy_token(self) -> Any:
        """Anything the subsystems consider activity (e.g. broker timers)."""
        return tuple(sorted(self.state.get("busy", {}).items()))

    def collect_dump(self, timeout: float = 2.0) -> str:
        """Ask every worker for its goroutines and wait (bounded) for the answers."""
        assert self.link is not None
        t = self.ticket()
        for wid in range(self.n):
            if self.alive[wid]:
                self.send(wid, [_wire.DUMP_REQ, t])
        self.link.flush()
        got: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        want = {w for w in range(self.n) if self.alive[w]}
        while set(got) != want and time.monotonic() < deadline:
            self._poll(0.05)
            for msg in self.link.recv_all():
                for frame in msg[2:]:
                    if frame[0] == _wire.DUMP and frame[1] == t:
                        got[msg[0]] = frame[2]
                    elif frame[0] in (_wire.DUMP, _wire.DUMP_REQ):
                        self._dispatch([msg[0], msg[1], frame])
        parts = [got[w] for w in sorted(got) if got[w]]
        missing = sorted(want - set(got))
        if missing:
            parts.append(f"(workers {missing} did not answer: busy computing)")
        return "\n\n".join(parts)

    # -- signals ---------------------------------------------------------------

    def _install_signals(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        old: dict[Any, Any] = {}
        try:
            old["wakeup"] = signal.set_wakeup_fd(self.signal_fd_w)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
                old[s] = signal.signal(s, self._on_signal)
        except (ValueError, OSError):
            return None
        return old

    def _restore_signals(self, old: Any) -> None:
        if not old:
            return
        for s, h in old.items():
            if s == "wakeup":
                signal.set_wakeup_fd(h)
            else:
                signal.signal(s, h)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.pending_signals.append(signum)

    def _drain_signal_pipe(self) -> None:
        try:
            while os.read(self.signal_fd_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _handle_signals(self) -> None:
        sigs, self.pending_signals = self.pending_signals, []
        for s in sigs:
            if s == signal.SIGUSR1:
                text = self.collect_dump()
                sys.stderr.write("mpgo: SIGUSR1 dump\n" + text + "\n")
                sys.stderr.flush()
                continue
            if self.state.get("interrupted"):
                # Second signal: stop waiting for main's finally blocks.
                exc: BaseException = KeyboardInterrupt() if s == signal.SIGINT else SystemExit(128 + s)
                self.finish("err", exc)
                return
            self.state["interrupted"] = time.monotonic()
            self.send(0, [_wire.INTERRUPT, int(s)])

    # -- shutdown --------------------------------------------------------------

    def close(self) -> None:
        """Stop every worker (bounded) and release every resource. Idempotent."""
        global ACTIVE
        if self.closed:
            return
        self.closed = True
        if ACTIVE is self:
            ACTIVE = None
        link = self.link
        if link is not None and not link.closed:
            for wid in range(self.n):
                if self.alive[wid]:
                    link.send(wid, [_wire.EXIT])
            try:
                link.flush()
            except Exception:  # noqa: BLE001 - shutting down; sockets may be gone
                pass
        self._reap(EXIT_GRACE, None)
        self._reap(KILL_AFTER - EXIT_GRACE, signal.SIGTERM)
        self._reap(2.0, signal.SIGKILL)
        if link is not None:
            link.close()
        for fd in (*self.pidfds, self.signal_fd_r, self.signal_fd_w, self.death_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.ep is not None:
            self.ep.close()

    def _reap(self, wait: float, sig: int | None) -> None:
        left = [w for w in range(self.n) if self._not_reaped(w)]
        if not left:
            return
        if sig is not None:
            for w in left:
                try:
                    os.kill(self.pids[w], sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            left = [w for w in left if self._not_reaped(w)]
            if left:
                time.sleep(0.002)

    def _not_reaped(self, wid: int) -> bool:
        pid = self.pids[wid]
        if pid == 0:
            return False
        try:
            p, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            self.pids[wid] = 0
            return False
        if p == 0:
            return True
        self.pids[wid] = 0
        return False


def _in_worker() -> bool:
    from . import _worker
    return _worker.W is not None


def decode_exception(blob: bytes | None, tb: str, text: str) -> BaseException:
    """The original exception, or a stand-in carrying its text (P11)."""
    exc: BaseException | None = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except BaseException as e:  # noqa: BLE001 - unpickling may raise anything
            text = f"{text} (its unpickling failed: {type(e).__name__}: {e})"
    if not isinstance(exc, BaseException):
        name, _, msg = text.partition(": ")
        exc = RemoteException(name or "Exception", msg, tb)
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


@sup_handler(_wire.MAIN_DONE)
def _h_main_done(sup: Supervisor, src: int, f: list[Any]) -> None:
    ok, blob, tb = f[1], f[2], f[3]
    if ok:
        try:
            sup.finish("ok", pickle.loads(blob))
        except BaseException as e:  # noqa: BLE001
            sup.finish("err", TypeError(f"mpgo: main's return value could not be "
                                        f"unpickled: {type(e).__name__}: {e}"))
        return
    exc = decode_exception(blob, tb, "main raised")
    sup.finish("err", exc)


@sup_handler(_wire.FAILED)
def _h_failed(sup: Supervisor, src: int, f: list[Any]) -> None:
    gid, blob, tb, text = f[1], f[2], f[3], f[4]
    cause = decode_exception(blob, "", text)
    err = GoroutineError(
        f"goroutine {gid} (worker {src}) raised {text}\n\nRemote traceback:\n{tb}",
        goroutine=gid, worker=src, remote_traceback=tb)
    err.__cause__ = cause
    sup.finish("err", err)


@sup_handler(_wire.GLOBAL_PUT)
def _h_global_put(sup: Supervisor, src: int, f: list[Any]) -> None:
    recs = f[1]
    sup.globalq.extend(recs)
    add(H_GLOBALQ, len(recs))
    idle = [w for w in _arena.idle_workers(sup.n) if w != src]
    for w in idle:
        if not sup.globalq:
            break
        if _arena.clear_idle(w):
            _give_global(sup, w)


def _give_global(sup: Supervisor, dst: int) -> None:
    q = sup.globalq
    n = max(1, (len(q) + 1) // 2) if q else 0
    recs = [q.popleft() for _ in range(min(n, len(q)))]
    if recs:
        add(H_GLOBALQ, -len(recs))
        add(worker_off(dst, W_NRUN), len(recs))
    sup.send(dst, [_wire.RECORDS, recs])


@sup_handler(_wire.GLOBAL_GET)
def _h_global_get(sup: Supervisor, src: int, f: list[Any]) -> None:
    _give_global(sup, src)


@sup_handler(_wire.HOG)
def _h_hog(sup: Supervisor, src: int, f: list[Any]) -> None:
    sup.hogs.append((src, f[1], f[2], f[3], f[4]))


@sup_handler(_wire.DUMP_REQ)
def _h_dump_req(sup: Supervisor, src: int, f: list[Any]) -> None:
    """A goroutine called mpgo.dump(): gather every worker's part, answer it."""
    t = sup.ticket()
    want = {w for w in range(sup.n) if sup.alive[w]}
    sup.dump_waits[t] = {"src": src, "ticket": f[1], "want": want, "got": {},
                         "deadline": time.monotonic() + DUMP_WAIT}
    for wid in want:
        sup.send(wid, [_wire.DUMP_REQ, t])


@sup_handler(_wire.DUMP)
def _h_dump(sup: Supervisor, src: int, f: list[Any]) -> None:
    st = sup.dump_waits.get(f[1])
    if st is None:
        return
    st["got"][src] = f[2]
    if set(st["got"]) >= st["want"]:
        _answer_dump(sup, f[1])


def _answer_dump(sup: Supervisor, t: int) -> None:
    """Answer a dump with what arrived; a worker that did not answer (computing
    without parking, or dead) is shown from its shared-memory snapshot."""
    st = sup.dump_waits.pop(t)
    parts = [st["got"][w] for w in sorted(st["got"]) if st["got"][w]]
    for w in sorted(st["want"] - set(st["got"])):
        snap = _arena.read_snapshot(w)
        parts.append(f"(worker {w} did not answer: busy computing without parking; "
                     f"its goroutines as last seen:)\n" + snap)
    sup.send(st["src"], [_wire.DUMP, st["ticket"], "\n\n".join(parts)])


def expire_dumps(sup: Supervisor) -> None:
    """Answer dumps whose workers did not all reply in time (called by the loop)."""
    if not sup.dump_waits:
        return
    now = time.monotonic()
    for t in [t for t, st in sup.dump_waits.items() if st["deadline"] <= now]:
        _answer_dump(sup, t)


__all__ = ["Supervisor", "SUP_HANDLERS", "sup_handler", "ACTIVE", "_errors"]
