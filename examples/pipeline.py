"""A three-stage pipeline: generate -> square -> sum, stages in different workers.

Run: python examples/pipeline.py [N]
"""

import sys
import time

import mpgo


def generate(n, out):
    for i in range(n):
        out.send(i)
    out.close()


def square(inp, out):
    for v in inp:
        out.send(v * v)
    out.close()


def main(n):
    nums, squares = mpgo.Chan(1024), mpgo.Chan(1024)
    mpgo.go(generate, n, nums)
    mpgo.go(square, nums, squares)
    return sum(squares)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    t = time.perf_counter()
    total = mpgo.run(main, n)
    dt = time.perf_counter() - t
    assert total == sum(i * i for i in range(n))
    print(f"sum of squares below {n:,} = {total} ({dt:.2f} s, {dt / n * 1e6:.2f} us/item)")
