"""The README's main job (`python -m mpgo demo`) and every example, run as a
user runs them: a fresh interpreter, real workers, checked output.

(`examples/http_server.py` and `examples/parallel_queries.py` are exercised
in test_net.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=ROOT)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _example(name: str, *args: str, timeout: float = 60) -> str:
    return _run(str(EXAMPLES / name), *args, timeout=timeout).stdout


def test_demo_prints_three_equal_counts_and_the_speedups():
    out = _run("-m", "mpgo", "demo", "--limit", "60000", "--repeat", "1",
               "--workers", "2").stdout
    counts = re.findall(r"(\d+) primes", out)
    assert len(counts) == 3 and len(set(counts)) == 1, out
    assert int(counts[0]) == 6057                       # primes below 60,000
    assert re.search(r"mpgo speedup: [\d.]+x over one core, [\d.]+x over ProcessPoolExecutor",
                     out), out


def test_demo_rejects_a_repeat_below_one():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "mpgo", "demo", "--repeat", "0"],
                       capture_output=True, text=True, timeout=30, env=env, cwd=ROOT)
    assert r.returncode == 2 and "--repeat must be at least 1" in r.stderr, r.stderr


def test_print_numbers_prints_0_to_9_while_main_sleeps():
    assert _example("print_numbers.py").split() == [str(i) for i in range(10)]


def test_producer_consumer_receives_every_value_in_order():
    assert _example("producer_consumer.py").split() == [str(i) for i in range(10)]


def test_counter_mutex_counts_exactly_1000_on_every_worker():
    out = _example("counter_mutex.py")
    lines = out.splitlines()
    assert lines[0] == "1000", out
    spread = eval(lines[1].split(":", 1)[1])            # {worker: increments}
    assert sum(spread.values()) == 1000
    assert len(spread) >= 2 and all(n > 0 for n in spread.values()), out


def test_pipeline_sums_the_squares():
    out = _example("pipeline.py", "20000")
    assert f"= {sum(i * i for i in range(20000))} " in out, out


def test_fan_out_fan_in_gets_every_result():
    out = _example("fan_out_fan_in.py", "200")           # it asserts the results itself
    assert out.startswith("200 jobs:") and "speedup" in out, out


def test_primes_counts_and_prints_its_speedup():
    out = _example("primes.py", "50000")
    assert "5133 primes below 50,000" in out and "speedup" in out, out


def test_timeout_select_answers_then_times_out():
    out = _example("timeout_select.py")
    assert "answer after" in out and "timed out after" in out, out


def test_pool_first_error_stops_at_the_bad_record():
    out = _example("pool_first_error.py", "200", "30")
    assert "stopped at the first error: record 30" in out, out
    assert "Canceled" in out, out


def test_crawl_deadline_cuts_off_at_the_deadline():
    out = _example("crawl_deadline.py", "0.5")
    assert "DeadlineExceeded" in out and "finished:" in out, out


@pytest.mark.parametrize("name, first, expected", [
    ("deadlock_report.py", "mpgo.Deadlock raised", "all goroutines are asleep - deadlock!"),
    ("crash_report.py", "mpgo.WorkerDied raised", "was killed by SIGKILL"),
])
def test_failure_report_examples_show_the_report(name, first, expected):
    out = _example(name)
    assert out.startswith(first) and expected in out, out


_NO_C = '''
import sys
sys.modules["mpgo._speedups"] = None          # as if no C compiler had been there
import mpgo
from mpgo._core import _chan
from mpgo._runtime import _remote
from mpgo._runtime._goroutine import go_on
from mpgo._transport import _atomic
assert not _remote._C_PATHS and _chan._ChanBase is _chan._ChanBasePy
assert _atomic.IMPLEMENTATION == "semaphores"
from mpgo._transport import _link, _wire
assert _link._CZ is None and _wire.split is _wire.split_py   # pyzmq and msgpack
from mpgo._runtime import _chanhome
assert _remote._ring_put is None and _chanhome._ring_take is None   # no pair rings

def consume(ch, out):
    out.send((sum(ch), mpgo.worker_id()))

def bump(mu, n, k):
    for _ in range(k):
        with mu:
            n.store(n.load() + 1)

def main():
    res = []
    for cap in (0, 64):
        ch, out = mpgo.Chan(cap), mpgo.Chan()
        go_on(1, consume, ch, out)
        for i in range(2000):
            ch.send(i)
        ch.close()
        res.append(out.recv())
    local = mpgo.Chan()
    mpgo.go_local(lambda: [local.send(i) for i in range(100)] and local.close())
    res.append(sum(local))
    mu, n = mpgo.Mutex(), mpgo.AtomicInt()
    for g in [mpgo.go(bump, mu, n, 500) for _ in range(4)]:
        g.join()
    res.append(n.load())
    return res

print(mpgo.run(main, workers=2))
'''


def test_everything_works_without_the_c_accelerator():
    # README: "a C compiler is optional"; the pure-Python paths must hold the
    # same semantics (channels local and across workers, locks, atomics).
    out = _run("-c", _NO_C).stdout
    assert out.strip() == str([(1999000, 1), (1999000, 1), 4950, 2000]), out
