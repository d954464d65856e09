"""mpgo — Go's concurrency model for Python, with true parallelism.

Goroutines are greenlets scheduled M:N over forked worker processes; channels,
select, mutexes, wait groups and atomics work the same whether the goroutines
at both ends share a process or not. See ``docs/`` and the README.

This module is the public facade: the API contract and nothing else.
"""

from __future__ import annotations

from . import net
from ._context import Context, background, with_cancel, with_deadline, with_timeout
from ._core._chan import Chan, default, nilchan, select
from ._errors import (
    Canceled,
    ClosedChannelError,
    DeadlineExceeded,
    Deadlock,
    GoroutineError,
    LeakedGoroutines,
    LockPoisoned,
    RemoteException,
    WorkerDied,
)
from ._group import Group
from ._group import map_ as map  # noqa: A004  (the API's name: mpgo.map)
from ._runtime import _remote as _remote  # noqa: F401  (installs the channel hooks)
from ._runtime._goroutine import (
    Goroutine,
    dump,
    go,
    go_local,
    gosched,
    num_goroutine,
    num_workers,
    sleep,
    worker_id,
)
from ._runtime._io import wait_readable, wait_writable
from ._runtime._run import Runtime, run
from ._sync import AtomicInt, Mutex, Once, RWMutex, WaitGroup
from ._time import Ticker, after

__version__ = "0.1.0"

__all__ = [
    "AtomicInt",
    "Canceled",
    "Chan",
    "ClosedChannelError",
    "Context",
    "Deadlock",
    "DeadlineExceeded",
    "Goroutine",
    "Group",
    "GoroutineError",
    "LeakedGoroutines",
    "LockPoisoned",
    "Mutex",
    "Once",
    "RWMutex",
    "RemoteException",
    "Runtime",
    "Ticker",
    "WaitGroup",
    "WorkerDied",
    "after",
    "background",
    "default",
    "dump",
    "go",
    "go_local",
    "gosched",
    "map",
    "net",
    "nilchan",
    "num_goroutine",
    "num_workers",
    "run",
    "select",
    "sleep",
    "wait_readable",
    "wait_writable",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "worker_id",
]
