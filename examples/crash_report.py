"""A worker crash and its report: a goroutine kills its own worker process
(as a segfault or the OOM killer would) while goroutines elsewhere wait on
channels and a mutex it used. The run does not hang: it ends with
`mpgo.WorkerDied` naming the worker, its pid, the signal and the goroutines
it held; a mutex the dead worker held is poisoned for later runs.

Run: python examples/crash_report.py
"""

import os
import signal

import mpgo
from mpgo.testing import go_on

results = mpgo.Chan()          # module level: shared by every worker
mu = mpgo.Mutex()


def doomed():
    mu.lock()                  # dies holding the mutex
    mpgo.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


def main():
    go_on(1, doomed)
    mpgo.sleep(0.05)
    results.recv()             # parked: released by the run's failure


if __name__ == "__main__":
    try:
        mpgo.run(main, workers=2)
    except mpgo.WorkerDied as e:
        print(f"mpgo.WorkerDied raised (worker {e.worker}, pid {e.pid}, {e.signal}):\n")
        print(e)

    def main2():
        try:
            mu.lock()
        except mpgo.LockPoisoned as e:
            print("\nthe next run's mu.lock():", e)
            mu.clear_poison()
    mpgo.run(main2, workers=2)
