"""W10: HTTP under wrk on loopback — examples/http_server.py (mpgo, 2 workers)
against a single-process gevent WSGI server (gevent.pywsgi) serving the same
responses: the fixed response ``/`` and the CPU-heavy ``/cpu`` (~2 ms of pure
Python per request).

Each case starts its server as a subprocess, waits for its "listening on"
line, runs a short wrk warm-up, then the measured wrk run (``--latency``),
and stops the server with SIGINT. Metrics: requests/s, p50 and p99 latency.

Setup: wrk comes from Debian's packages; when it is not on PATH the case runs
``apt-get install -y wrk`` (after ``apt-get update`` if needed) and reports
SKIP if that fails. ``python -m benchmarks.w10_http gevent --port 0`` runs the
gevent peer by hand.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any

from benchmarks._harness import REPO, Case, Config, Row, Skip, Table, Workload, vs

EXAMPLE = REPO / "examples" / "http_server.py"
MPGO_WORKERS = 2          # the judged configuration (issue 7)
CONNECTIONS = 50
WRK_THREADS = 1           # wrk shares the machine: keep it to one core
PATHS = {"fixed": "/", "cpu": "/cpu"}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


# -- setup -------------------------------------------------------------------

def ensure_wrk() -> str:
    """The wrk binary; installs Debian's package when missing, else Skip."""
    path = shutil.which("wrk")
    if path:
        return path
    tried = []
    for cmd in (["apt-get", "install", "-y", "-q", "wrk"],
                ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "wrk"]):
        if cmd[1] == "update" and shutil.which("wrk"):
            break
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            tried.append(f"{' '.join(cmd)}: exit {r.returncode}")
        except (OSError, subprocess.TimeoutExpired) as e:
            tried.append(f"{' '.join(cmd)}: {e}")
    path = shutil.which("wrk")
    if not path:
        raise Skip("wrk is not installed and could not be installed (" + "; ".join(tried) + ")")
    return path


def _example() -> ModuleType:
    """examples/http_server.py as a module (the gevent peer shares its responses)."""
    mod = sys.modules.get("http_server_example")
    if mod is None:
        spec = importlib.util.spec_from_file_location("http_server_example", EXAMPLE)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["http_server_example"] = mod
        spec.loader.exec_module(mod)
    return mod


# -- the gevent peer -----------------------------------------------------------

def gevent_serve(host: str, port: int) -> None:
    """A gevent.pywsgi server with the example's responses; stops on SIGINT/SIGTERM."""
    import socket

    import gevent
    from gevent.pywsgi import WSGIHandler, WSGIServer

    hs = _example()

    class NoDelayHandler(WSGIHandler):
        # pywsgi sends the headers and the body in two writes: with Nagle on,
        # the client's delayed ACK would stall every keep-alive response by
        # ~40 ms. mpgo.net sets TCP_NODELAY (as Go does); so does this peer.
        def handle(self) -> Any:
            try:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            return super().handle()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/":
            status, body = "200 OK", hs.FIXED_BODY
        elif path == "/cpu":
            status, body = "200 OK", hs.cpu_body()
        else:
            status, body = "404 Not Found", b"not found\n"
        start_response(status, [("Content-Type", "text/plain"),
                                ("Content-Length", str(len(body)))])
        return [body]

    server = WSGIServer((host, port), app, log=None, error_log=None,
                        handler_class=NoDelayHandler)
    server.start()
    print(f"listening on http://{host}:{server.server_port}/ (gevent.pywsgi, 1 process)",
          flush=True)
    for s in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(s, server.stop)
    server.serve_forever()


# -- one measured case ---------------------------------------------------------

