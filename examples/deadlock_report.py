"""A deadlock and its report: two goroutines in different workers each wait
for the other (a cycle across processes). Go prints
``fatal error: all goroutines are asleep - deadlock!`` with every goroutine;
mpgo raises `mpgo.Deadlock` with the same picture, within about a second.

Run: python examples/deadlock_report.py
"""

import mpgo
from mpgo.testing import go_on


def ping(a, b):
    b.send(a.recv())        # waits for a, which waits for b: a cycle


def main():
    a, b = mpgo.Chan(), mpgo.Chan()
    go_on(1, ping, a, b)    # in the other worker process
    a.send(b.recv())        # main waits for b


if __name__ == "__main__":
    try:
        mpgo.run(main, workers=2)
    except mpgo.Deadlock as e:
        print("mpgo.Deadlock raised:\n")
        print(e)
