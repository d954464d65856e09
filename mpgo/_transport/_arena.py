"""The shared-memory arena: header, worker table, goroutine snapshots, slots.

Strategy
--------
One anonymous ``MAP_SHARED`` mapping, made when mpgo is imported, before any
fork: every worker inherits it and nothing in it has a name, so nothing can
leak (P15). Sync objects are 64-byte *slots*; a module-level ``mpgo.Mutex()``
made at import time is the same slot in every worker, and one made inside a
worker is visible to all of them by slot index.

A process forked by user code (not by mpgo) gets a private copy of the arena
(`os.register_at_fork`), so an unrelated run in that child shares nothing with
its parent's run. mpgo's own worker forks set `forking_workers` to skip this.

Layout (byte offsets; every field is one signed 64-bit word)
------------------------------------------------------------
header         0 .. 4 KiB      see the H_* offsets
worker table   4 KiB           MAX_WORKERS lines of 128 bytes (W_* offsets)
snapshots      36 KiB          4 KiB of text per worker: its goroutines, for
                               WorkerDied after it is gone
slots          SLOTS_AT ..     64-byte slots, bump-allocated
pair rings     RINGS_AT ..     the top quarter (at most 16 MiB): RING_BYTES each,
                               handed out by `alloc_ring` (docs/design.md §6.9)

Invariants: slot indices only grow (a slot is never reused, so a stale
reference can never alias a newer object); every word is touched only
through `_atomic` (RMW) or aligned loads/stores.
"""

from __future__ import annotations

import mmap
import os
from typing import Final

from . import _atomic

MAX_WORKERS: Final = 256
ARENA_SIZE: Final = int(os.environ.get("MPGO_ARENA_BYTES", 64 * 1024 * 1024))
MAGIC: Final = 0x6D70676F00000001  # "mpgo" v1

# header words
H_MAGIC: Final = 0
H_NEXT_SLOT: Final = 8
H_RUN: Final = 16
H_GID: Final = 24
H_CID: Final = 32
H_NWORKERS: Final = 40
H_GLOBALQ: Final = 48
H_SUP_PID: Final = 56
H_IDLE: Final = 64          # idle bitmap: MAX_WORKERS bits = 4 words (64..95)
H_SUP_SENT: Final = 96      # messages sent by the supervisor
H_SUP_RECV: Final = 104     # messages received by the supervisor
H_RINGS: Final = 112        # pair rings handed out in this runtime

# worker table
WT_AT: Final = 4096
WT_LINE: Final = 128
W_PID: Final = 0
W_IDLE: Final = 8           # 1 while blocked in its idle poll
W_EPOCH: Final = 16         # bumped at every wake from the idle poll
W_SENT: Final = 24          # messages sent (all destinations)
W_RECV: Final = 32          # messages received
W_LIVE: Final = 40          # goroutines spawned here minus finished here (sum = live)
W_STEALABLE: Final = 48     # records in its spawnq
W_TIMERS: Final = 56        # pending timers
W_FDS: Final = 64           # fds waited on by goroutines
W_RUNNING: Final = 72       # id of the goroutine running now (0: hub)
W_STEAL_REQ: Final = 80     # thief worker id + 1, or 0
W_PARKED: Final = 88        # goroutines parked (for dumps/deadlock sanity)
W_SYSMON: Final = 96        # non-zero while its sysmon thread moves records or frames
W_NRUN: Final = 104         # its load: goroutines queued or started on it, not finished

