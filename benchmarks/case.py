"""Run one benchmark case in this process and print its result.

    python -m benchmarks.case w3_local_chan:mpgo_chan '{"n": 100000, "cap": 0}'

The function ``benchmarks.<module>.<func>(**kwargs)`` returns a number (the
metric ``value``) or a dict of numeric metrics plus an optional ``note``
string.  The last line of stdout is ``@@BENCH-RESULT {json}`` with
``{"metrics": {...}, "note": ...}``, ``{"error": "..."}`` or ``{"skip": "..."}``;
a traceback, if any, goes to stderr.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback

from benchmarks._harness import RESULT_MARK, Skip


def _normalise(result: object) -> dict:
    if isinstance(result, int | float):
        return {"metrics": {"value": float(result)}}
    if isinstance(result, dict):
        note = result.get("note")
        metrics = {k: float(v) for k, v in result.items() if k != "note"}
        return {"metrics": metrics, "note": note}
    raise TypeError(f"a case must return a number or a dict, not {type(result).__name__}")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    module, _, func = argv[1].partition(":")
    kwargs = json.loads(argv[2]) if len(argv) > 2 else {}
    try:
        fn = getattr(importlib.import_module(f"benchmarks.{module}"), func)
        payload = _normalise(fn(**kwargs))
        rc = 0
    except Skip as e:
        payload, rc = {"skip": str(e)}, 0
    except BaseException as e:  # report anything, even SystemExit from a runtime
        traceback.print_exc()
        text = str(e).strip().splitlines()
        payload = {"error": f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")}
        rc = 1
    sys.stdout.write(RESULT_MARK + json.dumps(payload) + "\n")
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
