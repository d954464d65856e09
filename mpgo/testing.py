"""Testing helpers for programs that use mpgo, and a pytest plugin.

For your own tests:

* ``mpgo.testing.run(main, *args, workers=2, timeout=30, leaks=True)`` runs
  main like `mpgo.run`, but a run that does not finish within `timeout`
  fails with `TimeoutError` carrying every goroutine's stack, a deadlock fails
  with `mpgo.Deadlock` (Go's report), and goroutines still alive after main
  returned fail with `mpgo.testing.LeakedGoroutines` listing them.
* With pytest (the plugin is registered by installing mpgo), mark a test and
  its body runs as the main goroutine of a fresh run with those checks::

      @pytest.mark.mpgo(workers=2, timeout=10)
      def test_pipeline():
          ch = mpgo.Chan()
          mpgo.go(producer, ch)
          assert list(ch) == [0, 1, 2]

  The ``mpgo_leak_check`` fixture fails a test that left an mpgo child
  process, socket or file descriptor behind.
* `go_on(worker, fn, *args)` starts a goroutine on a chosen worker, to test
  what crosses processes; `leaks()` says what an mpgo run left in this process.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._errors import LeakedGoroutines
from ._runtime._goroutine import go_on
from ._runtime._run import _resolve_workers
from ._runtime._supervisor import Supervisor

__all__ = ["run", "go_on", "leaks", "children", "open_fds", "mpgo_sockets",
           "LeakedGoroutines"]


def run(main: Callable[..., Any], /, *args: Any, workers: int | None = 2,
        timeout: float | None = 30.0, leaks: bool = True, **kwargs: Any) -> Any:
    """`mpgo.run` for tests: never hangs, reports deadlocks and leaked goroutines.

    Raises `TimeoutError` (with the goroutine dump) if main has not returned
    after `timeout` seconds, `mpgo.Deadlock` on a deadlock, and, when `leaks`,
    `LeakedGoroutines` if goroutines outlive main. Any thread of a process
    that is not an mpgo worker may call it.
    """
    from ._runtime import _broker, _locks  # noqa: F401  (their frame handlers)
    n = _resolve_workers(workers)
    sup = Supervisor(n, inherited=(main, args, kwargs))
    try:
        return sup.run(None, timeout=timeout, leak_check=leaks)
    finally:
        sup.close()


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
        # the command may contain spaces or parentheses: fields after the last ')'
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


def _named_leftovers() -> list[str]:
    """mpgo never creates named resources; anything named mpgo here is a leak."""
    out = []
    for d in ("/dev/shm", tempfile.gettempdir()):
        try:
            out += [os.path.join(d, x) for x in os.listdir(d) if x.startswith("mpgo")]
        except OSError:
            pass
    return out


def leaks(fds_before: set[int] | None = None,
          named_before: set[str] | None = None) -> list[str]:
    """Human-readable list of what is left behind; [] when clean.

    fds_before / named_before: what existed before (only what is new counts).
    """
    out = []
    kids = children()
    if kids:
        out.append(f"child processes still alive: {kids}")
    socks = mpgo_sockets()
    if socks:
        out.append(f"mpgo sockets still open: {socks}")
    named = set(_named_leftovers()) - (named_before or set())
    if named:
        out.append(f"shared-memory segments or temp files left: {sorted(named)}")
    if fds_before is not None:
        extra = {fd for fd in open_fds() - fds_before if _fd_target(fd) is not None}
        if extra:
            out.append("file descriptors leaked: "
                       + ", ".join(f"{fd}->{_fd_target(fd)}" for fd in sorted(extra)))
    return out


def _fd_target(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _snapshot() -> tuple[set[int], set[str]]:
    """What exists now (fds, mpgo-named files), to compare against later."""
    return open_fds(), set(_named_leftovers())


def _wait_clean(before: tuple[set[int], set[str]], timeout: float = 3.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = leaks(*before)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


# -- pytest plugin (registered by the pytest11 entry point) -----------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    def pytest_configure(config: Any) -> None:
        config.addinivalue_line(
            "markers",
            "mpgo(workers=2, timeout=30, leaks=True): run the test body as the main "
            "goroutine of a fresh mpgo run; deadlocks, timeouts and leaked goroutines "
            "fail the test with a goroutine dump")

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(pyfuncitem: Any) -> Any:
        marker = pyfuncitem.get_closest_marker("mpgo")
        if marker is None:
            return None
        opts = dict(marker.kwargs)
        fn = pyfuncitem.obj
        argnames = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
        run(fn, workers=opts.get("workers", 2), timeout=opts.get("timeout", 30.0),
            leaks=opts.get("leaks", True), **kwargs)
        return True

    @pytest.fixture
    def mpgo_leak_check() -> Iterator[None]:
        """Fail the test if an mpgo run left a process, socket or fd behind."""
        before = _snapshot()
        yield
        found = _wait_clean(before)
        if found:
            pytest.fail("mpgo left resources behind:\n  " + "\n  ".join(found))
