"""Small helpers shared by the workload modules (run inside case processes)."""

from __future__ import annotations

import multiprocessing
import os
import platform
import secrets
import time
from importlib import metadata

PACKAGES = ["mpgo", "greenlet", "pyzmq", "msgpack", "cloudpickle", "gevent", "joblib"]


def fork_ctx():
    """Peers use fork, as mpgo does (and as Python 3.11 does by default on Linux)."""
    return multiprocessing.get_context("fork")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ipc_addr(tag: str) -> str:
    """An abstract-namespace ipc address: nothing is left on disk."""
    return f"ipc://@bench-{os.getpid()}-{tag}-{secrets.token_hex(4)}"


def _probe(report, go_ahead, fn, args):
    import mpgo

    report.send(mpgo.worker_id())
    if go_ahead.recv():
        return fn(*args)
    return None


def _noop():
    return None


def go_on(wid: int, fn, *args, tries: int = 40):
    """Start ``fn(*args)`` as a goroutine on worker ``wid`` (mpgo has no pinning
    to another worker, so: spawn a probe, let an idle worker steal it, and
    retry until it lands on ``wid``).  Returns ``(goroutine, worker it runs on)``;
    after ``tries`` misses it runs wherever the last probe landed.
    Call from inside a goroutine."""
    import mpgo

    if wid == mpgo.worker_id():
        return mpgo.go_local(fn, *args), wid
    for i in range(tries):
        report, go_ahead = mpgo.Chan(), mpgo.Chan()
        g = mpgo.go(_probe, report, go_ahead, fn, args)
        mpgo.go(_noop)  # moves the probe out of `runnext`, where it cannot be stolen
        time.sleep(0.005)  # hold this worker's thread without parking: a thief takes it
        got = report.recv()
        last = got == wid or i == tries - 1
        go_ahead.send(last)
        if last:
            return g, got
    raise AssertionError("unreachable")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        mod = {"pyzmq": "zmq"}.get(name, name)
        try:
            return getattr(__import__(mod), "__version__", "?")
        except ImportError:
            return "not installed"


def _mpgo_state() -> str:
    try:
        import mpgo
    except Exception as e:
        return f"mpgo not importable ({type(e).__name__}: {e})"
    if not hasattr(mpgo, "run"):
        return "mpgo has no runtime yet (mpgo.run missing)"
    version = getattr(mpgo, "__version__", None) or _version("mpgo")
    try:
        from mpgo._transport._atomic import IMPLEMENTATION
    except Exception as e:
        IMPLEMENTATION = f"unknown ({type(e).__name__})"
    return f"mpgo {version} (atomics: {IMPLEMENTATION})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """The machine line (a case, so that mpgo is imported in a fresh process)."""
    cores = len(os.sched_getaffinity(0))
    pkgs = ", ".join(f"{p} {_version(p)}" for p in PACKAGES if p != "mpgo")
    line = (f"{cores} cores ({_cpu_model()}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; {_mpgo_state()}; {pkgs}")
    return {"note": line}