SNAP_AT: Final = WT_AT + MAX_WORKERS * WT_LINE
SNAP_LEN: Final = 4096
SLOTS_AT: Final = SNAP_AT + MAX_WORKERS * SNAP_LEN
SLOT: Final = 64
# Pair rings (docs/design.md §6.9) take the top of the arena: RING_BYTES each
# (the C accelerator's layout), at most a quarter of the arena or 16 MiB.
RING_BYTES: Final = 256 + 65536
RINGS_AT: Final = (ARENA_SIZE - min(16 * 1024 * 1024, ARENA_SIZE // 4) // RING_BYTES * RING_BYTES
                   + 63) // 64 * 64          # rings start on a cache line
MAX_RINGS: Final = max(0, (ARENA_SIZE - RINGS_AT) // RING_BYTES)
MAX_SLOTS: Final = (RINGS_AT - SLOTS_AT) // SLOT

# slot words
S_STATE: Final = 0
S_AUX: Final = 8
S_AUX2: Final = 16
S_TAG: Final = 56

load = _atomic.load
store = _atomic.store
add = _atomic.add
cas = _atomic.cas

forking_workers = False
_mm: mmap.mmap


def _new_map() -> mmap.mmap:
    return mmap.mmap(-1, ARENA_SIZE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _init() -> None:
    global _mm
    _mm = _new_map()
    _atomic.attach(_mm)
    store(H_MAGIC, MAGIC)
    store(H_NEXT_SLOT, 0)


def _after_fork_in_child() -> None:
    """A fork not made by mpgo: take a private copy so runs never share state."""
    global _mm
    if forking_workers or _atomic.arena() is not _mm:
        return          # mpgo's own fork, or someone attached another buffer (tests)
    old = _mm
    new = _new_map()
    used = SLOTS_AT + min(load(H_NEXT_SLOT), MAX_SLOTS) * SLOT
    new[:used] = old[:used]
    _mm = new
    _atomic.attach(new)
    try:
        old.close()
    except BufferError:     # a view of it is still alive (a worker's table view)
        pass


_init()
os.register_at_fork(after_in_child=_after_fork_in_child)


def buffer() -> mmap.mmap:
    return _mm


def worker_off(wid: int, field: int) -> int:
    """Byte offset of `field` in worker `wid`'s table line."""
    return WT_AT + wid * WT_LINE + field


def reset_workers(n: int) -> None:
    """Clear the worker table and global words for a new runtime. Supervisor only,
    before the fork."""
    _mm[WT_AT:WT_AT + MAX_WORKERS * WT_LINE] = bytes(MAX_WORKERS * WT_LINE)
    _mm[SNAP_AT:SNAP_AT + MAX_WORKERS * SNAP_LEN] = bytes(MAX_WORKERS * SNAP_LEN)
    for i in range(4):
        store(H_IDLE + 8 * i, 0)
    store(H_GLOBALQ, 0)
    store(H_SUP_SENT, 0)
    store(H_SUP_RECV, 0)
    store(H_RINGS, 0)
    store(H_NWORKERS, n)
    store(H_SUP_PID, os.getpid())


def alloc_slot(tag: int) -> int:
    """A fresh zeroed slot; returns its byte offset. Any process, any thread."""
    idx = add(H_NEXT_SLOT, 1) - 1
    if idx >= MAX_SLOTS:
        add(H_NEXT_SLOT, -1)
        raise MemoryError(
            f"mpgo: the shared-memory arena is full ({MAX_SLOTS} sync objects); "
            f"set MPGO_ARENA_BYTES to a larger size")
    off = SLOTS_AT + idx * SLOT
    store(off + S_TAG, tag)
    return off


def alloc_ring() -> int | None:
    """A pair ring's arena offset (64-byte aligned), or None when all are
    handed out. Any worker; rings are handed out once per runtime and reused
    by their owner (the reading worker) for one channel at a time."""
    idx = add(H_RINGS, 1) - 1
    if idx >= MAX_RINGS:
        add(H_RINGS, -1)
        return None
    return RINGS_AT + idx * RING_BYTES


def slots_in_use() -> int:
    return load(H_NEXT_SLOT)


def slot_offsets(tag: int) -> list[int]:
    """Offsets of every allocated slot with `tag` (supervisor: poisoning on death)."""
    n = min(load(H_NEXT_SLOT), MAX_SLOTS)
    out = []
    for i in range(n):
        off = SLOTS_AT + i * SLOT
        if load(off + S_TAG) == tag:
            out.append(off)
    return out


# -- idle bitmap ---------------------------------------------------------------

def _bit(wid: int) -> int:
    b = wid & 63
    return -(1 << 63) if b == 63 else 1 << b      # words are signed 64-bit


def set_idle(wid: int) -> None:
    """Mark `wid` idle. An atomic RMW: a full barrier before the caller's next loads."""
    _atomic.fetch_or(H_IDLE + 8 * (wid >> 6), _bit(wid))


def clear_idle(wid: int) -> bool:
    """Clear `wid`'s idle bit; True if it was set (the caller claimed it)."""
    bit = _bit(wid)
    return bool(_atomic.fetch_and(H_IDLE + 8 * (wid >> 6), ~bit) & bit)


def idle_workers(n: int) -> list[int]:
    out = []
    for w in range((n + 63) >> 6):
        bits = load(H_IDLE + 8 * w) & 0xFFFFFFFFFFFFFFFF
        while bits:
            low = bits & -bits
            out.append(w * 64 + low.bit_length() - 1)
            bits ^= low
    return [x for x in out if x < n]


def any_idle(n: int) -> bool:
    if n <= 64:
        return load(H_IDLE) != 0
    return any(load(H_IDLE + 8 * w) for w in range((n + 63) >> 6))


# -- goroutine snapshots (read by the supervisor after a worker died) ----------

def write_snapshot(wid: int, text: str) -> None:
    data = text.encode("utf-8", "replace")[:SNAP_LEN - 8]
    at = SNAP_AT + wid * SNAP_LEN
    _mm[at + 8:at + 8 + len(data)] = data
    store(at, len(data))


def read_snapshot(wid: int) -> str:
    at = SNAP_AT + wid * SNAP_LEN
    n = max(0, min(load(at), SNAP_LEN - 8))
    return bytes(_mm[at + 8:at + 8 + n]).decode("utf-8", "replace")
