"""Atomic operations on signed 64-bit words of the shared-memory arena.

This is the ONE module the rest of mpgo uses for atomics. It operates on one
registered arena buffer (normally the anonymous ``MAP_SHARED`` ``mmap`` that
``_arena`` creates before any fork), addressed by byte offset.

API (module-level functions, positional arguments only)::

    attach(buf)                 register `buf` as the arena (replaces any previous)
    detach()                    release the arena; atomics raise RuntimeError after
    arena()                     the attached object, or None
    load(off) -> int
    store(off, value) -> None
    add(off, delta) -> int      returns the NEW value; wraps at 64 bits like Go
    cas(off, expected, new) -> bool
    swap(off, value) -> int     returns the OLD value
    fetch_or(off, bits) -> int  returns the OLD value
    fetch_and(off, bits) -> int returns the OLD value
    IMPLEMENTATION              "c" or "semaphores"

Strategy (chosen by measurement, ``benchmarks/micro_atomic.py``):

* ``"c"``: ``mpgo._speedups``, GCC ``__atomic`` builtins, sequentially
  consistent, lock-free. Its functions are bound here directly, so a call is
  a single C function call. Used whenever the extension imports. Measured
  (2-core x86-64, Python loop included): ``add`` ~40-80 ns, about 10x
  cheaper than the fallback and 15x cheaper than ``multiprocessing.Value``
  under its lock; two processes hammering one word: ~100 ns/op against
  ~850 (fallback) and ~1700 (``Value`` + lock).
* ``"semaphores"``: the fallback when the extension is absent (ImportError
  only: a broken build raising anything else is a bug and must surface), or
  when ``MPGO_PURE_PYTHON=1`` is set. 64 striped ``multiprocessing`` locks
  (fork context: POSIX semaphores unlinked at creation, so children inherit
  them across fork and nothing is left behind) guard every write of a word,
  accessed through ``memoryview(buf).cast("q")``. The stripe of a word is
  ``(off >> 6) & 63``: the words of one 64-byte slot share one lock.

Invariants:

* Offsets are byte offsets, multiples of 8 (else ValueError), and the whole
  word lies inside the arena (else IndexError). No arena attached:
  RuntimeError. Values outside int64: OverflowError. Non-integers: TypeError.
  Both implementations validate identically (offset first, then values).
* The arena must be writable, C-contiguous, at least 8 bytes, and start on an
  8-byte boundary (ValueError / BufferError otherwise). Attaching holds a
  buffer export on it, so an ``mmap`` cannot be closed or resized until
  ``detach()`` (or another ``attach``).
* Fallback: the semaphores must exist before the fork that creates the
  processes sharing the arena, so they are made at import when the fallback
  is selected. In the fallback ``load`` reads without a lock (an aligned
  8-byte read never sees a torn word on the 64-bit targets mpgo supports:
  every write is one aligned store), but
  ``store`` takes the stripe lock, so it cannot be lost inside another
  process's read-modify-write. A process killed while holding a stripe lock
  (a few bytecodes) leaves that stripe locked; the C path has no such window.
* Fallback locks are not reentrant: never call an atomic from a signal
  handler that may interrupt another atomic in the same process.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from operator import index as _as_int
from typing import Any, Protocol

__all__ = [
    "IMPLEMENTATION",
    "Atomics",
    "add",
    "arena",
    "attach",
    "cas",
    "detach",
    "fetch_and",
    "fetch_or",
    "implementation",
    "load",
    "store",
    "swap",
]

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_STRIPES = 64  # stripe = (off >> 6) & 63, written as a literal in the hot paths


class Atomics(Protocol):
    """What both implementations provide (the C module and the fallback)."""

    IMPLEMENTATION: str

    def attach(self, buf: Any, /) -> None: ...
    def detach(self) -> None: ...
    def arena(self) -> Any: ...
    def load(self, off: int, /) -> int: ...
    def store(self, off: int, value: int, /) -> None: ...
    def add(self, off: int, delta: int, /) -> int: ...
    def cas(self, off: int, expected: int, new: int, /) -> bool: ...
    def swap(self, off: int, value: int, /) -> int: ...
    def fetch_or(self, off: int, bits: int, /) -> int: ...
    def fetch_and(self, off: int, bits: int, /) -> int: ...


def _int64(value: int) -> int:
    v = _as_int(value)
    if v < _INT64_MIN or v > _INT64_MAX:
        raise OverflowError(f"{v} does not fit in a signed 64-bit word")
    return v


class _SemaphoreAtomics:
    """The fallback: striped fork-inherited semaphores over a ``q`` memoryview."""

    IMPLEMENTATION = "semaphores"

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self._locks = tuple(ctx.Lock() for _ in range(_STRIPES))
        self._obj: Any = None
        self._views: tuple[memoryview, ...] = ()
        self._words: memoryview | None = None
        self._nbytes = 0
        self._last = -1  # largest valid offset; -1 while detached

    # -- arena -------------------------------------------------------------

    def attach(self, buf: Any, /) -> None:
        mv = memoryview(buf)
        try:
            if mv.readonly:
                raise BufferError("Object is not writable.")
            raw = mv.cast("B")  # TypeError unless C-contiguous
        except BaseException:
            mv.release()
            raise
        views: tuple[memoryview, ...] = (mv, raw)
        try:
            n = raw.nbytes
            if n < 8:
                raise ValueError("arena buffer must hold at least one 8-byte word")
            if _address(raw) & 7:
                raise ValueError("arena buffer must start on an 8-byte boundary")
            words = raw[: n - n % 8].cast("q")
        except BaseException:
            _release(views)
            raise
        self.detach()
        self._obj = buf
        self._views = (*views, words)
        self._words = words
        self._nbytes = n
        self._last = n - n % 8 - 8

    def detach(self) -> None:
        views = self._views
        self._last = -1
        self._words = None
        self._obj = None
        self._views = ()
        self._nbytes = 0
        _release(views)

    def arena(self) -> Any:
        return self._obj

    # -- validation ----------------------------------------------------------
    # Each operation inlines a fast guard (exact int, aligned, in range, int64)
    # and falls back to _offset() / _int64() for the slow path, which either
    # normalises an int-like argument or raises the documented error. The
    # literals are int64's limits and _STRIPES - 1 (constants are free, global
    # lookups are not).

    def _offset(self, off: int) -> int:
        if self._words is None:
            raise RuntimeError("mpgo atomics: no arena attached (call attach() first)")
        off = _as_int(off)
        if off & 7:
            raise ValueError(f"arena offset {off} is not a multiple of 8")
        if off < 0 or off > self._last:
            raise IndexError(f"arena offset {off} outside the arena ({self._nbytes} bytes)")
        return off

    # -- operations ----------------------------------------------------------

    def load(self, off: int, /) -> int:
        if off.__class__ is not int or off & 7 or not 0 <= off <= self._last:
            off = self._offset(off)
        v: int = self._words[off >> 3]  # type: ignore[index]
        return v

    def store(self, off: int, value: int, /) -> None:
        if off.__class__ is not int or off & 7 or not 0 <= off <= self._last:
            off = self._offset(off)
        if value.__class__ is not int or not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
            value = _int64(value)
        words: memoryview = self._words  # type: ignore[assignment]
        lock = self._locks[(off >> 6) & 63]
        lock.acquire()
        try:
            words[off >> 3] = value
        finally:
            lock.release()

    def add(self, off: int, delta: int, /) -> int:
        if off.__class__ is not int or off & 7 or not 0 <= off <= self._last:
            off = self._offset(off)
        if delta.__class__ is not int or not -0x8000000000000000 <= delta <= 0x7FFFFFFFFFFFFFFF:
            delta = _int64(delta)
        words: memoryview = self._words  # type: ignore[assignment]
        i = off >> 3
        lock = self._locks[(off >> 6) & 63]
        lock.acquire()
        try:
            v: int = words[i] + delta
            if not -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
                v = ((v + 0x8000000000000000) & 0xFFFFFFFFFFFFFFFF) - 0x8000000000000000  # wrap
            words[i] = v
        finally:
            lock.release()
        return v

    def cas(self, off: int, expected: int, new: int, /) -> bool:
        if off.__class__ is not int or off & 7 or not 0 <= off <= self._last:
            off = self._offset(off)
        if (
            expected.__class__ is not int
            or not -0x8000000000000000 <= expected <= 0x7FFFFFFFFFFFFFFF
        ):
            expected = _int64(expected)
        if new.__class__ is not int or not -0x8000000000000000 <= new <= 0x7FFFFFFFFFFFFFFF:
            new = _int64(new)
        words: memoryview = self._words  # type: ignore[assignment]
        i = off >> 3
        lock = self._locks[(off >> 6) & 63]
        lock.acquire()
        try:
            if words[i] != expected:
                return False
            words[i] = new
        finally:
            lock.release()
        return True

    def swap(self, off: int, value: int, /) -> int:
        if off.__class__ is not int or off & 7 or not 0 <= off <= self._last:
            off = self._offset(off)
        if value.__class__ is not int or not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
            value = _int64(value)
        words: memoryview = self._words  # type: ignore[assignment]
        i = off >> 3
        lock = self._locks[(off >> 6) & 63]
        lock.acquire()
        try:
            old: int = words[i]
            words[i] = value
        finally:
            lock.release()
        return old

    def fetch_or(self, off: int, bits: int, /) -> int:
        if off.__class__ is not int or off & 7 or not 0 <= off <= self._last:
            off = self._offset(off)
        if bits.__class__ is not int or not -0x8000000000000000 <= bits <= 0x7FFFFFFFFFFFFFFF:
            bits = _int64(bits)
        words: memoryview = self._words  # type: ignore[assignment]
        i = off >> 3
        lock = self._locks[(off >> 6) & 63]
        lock.acquire()
        try:
            old: int = words[i]
            words[i] = old | bits  # | of two int64 values is an int64
        finally:
            lock.release()
        return old

    def fetch_and(self, off: int, bits: int, /) -> int:
        if off.__class__ is not int or off & 7 or not 0 <= off <= self._last:
            off = self._offset(off)
        if bits.__class__ is not int or not -0x8000000000000000 <= bits <= 0x7FFFFFFFFFFFFFFF:
            bits = _int64(bits)
        words: memoryview = self._words  # type: ignore[assignment]
        i = off >> 3
        lock = self._locks[(off >> 6) & 63]
        lock.acquire()
        try:
            old: int = words[i]
            words[i] = old & bits
        finally:
            lock.release()
        return old


def _address(raw: memoryview) -> int:
    """Base address of a writable byte view (for the alignment check)."""
    import ctypes

    c = ctypes.c_char.from_buffer(raw)  # holds an export on `raw` while alive
    address = ctypes.addressof(c)
    del c
    return address


def _release(views: tuple[memoryview, ...]) -> None:
    for v in reversed(views):
        v.release()


# -- selection ----------------------------------------------------------------

_c: Any  # the mpgo._speedups module (no stub), or None
try:
    _c = importlib.import_module("mpgo._speedups")
except ImportError:
    _c = None

_fallback: _SemaphoreAtomics | None = None
_impl: Atomics
if _c is None or os.environ.get("MPGO_PURE_PYTHON", "") not in ("", "0"):
    _fallback = _SemaphoreAtomics()  # now, before any fork
    _impl = _fallback
else:
    _impl = _c


def implementation(name: str) -> Atomics:
    """Return an implementation by name (``"c"`` or ``"semaphores"``).

    For tests and benchmarks; mpgo itself uses the module-level functions.
    ``"c"`` raises ImportError when the extension is not built. Asking for
    ``"semaphores"`` while the C path is selected creates the fallback's
    semaphores on first call: make that call before forking the processes
    that will share it.
    """
    global _fallback
    if name == "c":
        if _c is None:
            raise ImportError("mpgo._speedups is not built")
        c: Atomics = _c
        return c
    if name == "semaphores":
        if _fallback is None:
            _fallback = _SemaphoreAtomics()
        return _fallback
    raise ValueError(f"unknown atomics implementation {name!r} (want 'c' or 'semaphores')")


IMPLEMENTATION: str = _impl.IMPLEMENTATION
attach = _impl.attach
detach = _impl.detach
arena = _impl.arena
load = _impl.load
store = _impl.store
add = _impl.add
cas = _impl.cas
swap = _impl.swap
fetch_or = _impl.fetch_or
fetch_and = _impl.fetch_and
