"""Batches run ahead on threads (semtel_dagster.core.lake.streams)."""

import os
import threading
import time

import pytest

from semtel_dagster.core.lake.streams import ordered_map, prefetched


def test_ordered_map_keeps_input_order_runs_workers_at_once_and_reads_a_few_ahead():
    consumed = []
    running, most = 0, 0
    lock = threading.Lock()

    def items():
        for i in range(12):
            consumed.append(i)
            yield i

    def work(i):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05 if i % 3 else 0.15)  # later items finish first
        with lock:
            running -= 1
        return i * i

    results = ordered_map(work, items(), workers=3)
    first = next(results)
    assert first == 0 and len(consumed) <= 4  # at most workers + 1 taken
    assert [first, *results] == [i * i for i in range(12)]
    assert most == 3


def test_ordered_map_raises_the_error_of_an_item():
    def work(i):
        if i == 2:
            raise ValueError("bad item 2")
        return i

    with pytest.raises(ValueError, match="bad item 2"):
        list(ordered_map(work, range(6), workers=2))
    assert list(ordered_map(str, range(3), workers=1)) == ["0", "1", "2"]


def test_prefetched_raises_where_read_and_stops_its_producer_when_the_consumer_does():
    def failing():
        yield 1
        raise RuntimeError("producer broke")

    stream = prefetched(failing())
    assert next(stream) == 1
    with pytest.raises(RuntimeError, match="producer broke"):
        next(stream)

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetched(endless())
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the consumer stops: the producer thread ends, a few items ahead at most
    assert not any(t.name == "semtel-prefetch" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2


def _pid_and_square(i: int) -> tuple[int, int]:
    time.sleep(0.05 if i % 3 else 0.2)  # later items finish first
    return os.getpid(), i * i


def test_ordered_map_in_processes_keeps_input_order_and_runs_outside_this_process():
    results = list(ordered_map(_pid_and_square, range(8), workers=2, processes=True))
    assert [square for _, square in results] == [i * i for i in range(8)]
    pids = {pid for pid, _ in results}
    assert os.getpid() not in pids and len(pids) == 2
