"""The benchmark model and runner.

A *workload* (W1 … W9) has *cases* (one measured program each) and *tables*
(rows that show one metric of one case).  Every case runs in a fresh
subprocess (``python -m benchmarks.case MODULE:FUNC JSON``) and reports its
metrics as JSON on stdout; all cases of a workload run alternately
(A B C A B C …) for ``runs`` rounds.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT_MARK = "@@BENCH-RESULT "


class Skip(Exception):
    """Raised by a case whose peer is not installed: the row shows SKIP."""


@dataclass(frozen=True)
class Config:
    quick: bool = False
    runs: int = 5
    workers: int = os.cpu_count() or 1
    timeout: float = 120.0
    verbose: bool = False

    def n(self, full: int) -> int:
        """A size: ``full``, or a tenth of it with --quick."""
        return max(1, full // 10) if self.quick else full

    @property
    def cores(self) -> int:
        return min(self.workers, len(os.sched_getaffinity(0)))


@dataclass
class Case:
    key: str  # unique within its workload
    fn: str  # "w1_cpu:serial": a function of a module of this package
    kwargs: dict = field(default_factory=dict)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "benchmarks.case", self.fn, json.dumps(self.kwargs)]


@dataclass
class Target:
    """A PERF.md target; ``check(value, ctx)`` is True, False, or None (n/a)."""

    text: str
    check: Callable[[float, TableContext], bool | None]

    def __and__(self, other: Target) -> Target:
        def both(v: float, ctx: TableContext) -> bool | None:
            a, b = self.check(v, ctx), other.check(v, ctx)
            return None if a is None or b is None else a and b

        return Target(f"{self.text}; {other.text}", both)


def vs(refs: str | list[str], factor: float, text: str | None = None) -> Target:
    """At least ``factor`` times better than the best of the rows ``refs``."""
    refs = [refs] if isinstance(refs, str) else refs

    def check(v: float, ctx: TableContext) -> bool | None:
        r = ctx.ratio(v, refs)
        return None if r is None else r >= factor * (1 - 1e-9)

    return Target(text or f"≥ {factor:g}× {' / '.join(refs)}", check)


def at_least(limit: float, text: str) -> Target:
    return Target(text, lambda v, ctx: v >= limit)


def at_most(limit: float, text: str) -> Target:
    return Target(text, lambda v, ctx: v <= limit)


@dataclass
class Row:
    label: str
    case: str  # Case.key
    metric: str = "value"
    target: Target | None = None


@dataclass
class Table:
    title: str
    unit: str
    higher_better: bool
    rows: list[Row]
    # ratio columns: (column title, row labels whose best median is the reference)
    refs: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass
class Workload:
    key: str
    title: str
    cases: list[Case]
    tables: list[Table]
    notes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    metrics: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    error: str | None = None  # "ERROR: …", "TIMEOUT …" or "SKIP: …"


@dataclass
class CaseResults:
    case: Case
    runs: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False  # timed out or skipped: not run again

    @property
    def error(self) -> str | None:
        return self.errors[-1] if self.errors else None

    def values(self, metric: str) -> list[float]:
        return [m[metric] for m in self.runs if metric in m]


class TableContext:
    """Medians of one table's rows, for ratios and targets."""

    def __init__(self, table: Table, medians: dict[str, float]):
        self.table = table
        self.medians = medians

    def best(self, labels: list[str]) -> float | None:
        vals = [self.medians[x] for x in labels if x in self.medians]
        if not vals:
            return None
        return max(vals) if self.table.higher_better else min(vals)

    def ratio(self, value: float, labels: list[str]) -> float | None:
        """How many times better ``value`` is than the best of ``labels``."""
        ref = self.best(labels)
        if ref is None or ref == 0 or value == 0:
            return None
        return value / ref if self.table.higher_better else ref / value


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _first_line(text: str, limit: int = 160) -> str:
    line = next((x for x in text.strip().splitlines() if x.strip()), "")
    line = line.strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_case(case: Case, cfg: Config) -> Outcome:
    """Run one case in a fresh process group; kill the whole group when done."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            case.command(), cwd=REPO, env=env, stdout=out, stderr=err,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=cfg.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            _kill_group(proc.pid)  # pool children or workers left behind
        proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if cfg.verbose and (stderr.strip() and (timed_out or proc.returncode)):
        sys.stderr.write(f"--- stderr of {case.fn} {json.dumps(case.kwargs)}\n{stderr[-3000:]}\n")
    payload = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARK):
            payload = json.loads(line[len(RESULT_MARK):])
    if timed_out:
        after = " (after reporting a result: hung at exit)" if payload else ""
        return Outcome(error=f"TIMEOUT after {cfg.timeout:g} s{after}")
    if payload is None:
        lines = [x for x in stderr.strip().splitlines() if x.strip()]
        why = _first_line(lines[-1]) if lines else "no output"
        return Outcome(error=f"ERROR: exit {proc.returncode}: {why}")
    if "skip" in payload:
        return Outcome(error=f"SKIP: {payload['skip']}")
    if "error" in payload:
        return Outcome(error=f"ERROR: {_first_line(payload['error'])}")
    return Outcome(metrics=payload.get("metrics", {}), note=payload.get("note"))


def run_workload(wl: Workload, cfg: Config,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, CaseResults]:
    """Run every case of ``wl`` alternately for ``cfg.runs`` rounds.

    A case that fails is tried again in the next round; one that timed out
    or was skipped is not."""
    results = {c.key: CaseResults(c) for c in wl.cases}
    for rnd in range(1, cfg.runs + 1):
        for case in wl.cases:
            res = results[case.key]
            if res.stopped:
                continue
            t0 = time.perf_counter()
            out = run_case(case, cfg)
            took = time.perf_counter() - t0
            head = f"{wl.key} round {rnd}/{cfg.runs} {case.key}"
            if out.error:
                first = not res.errors
                res.errors.append(out.error)
                res.stopped = not out.error.startswith("ERROR")
                log(f"{head}: {out.error} ({took:.1f} s)")
                if first and not out.error.startswith("SKIP"):
                    log(f"    reproduce: cd {REPO} && PYTHONPATH=. "
                        + " ".join(_shell_quote(a) for a in case.command()))
                continue
            res.runs.append(out.metrics)
            if out.note and out.note not in res.notes:
                res.notes.append(out.note)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in out.metrics.items())
            log(f"{head}: {shown} ({took:.1f} s)")
    return results


def _shell_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@dataclass
class RowStats:
    row: Row
    median: float | None
    lo: float | None
    hi: float | None
    n: int
    error: str | None


def table_stats(table: Table, results: dict[str, CaseResults]) -> list[RowStats]:
    stats = []
    for row in table.rows:
        res = results[row.case]
        vals = res.values(row.metric)
        if vals:
            stats.append(RowStats(row, statistics.median(vals), min(vals), max(vals),
                                  len(vals), res.error))
        else:
            stats.append(RowStats(row, None, None, None, 0,
                                  res.error or "ERROR: no value for " + row.metric))
    return stats