def _start(server: str) -> tuple[subprocess.Popen[str], int]:
    if server == "mpgo":
        cmd = [sys.executable, str(EXAMPLE), "--host", "127.0.0.1", "--port", "0",
               "--workers", str(MPGO_WORKERS)]
    elif server == "gevent":
        try:
            import gevent  # noqa: F401
        except ImportError as e:
            raise Skip(f"gevent is not installed ({e})") from None
        cmd = [sys.executable, "-m", "benchmarks.w10_http", "gevent", "--port", "0"]
    else:
        raise ValueError(server)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    found: list[int] = []
    got = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"listening on http://[^:/]+:(\d+)/", line)
            if m and not found:
                found.append(int(m.group(1)))
                got.set()
        got.set()

    threading.Thread(target=reader, daemon=True).start()
    if not got.wait(60) or not found:
        _stop(proc)
        raise RuntimeError(f"{server} server did not start: {''.join(lines)[-500:]!r}")
    return proc, found[0]


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    """Requests/s, p50/p99 latency (ms) and error counts from ``wrk --latency``."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"unexpected wrk output: {out[-400:]!r}")
    res = {"rps": float(rps.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1))}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non2xx"] = float(bad.group(1)) if bad else 0.0
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = float(sum(int(x) for x in errs.groups())) if errs else 0.0
    return res


def _wrk(wrk: str, port: int, path: str, seconds: float) -> str:
    secs = max(1, round(seconds))           # wrk takes whole seconds
    cmd = [wrk, f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{secs}s", "--timeout", "10s",
           "--latency", f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed (exit {r.returncode}): "
                           f"{(r.stderr + r.stdout).strip()[-300:]}")
    return r.stdout


def http_case(server: str, endpoint: str, seconds: float, warmup: float) -> dict[str, Any]:
    """Start `server`, load `endpoint` with wrk, return its metrics."""
    wrk = ensure_wrk()
    path = PATHS[endpoint]
    proc, port = _start(server)
    try:
        if warmup > 0:
            _wrk(wrk, port, path, warmup)
        out = _wrk(wrk, port, path, seconds)
    finally:
        _stop(proc)
    res: dict[str, Any] = dict(parse_wrk(out))
    if res["non2xx"]:
        raise RuntimeError(f"{int(res['non2xx'])} non-2xx responses")
    who = (f"examples/http_server.py, {MPGO_WORKERS} workers" if server == "mpgo"
           else "gevent.pywsgi, 1 process")
    res["note"] = (f"{who}; wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{max(1, round(seconds))}s "
                   f"after a {max(1, round(warmup))} s warm-up")
    if res["socket_errors"]:
        res["note"] += f"; wrk socket errors: {int(res['socket_errors'])}"
    return res


# -- the workload --------------------------------------------------------------

def workload(cfg: Config) -> Workload:
    seconds = 2.0 if cfg.quick else 5.0
    warmup = 1.0
    cases = [Case(f"{srv}_{ep}", "w10_http:http_case",
                  {"server": srv, "endpoint": ep, "seconds": seconds, "warmup": warmup})
             for ep in PATHS for srv in ("gevent", "mpgo")]
    gev = "gevent.pywsgi (1 process)"
    mp = f"mpgo examples/http_server.py ({MPGO_WORKERS} workers)"
    tables = [
        Table(f"fixed response `/`: {CONNECTIONS} keep-alive connections", "req/s",
              higher_better=True,
              rows=[Row(gev, "gevent_fixed", "rps"),
                    Row(mp, "mpgo_fixed", "rps", target=vs(gev, 1.0, "no slower than gevent"))],
              refs=[("× gevent", [gev])]),
        Table(f"CPU endpoint `/cpu` (~2 ms of Python each): {CONNECTIONS} connections",
              "req/s", higher_better=True,
              rows=[Row(gev, "gevent_cpu", "rps"),
                    Row(mp, "mpgo_cpu", "rps", target=vs(gev, 1.8, "≥ 1.8× gevent"))],
              refs=[("× gevent", [gev])]),
        Table("latency percentiles under that load", "ms", higher_better=False,
              rows=[Row(f"{gev} `/` p50", "gevent_fixed", "p50_ms"),
                    Row(f"{mp} `/` p50", "mpgo_fixed", "p50_ms"),
                    Row(f"{gev} `/` p99", "gevent_fixed", "p99_ms"),
                    Row(f"{mp} `/` p99", "mpgo_fixed", "p99_ms"),
                    Row(f"{gev} `/cpu` p50", "gevent_cpu", "p50_ms"),
                    Row(f"{mp} `/cpu` p50", "mpgo_cpu", "p50_ms"),
                    Row(f"{gev} `/cpu` p99", "gevent_cpu", "p99_ms"),
                    Row(f"{mp} `/cpu` p99", "mpgo_cpu", "p99_ms")]),
    ]
    notes = [f"wrk runs on the same machine as the servers ({WRK_THREADS} thread, "
             f"{CONNECTIONS} connections, loopback); mpgo always uses {MPGO_WORKERS} workers "
             "here, whatever --workers says.",
             "Each case starts its server afresh (not timed), warms up, then measures.",
             "The gevent peer sets TCP_NODELAY on its connections (as mpgo.net does): "
             "pywsgi writes headers and body separately, and with Nagle on every "
             "keep-alive response would wait ~40 ms for the client's delayed ACK."]
    return Workload("W10", "HTTP server under wrk: goroutine per connection vs gevent",
                    cases, tables, notes)


def _cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.w10_http")
    p.add_argument("server", choices=["gevent"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    gevent_serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
