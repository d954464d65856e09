"""Fan-out / fan-in: a job channel, a result channel, one worker goroutine per core.

Each job costs about a millisecond of pure-Python CPU; workers on every core
take jobs as they come. Prints the speedup over doing the jobs in one process.

Run: python examples/fan_out_fan_in.py [JOBS]
"""

import sys
import time

import mpgo


def work(x):
    s = 0
    for i in range(20_000):
        s += (x * i) % 7
    return s


def worker(jobs, results):
    for x in jobs:
        results.send((x, work(x)))


def main(njobs):
    jobs, results = mpgo.Chan(64), mpgo.Chan(64)
    for _ in range(mpgo.num_workers()):
        mpgo.go(worker, jobs, results)

    def feed():
        for x in range(njobs):
            jobs.send(x)
        jobs.close()
    mpgo.go(feed)
    out = {}
    for _ in range(njobs):
        x, r = results.recv()
        out[x] = r
    return out


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    t = time.perf_counter()
    expect = {x: work(x) for x in range(n)}
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    got = mpgo.run(main, n)
    tm = time.perf_counter() - t
    assert got == expect
    print(f"{n} jobs: one process {t1:.2f} s, mpgo {tm:.2f} s, speedup {t1 / tm:.2f}x")
