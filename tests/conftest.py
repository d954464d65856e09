"""Shared fixtures: every test runs under the leak check (P15).

After each test no child process, mpgo socket or new file descriptor may be
left in this process. Integration tests fork real workers; the check is what
proves that even failing runs (dead workers, deadlocks, signals) clean up.
"""

from __future__ import annotations

import os
import sys

import pytest

from mpgo._runtime import _worker
from mpgo.testing import _snapshot, _wait_clean

os.environ.setdefault("MPGO_HOG_THRESHOLD", "5")   # quiet unless a test asks for it
_worker.HOG_THRESHOLD = float(os.environ["MPGO_HOG_THRESHOLD"])
sys.setrecursionlimit(10000)


@pytest.fixture(autouse=True)
def _leak_check() -> object:
    before = _snapshot()
    yield
    found = _wait_clean(before)
    if found:
        pytest.fail("left behind after the test:\n  " + "\n  ".join(found))
