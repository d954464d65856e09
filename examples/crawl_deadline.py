"""A crawl-style fan-out under one deadline: what finished, what was cut off.

Every "page" takes a random network latency (a parked goroutine: it waits in
``select`` on the deadline's ``done()`` and a timer) and then some pure-Python
CPU to parse it (on whichever worker runs it). Each level of the crawl is a
`mpgo.Group` with a limit, all under one ``with_timeout`` context: when the
deadline passes, fetches in flight stop at once, in every worker, and the
crawl reports what it got.

Run: python examples/crawl_deadline.py [SECONDS]
"""

import hashlib
import random
import sys
import time

import mpgo

FANOUT = 4          # links per page
PARSE_ROUNDS = 5_000


def links_of(url):
    return [f"{url.rstrip('/')}/{i}" for i in range(FANOUT)]


def parse(url):
    """Pretend to parse: a few milliseconds of pure-Python CPU."""
    h = url.encode()
    for _ in range(PARSE_ROUNDS):
        h = hashlib.blake2b(h, digest_size=16).digest()
    return h.hex()[:8]


def fetch(ctx, url):
    latency = random.uniform(0.05, 0.4)
    i, _ = mpgo.select(ctx.done().recv, mpgo.after(latency).recv)
    if i == 0:
        return url, None, f"cut off while fetching ({type(ctx.err()).__name__})"
    if ctx.err() is not None:
        return url, None, "cut off before parsing"
    digest = parse(url)
    return url, digest, f"{latency * 1000:3.0f} ms, parsed on worker {mpgo.worker_id()}"


def crawl(seconds):
    ctx, cancel = mpgo.with_timeout(mpgo.background(), seconds)
    t0 = time.monotonic()
    frontier = ["https://example.org/"]
    fetched, cut = [], []
    depth = 0
    while frontier and ctx.err() is None:
        g = mpgo.Group(limit=16, parent=ctx)
        for url in frontier:
            g.go(fetch, g.ctx, url)
        results = g.wait()
        ok = [(u, d, note) for u, d, note in results if d is not None]
        fetched += ok
        cut += [(u, note) for u, d, note in results if d is None]
        print(f"depth {depth}: {len(ok)} of {len(results)} pages fetched "
              f"at {time.monotonic() - t0:.2f} s")
        frontier = [link for u, _, _ in ok for link in links_of(u)]
        depth += 1
    cancel()
    return fetched, cut, frontier, time.monotonic() - t0, ctx.err()


def main(seconds):
    fetched, cut, left, dt, err = crawl(seconds)
    print(f"\nfinished: {len(fetched)} pages, e.g.")
    for url, digest, note in fetched[-3:]:
        print(f"  {url:38} {digest}  {note}")
    print(f"cut off:  {len(cut)} pages, e.g.")
    for url, note in cut[:3]:
        print(f"  {url:38} {note}")
    print(f"never started: {len(left)} links")
    print(f"stopped after {dt:.2f} s (deadline {seconds} s): {err!r}")


if __name__ == "__main__":
    mpgo.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
