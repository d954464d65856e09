"""A worker process: the hub's hooks, spawning and stealing, results, sysmon.

Strategy
--------
The worker plugs into the core scheduler (`_sched.Hooks`) and owns the
process's `Link`. Frames are dispatched by type through `HANDLERS`, which the
channel and lock layers extend. Spawn records move between workers as
``[gid, home, blob]`` (blob = cloudpickle of ``(fn, args, kwargs)``); a record
that cannot be pickled is pinned to the run queue here (never an error).

Who owns what: everything below belongs to the hub thread, except what
`_Sysmon` touches while the hub is stalled: the spawn queue (deque pops are
atomic under the GIL), `Link.flush` (under the link's lock), and the arena.

Lifecycle: fork → `main()` → HELLO → per run: START_RUN … END_RUN → EXIT.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import random
import select as _select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from threading import get_ident
from typing import Any

from .._core import _chan, _sched
from .._core._sched import DEAD, G
from .._errors import ClosedChannelError
from .._transport import _arena, _wire
from .._transport._arena import (
    H_GID,
    H_GLOBALQ,
    W_EPOCH,
    W_FDS,
    W_IDLE,
    W_LIVE,
    W_NRUN,
    W_RECV,
    W_RUNNING,
    W_SENT,
    W_STEAL_REQ,
    W_STEALABLE,
    W_SYSMON,
    W_TIMERS,
    worker_off,
)
from .._transport._atomic import add, cas, load, store, swap
from .._transport._link import SUPERVISOR, Link

HOG_THRESHOLD = float(os.environ.get("MPGO_HOG_THRESHOLD", "1.0"))
STALL = 0.002           # sysmon acts for a hub that has not ticked for this long
STEAL_RETRY = 0.05      # give up on an unanswered steal request after this long
MAX_SHIP = 256          # records per hand-out (Go's runq holds 256): bounds a steal's cost
STEAL_GRACE = 0.001     # a running hub keeps records this young from thieves
STEAL_GRACE_LOADED = 0.01   # ... and this young from thieves that have goroutines
STEAL_OLD = 1 << 20     # steal-request flag: the thief has goroutines (parked)
SNAPSHOT_EVERY = 0.02   # sysmon refreshes the goroutine snapshot (for WorkerDied)
SNAPSHOT_MAX = 40
IO_POLL_EVERY = 0.001   # a busy hub still looks at its fds this often
INBOX_EVERY = 20e-6     # a busy hub looks at its inbox at most this often
FLUSH_AGE = 100e-6      # while goroutines run, frames wait at most this long (§3)
FLUSH_FRAMES = 512      # ... or until this many are queued

Handler = Callable[[int, list[Any]], None]
HANDLERS: dict[int, Handler] = {}

W: Worker | None = None      # the worker of this process (None in the supervisor)
ON_WORKER_START: list[Callable[[Worker], None]] = []   # after the link exists, before HELLO


def handler(kind: int) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn
    return deco


_FORKED_FROM_WORKER = 0      # pid of the worker this process was forked from (P18)


def current_worker() -> Worker:
    """The worker this goroutine runs on. Any goroutine; raises outside mpgo.run."""
    w = W
    if w is None:
        if _FORKED_FROM_WORKER:
            raise RuntimeError(
                f"mpgo: this process was forked from mpgo worker pid {_FORKED_FROM_WORKER}; "
                "mpgo cannot be used in it (start a new mpgo.run in a fresh process instead)")
        raise RuntimeError("mpgo: this call must be made inside mpgo.run (from a goroutine)")
    if get_ident() != _sched._hub_thread:
        _sched.check_thread()
    return w


def _after_fork_in_child() -> None:
    """User code forked a worker: the child is not a worker (no hub, no sockets)."""
    global W, _FORKED_FROM_WORKER
    if W is not None:
        _FORKED_FROM_WORKER = W.pid
        W = None
        _sched._hub_gr = None
        _sched._hub_thread = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


def _set_pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Worker(_sched.Hooks):
    """The runtime side of one worker process. Made right after the fork."""

    def __init__(self, wid: int, n: int, token: bytes, run_tag: str, sup_pid: int,
                 death_fd: int) -> None:
        self.wid = wid
        self.n = n
        self.token = token
        self.run_tag = run_tag
        self.sup_pid = sup_pid
        self.pid = os.getpid()
        self.death_fd = death_fd
        self.run = 0
        self.main_g: G | None = None
        self.shipped: dict[int, G] = {}        # records shipped elsewhere, by gid
        self.exported: dict[int, G] = {}       # handles pickled to other workers
        self.remote_joins: dict[int, list[tuple[int, int]]] = {}
        self.tickets: dict[int, Any] = {}      # ticket -> parked G (or callback)
        self._ticket = 0
        self.steal_pending = 0.0               # deadline of our unanswered steal request
        self.steal_victim = -1
        self.steal_old_only = False
        self.global_pending = False
        self.future: list[list[Any]] = []      # messages of a run not started here yet
        self.exiting = False
        self.arriving = False
        self.in_poll = False
        self.published = 0
        self.rand = random.Random()
        self.link: Link = None  # type: ignore[assignment]
        self.ep: Any = None
        self.wake_r = self.wake_w = -1
        self.interrupted = False
        self.pending_interrupt: BaseException | None = None
        self.sysmon: _Sysmon | None = None
        self.off_sent = worker_off(wid, W_SENT)
        self.off_recv = worker_off(wid, W_RECV)
        self.off_live = worker_off(wid, W_LIVE)
        self.off_stealable = worker_off(wid, W_STEALABLE)
        self.off_steal_req = worker_off(wid, W_STEAL_REQ)
        self.off_idle = worker_off(wid, W_IDLE)
        self.off_epoch = worker_off(wid, W_EPOCH)
        self.off_running = worker_off(wid, W_RUNNING)
        self.off_timers = worker_off(wid, W_TIMERS)
        self.off_sysmon = worker_off(wid, W_SYSMON)
        self.off_fds = worker_off(wid, W_FDS)
        self.off_nrun = worker_off(wid, W_NRUN)
        self.nrun_offs = [worker_off(v, W_NRUN) for v in range(n) if v != wid]
        self.burst_fn: Any = None
        self.burst_tick = -1
        self.nrun_wids = [v for v in range(n) if v != wid]
        self.io: Any = None
        self.chome: Any = None          # channels homed here (pair mode), per run
        self.last_io_poll = 0.0
        self.last_inbox_look = 0.0
        self.first_queued = 0.0
        self.revoking: dict[int, set[int]] = {}   # cid -> holders whose fence we await
        self.fences: dict[int, set[int]] = {}     # cid -> fences that came before CH_REVOKE
        self.moving: dict[int, Any] = {}          # cid -> px holding frames during a move
        self.ring_seen: dict[int, int] = {}       # cid -> ring grant its sender saw (fence)
        self.ring_pool: dict[int, int] = {}       # sender -> ring this worker reads (§6.9)
        self.on_run_start: list[Callable[[], None]] = []
        self.on_run_end: list[Callable[[], None]] = []
        self.on_flush: list[Callable[[], None]] = []

    # -- process setup ---------------------------------------------------------

    def main(self, inherited: Any) -> None:
        """Entry point after the fork; never returns (the process `_exit`s)."""
        global W
        W = self
        code = 0
        try:
            self._setup()
            for hook in ON_WORKER_START:
                hook(self)
            self.link.send(SUPERVISOR, [_wire.HELLO, self.pid])
            self.link.flush()
            self.inherited = inherited
            _sched.init(self, new_id=lambda: add(H_GID, 1))
            # the running goroutine's id lands in our table line at every switch
            _sched._running_mv = memoryview(_arena.buffer()).cast("q")
            _sched._running_at = self.off_running // 8
            self.sysmon = _Sysmon(self)
            self.sysmon.start()
            _sched.hub_loop()
        except BaseException:  # noqa: BLE001 - last resort: report, then exit non-zero
            code = 70
            try:
                traceback.print_exc()
            except BaseException:  # noqa: BLE001
                pass
        finally:
            self.exiting = True
            for f in (sys.stdout, sys.stderr):
                try:
                    f.flush()
                except BaseException:  # noqa: BLE001 - stdio may be closed
                    pass
            try:
                if self.link is not None:
                    self.link.close()
            except BaseException:  # noqa: BLE001
                pass
            os._exit(code)

    def _setup(self) -> None:
        _set_pdeathsig()
        if os.getppid() != self.sup_pid:
            os._exit(0)         # the supervisor died before we set PDEATHSIG
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        try:
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass
        seed = os.urandom(16)
        random.seed(seed)
        self.rand.seed(seed + b"mpgo")
        _chan.seed(int.from_bytes(os.urandom(8), "little"))
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.link = Link(self.token, self.run_tag, self.wid,
                         on_sent=lambda k: add(self.off_sent, k),
                         on_recv=lambda k: add(self.off_recv, k))
        self.ep = _select.epoll()
        self.ep.register(self.link.fd, _select.EPOLLIN)
        self.ep.register(self.death_fd, _select.EPOLLIN | _select.EPOLLHUP)
        self.ep.register(self.wake_r, _select.EPOLLIN)

    # -- tickets ---------------------------------------------------------------

    def ticket(self, obj: Any) -> int:
        """A fresh ticket resolving to `obj` (a parked G or a callback). Hub thread."""
        self._ticket += 1
        self.tickets[self._ticket] = obj
        return self._ticket

    def send(self, dst: int, frame: list[Any]) -> None:
        """Queue a frame. Hub thread. It leaves when the run queue empties, or
        at a hub turn once it waited FLUSH_AGE: what the goroutines runnable now
        produce rides in the same message (a reply and the next request)."""
        q = self.link.queue
        if not q:
            self.first_queued = time.monotonic()
        q.append((dst, frame))

    # -- scheduler hooks -------------------------------------------------------

    def spawned(self, g: G) -> None:
        # The published word says only whether records are stealable (0/1):
        # it changes on transitions, not on every spawn.
        if not _sched._spawnq:
            return
        if not self.published:
            self.published = 1
            swap(self.off_stealable, 1)          # an RMW: a full barrier (see §5.3)
        if load(self.off_steal_req):
            self.serve_steal(False)
        # Records that just arrived are not handed on (they would bounce
        # between idle workers); only thieves may take them from here.
        elif not self.arriving and _arena.any_idle(self.n):
            self.wakep()

    def place(self, g: G) -> int:
        """Where a new goroutine of a spawn burst should start (go()).

        A burst is several spawns of the same function by one goroutine with
        no park in between: a pool of workers, a batch of tasks. Started
        goroutines never move between processes, so their placement is
        decided here: each goes to the least-loaded worker (load = goroutines
        queued or started there, W_NRUN), this one on ties. The first of a
        burst stays here, so spawn-then-join stays local. "The same
        function" means the same code: closures made in a loop (Go's
        ``go func() {...}()``) are one burst.
        """
        fn = g.fn
        f = getattr(fn, "__func__", fn)          # a bound method: its function
        key = getattr(f, "__code__", f)
        tick = _sched._tick
        if key is not self.burst_fn or tick != self.burst_tick or self.n == 1:
            self.burst_fn = key
            self.burst_tick = tick
            return self.wid
        best, best_n = self.wid, load(self.off_nrun)
        for v, off in zip(self.nrun_wids, self.nrun_offs, strict=True):
            k = load(off)
            if k < best_n:
                best, best_n = v, k
        return best

    def publish(self) -> None:
        n = 1 if _sched._spawnq else 0
        if n != self.published:
            self.published = n
            swap(self.off_stealable, n)

    def start(self, g: G) -> None:
        store(self.off_running, g.id)
        blob = g.blob
        if blob is not None:
            g.blob = None
            g.fn, g.args, g.kwargs = pickle.loads(blob)

    def exited(self, g: G) -> None:
        add(self.off_nrun, -1)
        add(self.off_live, -1)
        if g is self.main_g:
            self._main_done(g)
        elif g.exc is not None:
            self._report_failure(g)
        if g.home != self.wid and g.home >= 0:
            self._send_result(g)
        else:
            rj = self.remote_joins.pop(g.id, None)
            if rj:
                self._answer_remote_joins(g, rj)

    def flush(self, force: bool = False) -> None:
        """What was produced leaves: batched deliveries of channels homed here
        first (on_flush: those for this worker are handed over at once), then
        the link's queue — unless that made goroutines runnable and not force:
        what they produce next rides in the same message."""
        for f in self.on_flush:
            f()
        if not force and _sched.has_runnable():
            return
        self.link.flush()

    def _deliver_interrupt(self) -> None:
        """A Ctrl-C that came while main was running lands at its next park."""
        g = self.main_g
        exc = self.pending_interrupt
        if g is None or g.status == DEAD:
            self.pending_interrupt = None
        elif g.status == _sched.WAITING and exc is not None:
            self.pending_interrupt = None
            self.interrupt(g, exc)

    def turn(self) -> None:
        if self.pending_interrupt is not None:
            self._deliver_interrupt()
        self.publish()
        if load(self.off_steal_req):
            self.serve_steal(False)
        link = self.link
        # The inbox is looked at here only while goroutines wait to run (a hub
        # about to go idle looks in idle() and poll()), and then at most every
        # INBOX_EVERY: a look costs a few µs, a hub turn can be much shorter.
        if link.local:
            self.read_messages()
        elif _sched.has_runnable():
            now = time.monotonic()
            if now - self.last_inbox_look > INBOX_EVERY:
                self.last_inbox_look = now
                if link.readable():
                    self.read_messages()
        io = self.io
        if io is not None and io.fds:
            # goroutines keep the hub busy, but a ready socket must not wait
            # for the run queue to drain (Go's scheduler polls the netpoller too)
            now = time.monotonic()
            if now - self.last_io_poll > IO_POLL_EVERY:
                self.last_io_poll = now
                io.poll_now()
        q = self.link.queue
        if len(q) > FLUSH_FRAMES or (q and time.monotonic() - self.first_queued > FLUSH_AGE):
            self.flush(force=True)
        elif not _sched.has_runnable():
            self.flush()

    def idle(self) -> None:
        if self.pending_interrupt is not None:
            self._deliver_interrupt()
            if _sched.has_runnable():
                return
        self.publish()
        self.flush()
        if self.link.readable():
            self.read_messages()
            if _sched.has_runnable():
                return
        self.flush()
        if self.steal_pending or self.global_pending:
            if self.steal_pending and time.monotonic() > self.steal_pending:
                cas(worker_off(self.steal_victim, W_STEAL_REQ), self.wid + 1, 0)
                cas(worker_off(self.steal_victim, W_STEAL_REQ), (self.wid + 1) | STEAL_OLD, 0)
                self.steal_pending = 0.0
            else:
                return
        _arena.set_idle(self.wid)                # RMW first, then look (§5.3)
        if load(H_GLOBALQ) > 0:
            self.global_pending = True
            self.link.send(SUPERVISOR, [_wire.GLOBAL_GET])
            self.link.flush()
            return
        victims = [v for v in range(self.n)
                   if v != self.wid and load(worker_off(v, W_STEALABLE)) > 0]
        if victims and load(self.off_nrun) > 0:
            # This worker has goroutines, parked for now (a pool worker waiting
            # on a channel): it takes only records that waited long elsewhere,
            # since whatever starts here stays here (see place()).
            self.steal_old_only = True
        else:
            self.steal_old_only = False
        if victims:
            v = victims[0] if len(victims) == 1 else self.rand.choice(victims)
            req = (self.wid + 1) | (STEAL_OLD if self.steal_old_only else 0)
            if cas(worker_off(v, W_STEAL_REQ), 0, req):
                self.steal_victim = v
                self.steal_pending = time.monotonic() + STEAL_RETRY

    def poll(self, timeout: float | None) -> bool:
        if self.steal_pending:
            left = max(0.0, self.steal_pending - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        self.flush()        # nothing may wait in a queue while we sleep (P20)
        if _sched.has_runnable():
            return True
        link = self.link
        # armed: the last look found the inbox empty and nothing was received
        # since, so the edge-triggered FD will wake the epoll (§3, P20)
        if link.local or link.queue or (not link.armed and link.readable()):
            timeout = 0.0
        due = self.chome.next_deadline() if self.chome is not None else None
        if due is not None:
            left = max(0.0, due - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        store(self.off_timers, len(_sched._timers))
        store(self.off_running, 0)
        self.in_poll = True
        store(self.off_idle, 1)
        try:
            events = self.ep.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            events = []
        finally:
            store(self.off_idle, 0)
            self.in_poll = False
            add(self.off_epoch, 1)
            _arena.clear_idle(self.wid)
        for fd, ev in events:
            if fd == self.death_fd:
                self.exiting = True
                os._exit(0)         # the supervisor is gone: no orphans (P14)
            elif fd == self.wake_r:
                try:
                    os.read(self.wake_r, 512)
                except BlockingIOError:
                    pass
            elif fd != self.link.fd:       # the inbox is read below in any case
                self.io.on_event(fd, ev)
        self.read_messages()
        return True

    # -- messages --------------------------------------------------------------

    def read_messages(self) -> None:
        """Handle every waiting message; what the handlers answered leaves now.

        The answers (credit, values for a parked receiver, a select's outcome)
        are what another worker waits for; the goroutines these messages woke
        run next and may keep the hub from its next flush for up to TURN_AGE."""
        link = self.link
        if link.pre_pending is not None and link.pre_pending():
            # What this worker consumed and sent on credit reaches the channels
            # homed here first (recv_all hands frames to ourselves first): a
            # grant made for a request read below counts every slot freed so far.
            # Frames for other workers stay queued: they leave with the answers.
            link.flush_local()
        for msg in link.recv_all():
            self.dispatch(msg)
        if link.queue:
            self.flush(force=True)

    def dispatch(self, msg: list[Any]) -> None:
        src, run = msg[0], msg[1]
        if run != self.run and run != 0:
            if run > self.run:
                self.future.append(msg)
            return
        for frame in msg[2:]:
            h = HANDLERS.get(frame[0])
            if h is None:
                continue
            h(src, frame)

    # -- spawning and stealing -------------------------------------------------

    def wakep(self) -> None:
        """Records are queued and a worker is idle: claim one, hand it half.

        Only a worker with no goroutine at all: an idle worker whose goroutines
        are parked (a pool of workers blocked on a channel) is idle now but
        loaded, and started goroutines never move.
        """
        idle = _arena.idle_workers(self.n)
        if len(idle) > 1:
            self.rand.shuffle(idle)
            idle.sort(key=lambda v: load(worker_off(v, W_NRUN)))
        for v in idle:
            if v != self.wid and load(worker_off(v, W_NRUN)) == 0 \
                    and _arena.clear_idle(v):
                n = len(_sched._spawnq)
                self.ship(v, (n + 1) // 2)
                return

    def serve_steal(self, from_sysmon: bool) -> None:
        """Answer the steal request posted in our table line (hub, or sysmon when stalled).

        A running hub keeps records younger than STEAL_GRACE: it is about to
        start them itself (Go keeps runnext from thieves for a few µs), and a
        goroutine started here for good is often one a pool placed here on
        purpose. The request then waits; the thief gives up after STEAL_RETRY.
        """
        req = load(self.off_steal_req)
        if not req:
            return
        q = _sched._spawnq
        if q:
            grace = STEAL_GRACE_LOADED if req & STEAL_OLD else (0.0 if from_sysmon else STEAL_GRACE)
            try:
                if time.monotonic() - q[0].since < grace:
                    return
            except IndexError:
                pass
        if not cas(self.off_steal_req, req, 0):
            return
        thief = (req & ~STEAL_OLD) - 1
        if from_sysmon and not _sched._spawnq:
            # Our hub is stuck in a goroutine that does not park: its runnext
            # cannot run soon either, so it becomes stealable.
            _sched.release_runnext()
        n = len(_sched._spawnq)
        self.ship(thief, (n + 1) // 2, from_sysmon=from_sysmon)

    def ship(self, dst: int, n: int, from_sysmon: bool = False) -> int:
        """Move up to n records to worker dst (an empty batch answers a steal)."""
        gs = _sched.take_stealable(min(n, MAX_SHIP))
        recs: list[list[Any]] = []
        for g in gs:
            if g.blob is not None:           # a record that came from elsewhere: as is
                recs.append([g.id, g.home, g.blob])
                _sched._live.pop(g.id, None)
                if g.home == self.wid:
                    self.shipped[g.id] = g
                continue
            try:
                if from_sysmon:
                    _FROM_SYSMON.active = True
                blob = _wire.dumps((g.fn, g.args, g.kwargs))
            except _NotFromSysmon:
                with _sched._qlock:
                    _sched._spawnq.appendleft(g)
                continue
            except TypeError:
                g.pinned = True                  # F11: runs here, never an error
                _sched._runq.append(g)
                continue
            finally:
                _FROM_SYSMON.active = False
            recs.append([g.id, g.home, blob])
            g.fn = None
            g.args = ()
            g.kwargs = None
            _sched._live.pop(g.id, None)
            if g.home == self.wid:
                self.shipped[g.id] = g
        if recs:
            # the load moves with the records, before they arrive (§5.3)
            add(worker_off(dst, W_NRUN), len(recs))
            add(self.off_nrun, -len(recs))
        frame = [_wire.RECORDS, recs]
        if from_sysmon:
            self.link.send_now(dst, [frame])
        else:
            self.send(dst, frame)
        self.published = -1
        self.publish()
        return len(recs)

    # -- results and joins -----------------------------------------------------

    def _send_result(self, g: G) -> None:
        if g.exc is not None:
            return           # the run fails with GoroutineError; nothing to join
        try:
            frame = [_wire.RESULT, g.id, True, _wire.encode(g.result)]
        except (TypeError, ValueError) as e:
            frame = [_wire.RESULT, g.id, False, str(e)]
        self.send(g.home, frame)

    def _answer_remote_joins(self, g: G, joins: list[tuple[int, int]]) -> None:
        frame_ok: list[Any]
        if g.exc is not None:
            frame_ok = [False, f"goroutine {g.id} raised {type(g.exc).__name__}: {g.exc}"]
        else:
            try:
                frame_ok = [True, _wire.encode(g.result)]
            except (TypeError, ValueError) as e:
                frame_ok = [False, str(e)]
        for src, ticket in joins:
            self.send(src, [_wire.JOINED, ticket, *frame_ok])

    def _main_done(self, g: G) -> None:
        exc = g.exc
        if exc is None:
            try:
                blob = _wire.dumps(g.result)
                frame = [_wire.MAIN_DONE, True, blob, ""]
            except TypeError as e:
                frame = [_wire.MAIN_DONE, False, _exc_blob(e), ""]
        else:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            frame = [_wire.MAIN_DONE, False, _exc_blob(exc), tb]
        self.send(SUPERVISOR, frame)

    def _report_failure(self, g: G) -> None:
        exc = g.exc
        assert exc is not None
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.send(SUPERVISOR, [_wire.FAILED, g.id, _exc_blob(exc), tb,
                               f"{type(exc).__name__}: {exc}"])

    # -- runs ------------------------------------------------------------------

    def start_run(self, run: int, main_blob: bytes | None) -> None:
        self.run = run
        self.link.run = run
        for f in self.on_run_start:
            f()
        if self.wid == 0:
            if main_blob is None:
                fn, args, kwargs = self.inherited
            else:
                fn, args, kwargs = None, (), None
            g = _sched.new_g(fn, args, kwargs, gid=add(H_GID, 1))
            g.blob = main_blob
            g.home = 0
            add(self.off_live, 1)
            add(self.off_nrun, 1)
            self.main_g = g
            _sched.spawn(g)
        future, self.future = self.future, []
        for msg in future:
            self.dispatch(msg)

    def interrupt(self, g: G, exc: BaseException) -> None:
        """Wake parked g with `exc`, first removing it from whatever it waits on."""
        sel = g.sel
        if sel is not None:
            sel.done = True
            g.sel = None
        q = g.waitq
        if q is not None:
            g.waitq = None
            try:
                q.remove(g)
            except ValueError:
                pass
        for t, v in list(self.tickets.items()):
            if v is g:
                del self.tickets[t]
        _sched.ready_err(g, exc)

    def end_run(self) -> None:
        """Drop every goroutine of the run (reused runtime). Hub greenlet."""
        _sched.kill_all()
        for f in self.on_run_end:
            f()
        self.main_g = None
        store(self.off_nrun, 0)
        self.shipped.clear()
        self.exported.clear()
        self.remote_joins.clear()
        self.tickets.clear()
        self.steal_pending = 0.0
        self.global_pending = False
        store(self.off_live, 0)
        store(self.off_steal_req, 0)
        self.published = -1
        self.publish()


class _NotFromSysmon(BaseException):
    """A record whose pickling would change hub state (promote a channel).

    A BaseException: pickling code that catches Exception (and retries with
    cloudpickle) must let it through to `ship`, which puts the record back."""


class _Flag(threading.local):
    active = False


_FROM_SYSMON = _Flag()


def pickling_from_sysmon() -> bool:
    """Reducers with side effects on hub state call this and refuse (raise)."""
    return _FROM_SYSMON.active


def refuse_sysmon() -> None:
    if _FROM_SYSMON.active:
        raise _NotFromSysmon()


def _exc_blob(exc: BaseException) -> bytes | None:
    try:
        return _wire.dumps(exc)
    except TypeError:
        return None


def _on_sigterm(signum: int, frame: Any) -> None:
    w = W
    if w is not None:
        w.exiting = True
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except BaseException:  # noqa: BLE001
            pass
    os._exit(128 + signum)


# ---------------------------------------------------------------------------
# Frame handlers of the runtime proper
# ---------------------------------------------------------------------------

@handler(_wire.START_RUN)
def _h_start_run(src: int, f: list[Any]) -> None:
    assert W is not None
    W.start_run(f[1], f[2])


@handler(_wire.END_RUN)
def _h_end_run(src: int, f: list[Any]) -> None:
    w = W
    assert w is not None
    w.end_run()
    w.run = 0
    w.link.run = 0
    w.send(SUPERVISOR, [_wire.RUN_ENDED, f[1]])


@handler(_wire.EXIT)
def _h_exit(src: int, f: list[Any]) -> None:
    assert W is not None
    W.exiting = True
    _sched.stop()


@handler(_wire.RECORDS)
def _h_records(src: int, f: list[Any]) -> None:
    w = W
    assert w is not None
    if src == w.steal_victim:
        w.steal_pending = 0.0
        w.steal_victim = -1
    if src == SUPERVISOR:
        w.global_pending = False
    w.arriving = True
    try:
        _spawn_records(w, f[1])
    finally:
        w.arriving = False


def _spawn_records(w: Worker, recs: list[Any]) -> None:
    for gid, home, blob in recs:
        g = w.shipped.pop(gid, None) if home == w.wid else None
        if g is not None:                 # our own record came back: the shell runs it
            g.blob = blob
            g.status = _sched.NEW
            _sched._live[gid] = g
        else:
            g = _sched.new_g(None, (), None, gid=gid)
            g.home = home
            g.blob = blob
        _sched.spawn_back(g)


@handler(_wire.RESULT)
def _h_result(src: int, f: list[Any]) -> None:
    w = W
    assert w is not None
    g = w.shipped.pop(f[1], None)
    if g is None:
        return
    if f[2]:
        try:
            g.result = _wire.decode(f[3])
        except BaseException as e:  # noqa: BLE001 - unpickling can raise anything
            g.exc = e
    else:
        g.exc = TypeError(f"mpgo: goroutine {g.id} finished on worker {src}, but its result "
                          f"cannot be brought back: {f[3]}")
    _finish_shell(g)
    rj = w.remote_joins.pop(g.id, None)
    if rj:
        w._answer_remote_joins(g, rj)


def _finish_shell(g: G) -> None:
    g.status = DEAD
    js = g.joiners
    if js:
        g.joiners = None
        for j in js:
            _sched.ready(j, g)


@handler(_wire.JOIN)
def _h_join(src: int, f: list[Any]) -> None:
    w = W
    assert w is not None
    gid, ticket, probe = f[1], f[2], f[3]
    g = w.exported.get(gid) or w.shipped.get(gid) or _sched._live.get(gid)
    if g is None:
        w.send(src, [_wire.JOINED, ticket, False, f"mpgo: unknown goroutine {gid}"])
        return
    if probe:
        w.send(src, [_wire.JOINED, ticket, True, _wire.encode(g.status == DEAD)])
        return
    if g.status == DEAD:
        w._answer_remote_joins(g, [(src, ticket)])
    else:
        w.remote_joins.setdefault(gid, []).append((src, ticket))


@handler(_wire.JOINED)
def _h_joined(src: int, f: list[Any]) -> None:
    w = W
    assert w is not None
    g = w.tickets.pop(f[1], None)
    if g is None or g.status != _sched.WAITING:
        return
    if f[2]:
        try:
            _sched.ready(g, (True, _wire.decode(f[3])))
        except BaseException as e:  # noqa: BLE001
            _sched.ready(g, (False, e))
    else:
        _sched.ready(g, (False, TypeError(f[3])))


@handler(_wire.DUMP_REQ)
def _h_dump_req(src: int, f: list[Any]) -> None:
    from . import _dump
    w = W
    assert w is not None
    w.send(src, [_wire.DUMP, f[1], _dump.worker_dump(w)])


@handler(_wire.DUMP)
def _h_dump(src: int, f: list[Any]) -> None:
    w = W
    assert w is not None
    g = w.tickets.pop(f[1], None)
    if g is not None:
        _sched.ready(g, f[2])


@handler(_wire.PING)
def _h_ping(src: int, f: list[Any]) -> None:
    assert W is not None
    W.send(src, [_wire.PONG, f[1]])


@handler(_wire.INTERRUPT)
def _h_interrupt(src: int, f: list[Any]) -> None:
    w = W
    assert w is not None
    g = w.main_g
    if g is None or g.status == DEAD:
        return
    exc: BaseException = KeyboardInterrupt() if f[1] == 2 else SystemExit(128 + f[1])
    if g.status == _sched.WAITING:
        w.interrupt(g, exc)




# ---------------------------------------------------------------------------
# sysmon
# ---------------------------------------------------------------------------

class _Sysmon(threading.Thread):
    """Go's sysmon for one worker: serves a stalled hub's queue and outbox,
    reports hogs, and exits the process if the supervisor vanished."""

    def __init__(self, w: Worker) -> None:
        super().__init__(name=f"mpgo-sysmon-{w.wid}", daemon=True)
        self.w = w
        self.last_snap: Any = None

    def run(self) -> None:
        w = self.w
        last_tick = -1
        since = time.monotonic()
        reported = preempted = False
        main_ident = _sched._hub_thread
        next_snap = 0.0
        while not w.exiting:
            time.sleep(0.05 if w.in_poll else STALL)
            if w.exiting:
                return
            if os.getppid() != w.sup_pid:
                os._exit(0)
            tick = _sched._tick
            now = time.monotonic()
            if now >= next_snap:
                next_snap = now + SNAPSHOT_EVERY
                self.snapshot(now)
            if tick != last_tick or w.in_poll:
                last_tick = tick
                since = now
                reported = preempted = False
                continue
            stalled = now - since
            if stalled < STALL:
                continue
            if not preempted:
                # Go's sysmon preemption: the goroutine yields at its next
                # channel operation, so that the hub answers the frames other
                # workers wait on (W9 fan-out measured: a remote sender
                # blocked up to 90 ms behind a home worker's busy goroutine).
                preempted = True
                _sched.request_preempt()
            # While sysmon holds records or frames, the run is not quiescent
            # (the deadlock detector reads this word).
            store(w.off_sysmon, 1)
            try:
                if load(w.off_steal_req):
                    w.serve_steal(True)
                elif (_sched._spawnq or _sched._runnext is not None) \
                        and _arena.any_idle(w.n):
                    idle = [v for v in _arena.idle_workers(w.n)
                            if v != w.wid and load(worker_off(v, W_NRUN)) == 0]
                    if idle and _arena.clear_idle(idle[0]):
                        if not _sched._spawnq:       # the stalled spawner's runnext too
                            _sched.release_runnext()
                        w.ship(idle[0], (len(_sched._spawnq) + 1) // 2, from_sysmon=True)
                w.link.flush(blocking=False)
                if stalled >= HOG_THRESHOLD and not reported:
                    reported = True
                    self.report_hog(stalled, main_ident)
            except Exception:  # noqa: BLE001 - sysmon must never die
                traceback.print_exc()
            finally:
                add(w.off_epoch, 1)
                store(w.off_sysmon, 0)

    def snapshot(self, now: float) -> None:
        """Write this worker's goroutines to its shared-memory line, so that the
        supervisor can name them if the process dies (WorkerDied)."""
        gs = _sched.live_goroutines()            # one atomic copy under the GIL
        sig = (len(gs), _sched._tick, _sched._cur.id if _sched._cur is not None else 0)
        if sig == self.last_snap:
            return
        self.last_snap = sig
        cur = _sched._cur
        lines = []
        for g in sorted(gs, key=lambda g: g.id)[:SNAPSHOT_MAX]:
            if g is cur:
                state = "running"
            elif g.status == _sched.WAITING:
                state = g.reason
            else:
                state = "runnable"
            fn = g.fn
            name = getattr(fn, "__qualname__", "?") if fn is not None else "?"
            lines.append(f"goroutine {g.id} [{state}] {name}")
        if len(gs) > SNAPSHOT_MAX:
            lines.append(f"... and {len(gs) - SNAPSHOT_MAX} more")
        _arena.write_snapshot(self.w.wid, "\n".join(lines))

    def report_hog(self, stalled: float, main_ident: int | None) -> None:
        w = self.w
        g = _sched._cur
        gid = g.id if g is not None else 0
        frame = sys._current_frames().get(main_ident) if main_ident else None
        where = "?"
        func = "?"
        f = frame
        while f is not None:
            fn = f.f_code.co_filename
            if "/mpgo/" not in fn.replace("\\", "/"):
                where = f"{fn}:{f.f_lineno}"
                func = f.f_code.co_name
                break
            f = f.f_back
        msg = (f"mpgo: goroutine {gid} has held worker {w.wid} for {stalled:.1f}s without "
               f"parking, in {func} at {where} (other goroutines of this worker cannot run; "
               f"queued ones were handed to idle workers)")
        try:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        w.link.send_now(SUPERVISOR, [[_wire.HOG, gid, stalled, where, func]])


__all__ = ["Worker", "current_worker", "HANDLERS", "handler", "ClosedChannelError"]
