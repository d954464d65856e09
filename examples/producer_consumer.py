"""The article's producer/consumer: a producer sends 0..9 and closes; main ranges.

    func producer(ch chan int) { for i := 0; i < 10; i++ { ch <- i }; close(ch) }
    func main() { ch := make(chan int); go producer(ch); consumer(ch) }

The producer may run in another worker process: the channel works the same.

Run: python examples/producer_consumer.py
"""

import mpgo


def producer(ch):
    for i in range(10):
        ch.send(i)
    ch.close()


def consumer(ch):
    for v in ch:
        print(v)


def main():
    ch = mpgo.Chan()
    mpgo.go(producer, ch)
    consumer(ch)


if __name__ == "__main__":
    mpgo.run(main)
