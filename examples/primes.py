"""CPU-bound work over every core: count primes with one goroutine per range.

Prints the time on one core, the time with mpgo on every core, and the speedup.

Run: python examples/primes.py [LIMIT]
"""

import os
import sys
import time

import mpgo


def count_primes(lo, hi):
    n = 0
    for k in range(max(lo, 2), hi):
        d = 2
        while d * d <= k:
            if k % d == 0:
                break
            d += 1
        else:
            n += 1
    return n


def main(limit, parts=64):
    step = -(-limit // parts)
    gs = [mpgo.go(count_primes, lo, min(lo + step, limit)) for lo in range(0, limit, step)]
    return sum(g.join() for g in gs)


if __name__ == "__main__":
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
    t = time.perf_counter()
    serial = count_primes(0, limit)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    total = mpgo.run(main, limit)
    tm = time.perf_counter() - t
    assert total == serial
    print(f"{total} primes below {limit:,}")
    print(f"one core: {t1:.2f} s; mpgo on {os.cpu_count()} workers: {tm:.2f} s; "
          f"speedup {t1 / tm:.2f}x")
