"""The article's counter: 1000 goroutines increment a shared counter under a
Mutex, a WaitGroup waits for all of them; prints exactly 1000.

    var counter int
    var mu sync.Mutex
    func increment() { mu.Lock(); counter++; mu.Unlock() }

The goroutines spread over every worker process: the counter is an AtomicInt
(a word of shared memory) read and written only while holding the Mutex, so
the Mutex is what makes the total exact. It also prints how the increments
spread over the workers.

Run: python examples/counter_mutex.py
"""

import mpgo

counter = mpgo.AtomicInt()       # module level, as in Go: shared by every worker
mu = mpgo.Mutex()
per_worker = [mpgo.AtomicInt() for _ in range(64)]


def increment():
    with mu:
        counter.store(counter.load() + 1)   # a read-modify-write: only safe under mu
    per_worker[mpgo.worker_id()].add(1)


def main():
    wg = mpgo.WaitGroup()
    for _ in range(1000):
        wg.add(1)

        def work():
            increment()
            wg.done()
        mpgo.go(work)
    wg.wait()
    print(counter.load())
    spread = {w: per_worker[w].load() for w in range(mpgo.num_workers())}
    print("increments per worker:", spread)


if __name__ == "__main__":
    mpgo.run(main)
