"""The article's first program: a goroutine prints while main sleeps.

    go printNumbers()
    time.Sleep(6 * time.Second)

Run: python examples/print_numbers.py
"""

import mpgo


def print_numbers():
    for i in range(10):
        mpgo.sleep(0.5)
        print(i, flush=True)


def main():
    mpgo.go(print_numbers)
    mpgo.sleep(6)


if __name__ == "__main__":
    mpgo.run(main)
