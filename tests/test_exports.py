"""The public surface is the API contract (shared/API.md): pin it (trio's test_exports)."""

from __future__ import annotations

import mpgo

API = {
    # Running
    "run", "Runtime",
    # Goroutines
    "go", "go_local", "Goroutine", "sleep", "gosched", "num_goroutine", "worker_id",
    "num_workers",
    # Channels and select
    "Chan", "nilchan", "select", "default",
    # Time
    "after", "Ticker",
    # Synchronisation
    "Mutex", "RWMutex", "WaitGroup", "Once", "AtomicInt",
    # Structured concurrency and context
    "Group", "map", "background", "with_cancel", "with_timeout",
    # Errors and diagnosis
    "Deadlock", "GoroutineError", "WorkerDied", "ClosedChannelError", "dump",
    "Canceled", "DeadlineExceeded",
}

ADDED = {
    # beside the contract, what users expect (documented in docs/api.md)
    "Context", "with_deadline", "LockPoisoned", "RemoteException", "LeakedGoroutines",
    "wait_readable", "wait_writable", "net",
}


def test_every_name_of_the_api_contract_is_exported():
    missing = API - set(dir(mpgo))
    assert not missing, f"missing from mpgo: {sorted(missing)}"


def test_nothing_else_is_public():
    assert set(mpgo.__all__) == API | ADDED


def test_errors_have_the_documented_bases():
    assert issubclass(mpgo.Deadlock, RuntimeError)
    assert issubclass(mpgo.LockPoisoned, mpgo.WorkerDied)
    assert issubclass(mpgo.LeakedGoroutines, AssertionError)


def test_package_is_typed():
    import importlib.resources
    assert importlib.resources.files("mpgo").joinpath("py.typed").is_file()
