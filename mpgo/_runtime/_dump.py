"""Go-style goroutine dumps: what `mpgo.dump()`, `Deadlock` and SIGUSR1 show.

Each worker formats its own goroutines (`worker_dump`); the supervisor
concatenates the workers' texts in worker order. A goroutine reads

    goroutine 7 [chan send, 2.1 s] (worker 1):
      File "prog.py", line 10, in producer
        ch.send(i)

Frames of mpgo's own modules are left out at the top (the park machinery) and
at the bottom (the greenlet trampoline), so the stack starts at user code.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

from .._core import _sched
from .._core._sched import RUNNABLE, RUNNING, WAITING, G

_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_frames(frame: Any) -> list[traceback.FrameSummary]:
    stack = traceback.extract_stack(frame)
    # drop mpgo frames at both ends
    while stack and stack[-1].filename.startswith(_PKG):
        stack.pop()
    i = 0
    while i < len(stack) and (stack[i].filename.startswith(_PKG)
                              or "greenlet" in stack[i].filename):
        i += 1
    return stack[i:]


def state_of(g: G, now: float, current: G | None) -> str:
    if g is current or g.status == RUNNING or (g.status == WAITING and g.reason == "dump"):
        return "running"        # the caller of mpgo.dump() is parked only to ask
    if g.status == RUNNABLE:
        return "runnable"
    if g.status == WAITING:
        waited = now - g.since
        if waited >= 1.0:
            return f"{g.reason}, {waited:.1f} s"
        return f"{g.reason}, {waited * 1000:.0f} ms"
    if g.blob is not None or g.gr is None:
        return "runnable (not started)"
    return _sched.STATUS_NAMES[g.status]


def format_g(g: G, wid: int, now: float, current: G | None, frame: Any = None) -> str:
    head = f"goroutine {g.id} [{state_of(g, now, current)}] (worker {wid}):"
    lines = [head]
    f = frame
    if f is None and g.gr is not None and g is not current:
        f = g.gr.gr_frame
    if f is not None:
        for fs in _user_frames(f):
            lines.append(f'  File "{fs.filename}", line {fs.lineno}, in {fs.name}')
            if fs.line:
                lines.append(f"    {fs.line.strip()}")
    elif g.fn is not None:
        name = getattr(g.fn, "__qualname__", repr(g.fn))
        lines.append(f"  created as {name}(...), not started yet")
    return "\n".join(lines)


def worker_dump(w: Any, requester: G | None = None) -> str:
    """Every live goroutine of this worker, formatted. Hub thread."""
    now = time.monotonic()
    out = []
    if os.environ.get("MPGO_DEBUG_DUMP"):
        out.append(f"[worker {w.wid}: runq={len(_sched._runq)} runnext="
                   f"{_sched._runnext is not None} spawnq={len(_sched._spawnq)} "
                   f"shipped={len(w.shipped)} steal_pending={w.steal_pending} "
                   f"published={w.published}]")
        ch = getattr(w, "chome", None)
        if ch is not None:
            for cid, c in ch.chans.items():
                out.append(f"[home {cid}: buf={len(c.buf)} sendq={len(c.sendq)} "
                           f"recvq={[(getattr(r, 'w', '?'), getattr(r, 'n', '?')) for r in c.recvq]} "
                           f"spec={c.spec} credits={c.credits} held={c.held} free={c.free()} "
                           f"closed={c.closed} want={c.want}]")
            pend = {k: [(src, f[:2]) for src, f in v] for k, v in ch.pending.items()}
            out.append(f"[home pending={pend}]")
        from . import _remote
        for cid, chn in list(_remote._table.items()):
            px = chn._r
            if px is not None:
                out.append(f"[px {cid}: home={px.home} pending={px.pending} outbox={len(px.outbox)} "
                           f"credits={px.credits} cache={len(px.cache)} asked={px.asked} "
                           f"spec={px.spec_asked} recvq={len(px.recvq)} closed={px.closed_seen}]")
    gs = sorted(_sched.live_goroutines(), key=lambda g: g.id)
    for g in gs:
        cur = requester if requester is not None else _sched._cur
        out.append(format_g(g, w.wid, now, cur))
    return "\n\n".join(out)


def snapshot_line(g: G, now: float) -> str:
    """One short line per goroutine for the shared-memory snapshot (WorkerDied)."""
    name = "?"
    gr = g.gr
    if gr is not None and gr.gr_frame is not None:
        frames = _user_frames(gr.gr_frame)
        if frames:
            name = f"{frames[-1].name} ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
    elif g.fn is not None:
        name = getattr(g.fn, "__qualname__", "?")
    return f"goroutine {g.id} [{state_of(g, now, _sched._cur)}] {name}"
