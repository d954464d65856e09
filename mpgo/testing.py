"""Testing helpers for programs that use mpgo (and for mpgo's own tests).

* `go_on(worker, fn, *args)`: start a goroutine on a chosen worker, to test
  what crosses processes.
* `leaks()`: what an mpgo run left behind in this process (child processes,
  sockets, file descriptors); empty when nothing leaked.
* The pytest plugin (registered through the ``pytest11`` entry point) adds
  the ``mpgo_leak_check`` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ._runtime._goroutine import go_on

__all__ = ["go_on", "leaks", "children", "open_fds", "mpgo_sockets"]


def children(pid: int | None = None) -> list[int]:
    """Live child processes of `pid` (default: this process), from /proc."""
    me = os.getpid() if pid is None else pid
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command may contain spaces/parens: fields after the last ')'
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == me and rest[0] != b"Z":
            out.append(int(d))
    return out


def open_fds() -> set[int]:
    """File descriptors open in this process."""
    return {int(x) for x in os.listdir("/proc/self/fd")}


def mpgo_sockets(pid: int | None = None) -> list[str]:
    """Abstract unix sockets named by mpgo runs of `pid` that still exist."""
    me = os.getpid() if pid is None else pid
    tag = f"@mpgo-{me}-"
    try:
        with open("/proc/net/unix") as f:
            return [line.split()[-1] for line in f if tag in line]
    except OSError:
        return []


def leaks(fds_before: set[int] | None = None) -> list[str]:
    """Human-readable list of what is left behind; [] when clean."""
    out = []
    kids = children()
    if kids:
        out.append(f"child processes still alive: {kids}")
    socks = mpgo_sockets()
    if socks:
        out.append(f"mpgo sockets still open: {socks}")
    if fds_before is not None:
        extra = open_fds() - fds_before
        # an fd may have been closed and its number reused meanwhile; report what is new
        extra = {fd for fd in extra if _fd_target(fd) is not None}
        if extra:
            out.append("file descriptors leaked: "
                       + ", ".join(f"{fd}->{_fd_target(fd)}" for fd in sorted(extra)))
    return out


def _fd_target(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _wait_clean(fds_before: set[int], timeout: float = 3.0) -> list[str]:
    import time
    deadline = time.monotonic() + timeout
    while True:
        found = leaks(fds_before)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


# -- pytest plugin -------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture
    def mpgo_leak_check() -> Iterator[None]:
        """Fail the test if an mpgo run left a process, socket or fd behind."""
        before = open_fds()
        yield
        found = _wait_clean(before)
        if found:
            pytest.fail("mpgo left resources behind:\n  " + "\n  ".join(found))


def _unused(*a: Any) -> None:
    pass
