"""CLI: python -m benchmarks [--only W1,W3] [--runs N] [--quick] [--write] [--workers M]"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from benchmarks import WORKLOADS
from benchmarks._harness import Case, Config, run_case, run_workload
from benchmarks._report import render_workload, write_sections


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--only", default="", help="comma-separated workload ids, e.g. W1,W3")
    p.add_argument("--runs", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="sizes ÷10: a fast smoke run")
    p.add_argument("--write", action="store_true", help="rewrite sections of benchmarks/RESULTS.md")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="mpgo worker count and peer pool size (default: cpu count)")
    p.add_argument("--timeout", type=float, default=None,
                   help="per-case timeout in seconds (default 120, 30 with --quick)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print the stderr of failing cases")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keys = [k.strip().upper() for k in args.only.split(",") if k.strip()] or list(WORKLOADS)
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}",
              file=sys.stderr)
        return 2
    timeout = args.timeout or (30.0 if args.quick else 120.0)
    cfg = Config(quick=args.quick, runs=max(1, args.runs), workers=max(1, args.workers),
                 timeout=timeout, verbose=args.verbose)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    log = lambda s: print(s, file=sys.stderr, flush=True)

    info = run_case(Case("machine", "_util:machine_info"), cfg)
    machine = f"Machine: {info.note or info.error}"
    print(machine, flush=True)
    sections = {"MACHINE": machine}
    for key in keys:
        wl = importlib.import_module(f"benchmarks.{WORKLOADS[key]}").workload(cfg)
        log(f"== {key}: {wl.title}")
        results = run_workload(wl, cfg, log)
        text = render_workload(wl, results, cfg, stamp)
        print("\n" + text, flush=True)
        sections[key] = text
        if args.write:  # after each workload, so an interrupted run keeps what it measured
            write_sections(sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
