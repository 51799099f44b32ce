"""Iterators of batches run ahead on threads or processes: Python work on the next batch overlaps Rust
work (Polars, delta-rs, releasing the GIL) on the last, while memory stays a few batches deep."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
CORES = len(os.sched_getaffinity(0))  # the cores this process may run on: batches, threads, parse workers
_PREFETCH = 2  # items a producer thread may run ahead of its consumer


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """``items`` produced on a thread, at most ``_PREFETCH`` ahead of the consumer. An error is raised
    where it is read; a consumer that stops early stops the producer."""
    ready: queue.Queue = queue.Queue(maxsize=_PREFETCH)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    with contextlib.suppress(queue.Full):
                        ready.put((item, None), timeout=0.1)
                        break
                if stop.is_set():
                    return
            ready.put((done, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put((done, exc))

    thread = threading.Thread(target=produce, name="semtel-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                ready.get_nowait()
        thread.join()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned, not forked: the caller runs threads (Polars', Dagster's), which a forked child would inherit stopped."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def ordered_map(work: Callable[[T], R], items: Iterable[T], workers: int, processes: bool = False) -> Iterator[R]:
    """``map(work, items)`` with ``workers`` items in work at once, results in input order.

    On threads, a stage whose Python parts hold the GIL keeps every core busy by running its Rust parts
    on the other batches. ``processes`` runs a stage that holds the GIL most of the time (the token
    counter) in that many spawned processes (``work`` and the items are pickled; starting takes seconds).
    """
    if workers <= 1:
        yield from map(work, items)
        return
    pool: Executor = process_pool(workers) if processes else ThreadPoolExecutor(workers, thread_name_prefix="semtel-map")
    with pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
