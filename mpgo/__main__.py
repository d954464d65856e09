"""Command line: ``python -m mpgo demo`` (see `mpgo._demo`)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m mpgo demo [--limit N] [--workers M]\n\n"
              "  demo    a CPU-bound job on every core: speedup over one core and over\n"
              "          concurrent.futures.ProcessPoolExecutor, measured in the same run")
        return 0 if argv else 2
    if argv[0] == "demo":
        from ._demo import main as demo
        return demo(argv[1:])
    print(f"unknown command {argv[0]!r}; try: python -m mpgo demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
