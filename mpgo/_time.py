"""Time: `after` and `Ticker`, channels fed by the worker's timers.

Who may call: any goroutine. The timer lives in the worker that made the
channel; when the channel is shared with other workers the tick is sent on
through the broker like any other send.
"""

from __future__ import annotations

import time
from typing import Any

from ._core import _chan, _sched
from ._core._chan import Chan
from ._runtime._worker import current_worker


def _fire(ch: Chan) -> None:
    _chan.after_fire(ch, time.time())


def after(seconds: float) -> Chan:
    """A channel that receives the current time (``time.time()``) once, after `seconds`."""
    current_worker()
    ch = Chan(1)
    _sched.add_timer(float(seconds), _fire, ch)
    return ch


class Ticker:
    """``.c`` receives the time every `interval` seconds until `stop()`.

    Like Go's, the channel holds one tick: a slow reader misses ticks rather
    than accumulating them.
    """

    def __init__(self, interval: float) -> None:
        current_worker()
        interval = float(interval)
        if interval <= 0:
            raise ValueError(f"Ticker interval must be > 0, got {interval}")
        self.interval = interval
        self.c = Chan(1)
        self._next = time.monotonic() + interval
        self._timer: Any = _sched.add_timer(interval, self._tick)
        self._stopped = False

    def _tick(self) -> None:
        if self._stopped:
            return
        _chan.after_fire(self.c, time.time())
        now = time.monotonic()
        self._next += self.interval
        if self._next < now:                      # fell behind: skip, as Go does
            self._next = now + self.interval
        self._timer = _sched.add_timer(self._next - now, self._tick)

    def stop(self) -> None:
        """Stop ticking; no more values are sent after this returns."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reset(self, interval: float) -> None:
        """Stop and restart with a new interval."""
        self.stop()
        self.__init__(interval)  # type: ignore[misc]
