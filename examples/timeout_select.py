"""A timeout with select and after: wait for a result, give up after a deadline.

Run: python examples/timeout_select.py
"""

import mpgo


def slow_answer(out, delay):
    mpgo.sleep(delay)
    out.send(f"answer after {delay}s")


def ask(delay, timeout):
    out = mpgo.Chan(1)        # buffered: the late sender never blocks forever
    mpgo.go(slow_answer, out, delay)
    i, v = mpgo.select(out.recv, mpgo.after(timeout).recv)
    return v if i == 0 else f"timed out after {timeout}s"


def main():
    print(ask(0.1, 1.0))
    print(ask(2.0, 0.3))


if __name__ == "__main__":
    mpgo.run(main)
