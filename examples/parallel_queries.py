"""Independent aggregate queries on an embedded SQLite database, on every core.

The example generates a sales database (a few hundred thousand rows, in a
temporary directory it removes at the end), then runs a dozen independent
aggregate queries twice in the same run: one after another in the main
goroutine, and spread over every worker with `mpgo.Group` (errgroup: the
results come back in submission order; the first error would cancel the
rest). Each goroutine opens its own sqlite3 connection: a connection cannot
move between processes, a path can. Prints the speedup — what Gorm gets from
goroutines, with worker processes doing the work side by side.

Run: python examples/parallel_queries.py [--rows 300000] [--workers N] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import mpgo

QUERIES: list[tuple[str, str]] = [
    ("revenue by region",
     "SELECT region, round(sum(qty * price), 2) FROM sales GROUP BY region ORDER BY region"),
    ("top 10 products by units",
     "SELECT product, sum(qty) AS u FROM sales GROUP BY product ORDER BY u DESC, product LIMIT 10"),
    ("orders and average price per month",
     "SELECT day / 30 AS m, count(*), round(avg(price), 4) FROM sales GROUP BY m ORDER BY m"),
    ("distinct customers per region",
     "SELECT region, count(DISTINCT customer) FROM sales GROUP BY region ORDER BY region"),
    ("customers with more than 12 orders",
     "SELECT count(*) FROM (SELECT customer FROM sales GROUP BY customer HAVING count(*) > 12)"),
    ("revenue by region and quarter",
     "SELECT region, day / 91 AS q, round(sum(qty * price), 2) FROM sales "
     "GROUP BY region, q ORDER BY region, q"),
    ("largest order per product (top 10)",
     "SELECT product, max(qty * price) AS big FROM sales GROUP BY product "
     "ORDER BY big DESC, product LIMIT 10"),
    ("price spread per product (top 10)",
     "SELECT product, round(max(price) - min(price), 2) AS spread FROM sales "
     "GROUP BY product ORDER BY spread DESC, product LIMIT 10"),
    ("best day per region",
     "SELECT region, day, r FROM (SELECT region, day, round(sum(qty * price), 2) AS r, "
     "row_number() OVER (PARTITION BY region ORDER BY sum(qty * price) DESC, day) AS k "
     "FROM sales GROUP BY region, day) WHERE k = 1 ORDER BY region"),
    ("bulk orders (qty >= 8) by region",
     "SELECT region, count(*), round(avg(price), 4) FROM sales WHERE qty >= 8 "
     "GROUP BY region ORDER BY region"),
    ("top 10 customers by revenue",
     "SELECT customer, round(sum(qty * price), 2) AS r FROM sales GROUP BY customer "
     "ORDER BY r DESC, customer LIMIT 10"),
    ("weekday histogram",
     "SELECT day % 7 AS wd, count(*), sum(qty) FROM sales GROUP BY wd ORDER BY wd"),
]

REGIONS = ["north", "south", "east", "west", "centre", "islands"]


def generate(path: str, rows: int, seed: int = 7) -> None:
    """Write the sales table: `rows` random orders (deterministic for `seed`)."""
    rnd = random.Random(seed)

    def orders() -> Iterator[tuple[Any, ...]]:
        for _ in range(rows):
            yield (rnd.choice(REGIONS), rnd.randrange(2000), rnd.randrange(30000),
                   rnd.randint(1, 10), round(rnd.uniform(1.0, 500.0), 2), rnd.randrange(365))

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, region TEXT, product INT, "
                   "customer INT, qty INT, price REAL, day INT)")
        db.executemany("INSERT INTO sales (region, product, customer, qty, price, day) "
                       "VALUES (?, ?, ?, ?, ?, ?)", orders())
    db.close()


def run_query(path: str, sql: str) -> tuple[list[tuple[Any, ...]], float, int]:
    """Run one query on a connection of its own; (rows, seconds, worker)."""
    t = time.perf_counter()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(sql).fetchall()
    finally:
        db.close()
    return rows, time.perf_counter() - t, mpgo.worker_id()


class _GoJoinGroup:
    """Stand-in for `mpgo.Group` where it is not available yet: go + join."""

    def __init__(self) -> None:
        self._gs: list[mpgo.Goroutine] = []

    def go(self, fn: Callable[..., Any], /, *args: Any) -> None:
        self._gs.append(mpgo.go(fn, *args))

    def wait(self) -> list[Any]:
        return [g.join() for g in self._gs]


def _group() -> Any:
    group = getattr(mpgo, "Group", None)
    return group() if group is not None else _GoJoinGroup()


def compare(path: str, rounds: int) -> dict[str, Any]:
    """The main goroutine: the queries one by one, then all at once; the best
    of `rounds` alternations of the two (a shared machine is noisy)."""
    run_query(path, "SELECT count(*), sum(price) FROM sales")     # warm the page cache
    t_serial = t_parallel = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        serial = [run_query(path, sql) for _, sql in QUERIES]
        t_serial = min(t_serial, time.perf_counter() - t)

        t = time.perf_counter()
        g = _group()
        for _, sql in QUERIES:
            g.go(run_query, path, sql)
        parallel = g.wait()
        t_parallel = min(t_parallel, time.perf_counter() - t)

        if [r for r, _, _ in serial] != [r for r, _, _ in parallel]:
            raise AssertionError("the parallel answers differ from the serial ones")
    return {"serial": t_serial, "parallel": t_parallel, "results": parallel,
            "group": type(g).__name__, "workers": mpgo.num_workers()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--rounds", type=int, default=2,
                   help="alternations of the serial and parallel passes; best of each")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the CPU count)")
    args = p.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="mpgo-queries-")
    try:
        path = os.path.join(tmp, "sales.db")
        t = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.1f} s "
              f"({os.path.getsize(path) / 1e6:.0f} MB, {path})")
        out = mpgo.run(compare, path, max(1, args.rounds), workers=args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for (name, _), (rows, secs, wid) in zip(QUERIES, out["results"], strict=True):
        first = rows[0] if rows else ()
        print(f"  {name:<38} {secs * 1000:7.1f} ms  worker {wid}  "
              f"{len(rows):>4} row(s), first {first}")
    speedup = out["serial"] / out["parallel"]
    print(f"{len(QUERIES)} queries one after another: {out['serial']:.2f} s; "
          f"spread over {out['workers']} workers with {out['group']}: "
          f"{out['parallel']:.2f} s; speedup {speedup:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
