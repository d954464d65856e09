"""W7: start 2 workers, run a trivial main, shut down.

Whole process: the wall time of ``python -c …`` (interpreter start, imports,
workers, one trivial task, shutdown).  In process: the same after the import.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from benchmarks._harness import Case, Config, Row, Table, Workload, vs
from benchmarks._util import fork_ctx

PROGRAMS = {
    "python": "pass",
    "mpgo": "import mpgo; mpgo.run(lambda: 1, workers=2)",
    "ppe": ("from concurrent.futures import ProcessPoolExecutor as P\n"
            "with P(2) as ex: ex.submit(abs, -1).result()"),
}


def whole_process(program: str) -> float:
    """Milliseconds for ``python -c PROGRAMS[program]``."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROGRAMS[program]],
                          capture_output=True, text=True, timeout=60)
    dt = time.perf_counter() - t0
    if proc.returncode:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"exit {proc.returncode}: {lines[-1]}")
    return dt * 1000


def _trivial() -> int:
    return 1


def mpgo_in_process() -> float:
    import mpgo

    t0 = time.perf_counter()
    if mpgo.run(_trivial, workers=2) != 1:
        raise AssertionError("wrong result")
    return (time.perf_counter() - t0) * 1000


def ppe_in_process() -> float:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=fork_ctx()) as ex:
        ex.submit(abs, -1).result()
    return (time.perf_counter() - t0) * 1000


def workload(cfg: Config) -> Workload:
    cases = [
        Case("python", "w7_startup:whole_process", {"program": "python"}),
        Case("ppe", "w7_startup:whole_process", {"program": "ppe"}),
        Case("mpgo", "w7_startup:whole_process", {"program": "mpgo"}),
        Case("ppe_in", "w7_startup:ppe_in_process"),
        Case("mpgo_in", "w7_startup:mpgo_in_process"),
    ]
    ppe = "ProcessPoolExecutor(2), one task"
    whole = Table(
        "whole process: python -c …", "ms", higher_better=False,
        rows=[
            Row("python -c pass (interpreter alone)", "python"),
            Row(ppe, "ppe"),
            Row("import mpgo; mpgo.run(lambda: 1, workers=2)", "mpgo",
                target=vs(ppe, 1, "no slower than PPE")),
        ],
        refs=[("× PPE", [ppe])],
    )
    inproc = Table(
        "in process, after import", "ms", higher_better=False,
        rows=[
            Row(ppe, "ppe_in"),
            Row("mpgo.run(trivial, workers=2)", "mpgo_in",
                target=vs(ppe, 1, "no slower than PPE")),
        ],
        refs=[("× PPE", [ppe])],
    )
    return Workload("W7", "start 2 workers and run a trivial main", cases, [whole, inproc],
                    notes=["Whole-process times are measured around `subprocess.run` in a "
                           "case process; programs are in `benchmarks/w7_startup.py`."])
