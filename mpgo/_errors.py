"""Every exception mpgo raises, in one place.

Two families, never mixed (Go: user errors panic, runtime bugs throw):

* the documented user errors of the API (this module's public names), raised
  when a program misuses mpgo or when the run fails for a reason the program
  must hear about;
* `InternalError`, raised only when mpgo's own invariants break. Seeing it is
  always a bug in mpgo, never in the program.
"""

from __future__ import annotations


class ClosedChannelError(Exception):
    """Send on, or close of, a closed channel.

    Raised by `Chan.send` (also for a sender that was parked when the channel
    was closed), by `Chan.close` on an already closed channel, and by a
    `select` whose send case fires on a closed channel. Never raised by a
    receive: receiving from a closed channel drains it, then yields
    `(None, False)`.
    """


class Deadlock(RuntimeError):
    """Every live goroutine in every worker is blocked forever.

    Raised by `run` when no goroutine can run, nothing is queued, no timer is
    pending, no file descriptor is waited on and no frame is in flight. The
    message starts with ``all goroutines are asleep - deadlock!`` and lists
    every goroutine Go-style with its wait reason and stack. Not raised while
    any goroutine sleeps, computes, or waits on foreign I/O.
    """


class GoroutineError(RuntimeError):
    """A goroutine other than main raised; fatal to the run, as a Go panic.

    `run` raises it; `__cause__` is the original exception, or a
    `RemoteException` carrying its text when it could not be pickled. The
    message names the goroutine and the worker and carries the remote
    traceback. Not raised for exceptions caught by a `Group` (those come out
    of `Group.wait`).
    """

    def __init__(self, message: str, *, goroutine: int = 0, worker: int = -1,
                 remote_traceback: str = "") -> None:
        super().__init__(message)
        self.goroutine = goroutine
        self.worker = worker
        self.remote_traceback = remote_traceback


class WorkerDied(RuntimeError):
    """A worker process died (signal, ``os._exit``, out of memory).

    Raised by `run` within about two seconds of the death, never a hang.
    Names the worker, its pid, the signal name or exit status, and the
    goroutines it held.
    """

    def __init__(self, message: str, *, worker: int = -1, pid: int = 0,
                 exitcode: int | None = None, signal: str | None = None,
                 goroutines: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.worker = worker
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal
        self.goroutines = goroutines


class LockPoisoned(WorkerDied):
    """A sync object whose owner died while holding it (Rust's poisoning).

    Raised by `Mutex.lock`/`try_lock` and `RWMutex` locks when the worker
    that held the lock died: the data it protected may be inconsistent.
    `Mutex.clear_poison()` makes the mutex usable again.
    """


class LeakedGoroutines(AssertionError):
    """`mpgo.testing.run` (and the pytest marker): goroutines were still alive
    after main returned. The message lists them Go-style with their stacks."""


class Canceled(Exception):
    """The context was cancelled (``ctx.err()`` returns this class's instance)."""


class DeadlineExceeded(Exception):
    """The context's deadline passed (``ctx.err()`` returns this class's instance)."""


class RemoteException(Exception):
    """Stand-in for an exception that could not be pickled across processes.

    Carries the original type name, its text and the remote traceback.
    """

    def __init__(self, type_name: str, text: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {text}")
        self.type_name = type_name
        self.text = text
        self.remote_traceback = remote_traceback

    def __reduce__(self):
        return (RemoteException, (self.type_name, self.text, self.remote_traceback))


class RemoteTraceback(Exception):
    """Carries a traceback formatted in another process (the `__cause__`)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class InternalError(Exception):
    """mpgo's own invariant broke. Always a bug in mpgo; please report it."""
