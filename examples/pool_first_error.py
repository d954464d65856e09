"""A worker pool that stops at the first error and reports it.

`mpgo.Group(limit=N)` is the pool: ``g.go`` blocks while N jobs run (on any
worker). One record is corrupt; its job raises, which cancels ``g.ctx`` at
once: the submit loop stops handing out jobs, jobs in flight notice between
chunks of work and give up, and ``g.wait()`` raises the error.

Run: python examples/pool_first_error.py [JOBS] [BAD]
"""

import sys
import time

import mpgo


class CorruptRecord(Exception):
    pass


def checksum(ctx, record, bad, stats):
    stats["started"].add(1)
    total = 0
    for chunk in range(20):                  # 20 chunks of CPU work
        if ctx.err() is not None:            # someone failed: stop early
            stats["abandoned"].add(1)
            return None
        for i in range(5_000):
            total = (total * 31 + record * i + chunk) % 1_000_003
        if record == bad and chunk == 10:
            raise CorruptRecord(f"record {record}: bad checksum at chunk {chunk} "
                                f"(worker {mpgo.worker_id()})")
    stats["finished"].add(1)
    return total


def main(jobs, bad):
    limit = 2 * mpgo.num_workers()
    stats = {k: mpgo.AtomicInt() for k in ("started", "finished", "abandoned")}
    g = mpgo.Group(limit=limit)
    t0 = time.monotonic()
    submitted = 0
    for record in range(jobs):
        if g.ctx.err() is not None:          # the pool failed: hand out no more
            break
        g.go(checksum, g.ctx, record, bad, stats)
        submitted += 1
    try:
        results = g.wait()
        print(f"all {len(results)} records are fine")
    except CorruptRecord as e:
        print(f"stopped at the first error: {e}")
    dt = time.monotonic() - t0
    s = {k: v.load() for k, v in stats.items()}
    print(f"pool of {limit} on {mpgo.num_workers()} workers, {dt:.2f} s: "
          f"{submitted} of {jobs} jobs submitted, {s['started']} started, "
          f"{s['finished']} finished, {s['abandoned']} gave up early; "
          f"g.ctx.err() = {g.ctx.err()!r}")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    bad = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    mpgo.run(main, n, bad)
