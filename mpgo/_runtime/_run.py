"""`mpgo.run` and `mpgo.Runtime`: the calling process becomes the supervisor.

Who may call: any thread of a process that is not itself an mpgo worker; one
runtime per process at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._transport import _wire
from . import _broker, _locks, _supervisor  # noqa: F401  (registers their handlers)
from ._supervisor import Supervisor


def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        env = os.environ.get("MPGO_WORKERS")
        if env:
            try:
                workers = int(env)
            except ValueError:
                raise ValueError(f"MPGO_WORKERS must be an integer, got {env!r}") from None
        else:
            workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, not {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers


def run(main: Callable[..., Any], /, *args: Any, workers: int | None = None,
        **kwargs: Any) -> Any:
    """Run ``main(*args, **kwargs)`` as the first goroutine over `workers` processes.

    Forks the workers (default ``os.cpu_count()`` or ``MPGO_WORKERS``), waits
    for main, shuts every worker down and returns main's value. An exception
    escaping main propagates with its own type; one escaping any other
    goroutine ends the run with `GoroutineError`.
    """
    if not callable(main):
        raise TypeError(f"mpgo.run: {main!r} is not callable")
    n = _resolve_workers(workers)
    sup = Supervisor(n, inherited=(main, args, kwargs))
    try:
        return sup.run(None)
    finally:
        sup.close()


class Runtime:
    """A runtime held open: several mains on the same workers, no re-fork.

    ``with mpgo.Runtime(workers=4) as rt: rt.run(main)``. `main` and its
    arguments are pickled (cloudpickle) to reach worker 0. After a worker
    died the runtime is broken: `run` raises `RuntimeError` naming the cause.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = _resolve_workers(workers)
        self._sup: Supervisor | None = Supervisor(self.workers)

    def run(self, main: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run one main on the held workers; same semantics as `mpgo.run`."""
        sup = self._sup
        if sup is None or sup.closed:
            raise RuntimeError("mpgo: this Runtime is closed")
        if not callable(main):
            raise TypeError(f"Runtime.run: {main!r} is not callable")
        blob = _wire.dumps_by_value((main, args, kwargs or None))
        try:
            return sup.run(blob)
        finally:
            if sup.broken is None:
                sup.end_run()

    def close(self) -> None:
        """Stop the workers (bounded). Idempotent."""
        sup, self._sup = self._sup, None
        if sup is not None:
            sup.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["run", "Runtime", "_supervisor"]
