"""Concurrent writers in real processes: one week is never duplicated, one folder has one classify run.

Two spawned processes meet at a barrier before each round so their first writes of a fresh table
overlap (before these guards, about one round in ten left both copies); the same two race every round,
since starting a process (its imports) costs far more than a round.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.core.lake import delta, locks, tables

WEEK = dt.date(2025, 1, 6)
ROWS = 400
ROUNDS = 6
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]  # a hung writer fails the test, not the suite
_SPAWN = mp.get_context("spawn")  # fork would copy Polars' thread pool mid-use


def _rejects(tag: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "week_start": [WEEK] * ROWS,
            "source": [tag] * ROWS,
            "record_ref": [f"f:{i}" for i in range(ROWS)],
            "reason": ["r"] * ROWS,
            "raw": [""] * ROWS,
        }
    )


def _write(uri: str, tag: str, locked: bool) -> tuple[str, str]:
    data = tables.conform(_rejects(tag), tables.INGEST_REJECTS)
    try:
        if locked:
            delta.overwrite_weeks(uri, data, tables.INGEST_REJECTS, [WEEK])
        else:  # what an object-store lake does: no file lock, Delta's conflict check only
            delta.commit_overwrite(uri, data, tables.INGEST_REJECTS, [WEEK])
        return tag, "ok"
    except delta.ConcurrentWeekWrite as exc:
        return tag, f"refused: {exc}"


def _serve(work, jobs, barrier, results) -> None:
    """Run ``work(*args)`` for each job, starting together with the other racer; ``None`` ends."""
    while (args := jobs.get()) is not None:
        barrier.wait(timeout=60)
        results.put(work(*args))


class _Racers:
    """Two spawned processes that run one function at the same moment, once per :meth:`race`."""

    def __init__(self, work) -> None:
        self.barrier, self.results = _SPAWN.Barrier(2), _SPAWN.Queue()
        self.jobs = [_SPAWN.Queue(), _SPAWN.Queue()]
        self.procs = [_SPAWN.Process(target=_serve, args=(work, jobs, self.barrier, self.results)) for jobs in self.jobs]

    def __enter__(self) -> _Racers:
        for p in self.procs:
            p.start()
        return self

    def race(self, *args_each: tuple) -> list:
        for jobs, args in zip(self.jobs, args_each):
            jobs.put(args)
        return sorted(self.results.get(timeout=120) for _ in self.procs)

    def __exit__(self, *exc) -> None:
        for jobs in self.jobs:
            jobs.put(None)
        for p in self.procs:
            p.join(timeout=120)
            assert p.exitcode == 0, "a racer crashed or hung"


@pytest.mark.parametrize("locked", [True, False], ids=["local-lock", "delta-conflict-check"])
def test_two_first_writes_of_a_week_never_duplicate(tmp_path, locked):
    refused = 0
    with _Racers(_write) as racers:
        for k in range(ROUNDS):
            uri = str(tmp_path / f"lake{k}" / "ingest_rejects")
            outcomes = racers.race((uri, "a", locked), (uri, "b", locked))
            stored = pl.read_delta(uri)
            assert stored.height == ROWS, f"round {k}: {stored.height} rows after {outcomes}"
            assert stored.get_column("source").n_unique() == 1  # one writer's rows, whole
            assert any(status == "ok" for _, status in outcomes)
            losers = [status for _, status in outcomes if status != "ok"]
            refused += len(losers)
            if locked:
                assert not losers  # the second writer waited and then replaced the week
            else:
                assert all("at the same time" in s and "Run the week again" in s for s in losers)
    if locked:
        assert (tmp_path / "lake0" / delta.LOCKS_FOLDER / "ingest_rejects" / f"{WEEK}.lock").exists()


def _hold(path: str, ready) -> None:
    """Hold the lock until killed (waiting on a multiprocessing primitive instead would leave it broken
    for the test once the holder is killed mid-wait)."""
    with locks.exclusive(Path(path), purpose="semtel classify into out"):
        ready.set()
        time.sleep(120)


def _kill(proc) -> None:
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)


def test_second_holder_fails_fast_naming_the_pid_and_a_killed_holder_frees_the_lock(tmp_path):
    path = tmp_path / "out" / ".lock"
    ready = _SPAWN.Event()
    holder = _SPAWN.Process(target=_hold, args=(str(path), ready))
    holder.start()
    try:
        assert ready.wait(timeout=60)
        started = time.monotonic()
        with pytest.raises(locks.LockHeld) as err, locks.exclusive(path, purpose="semtel classify into out"):
            pass
        assert time.monotonic() - started < 2
        assert f"pid {holder.pid}" in str(err.value) and str(path) in str(err.value)
        _kill(holder)  # a crash: no cleanup runs
        with locks.exclusive(path, wait_seconds=5):  # the kernel released it; nothing stale to remove
            assert locks.holder(path)["pid"] == os.getpid()
    finally:
        _kill(holder)


def _create_instance(home: str) -> str:
    from semtel_dagster.resources.lake import open_dagster_instance

    try:
        with open_dagster_instance(Path(home)) as instance:
            instance.get_runs(limit=1)
        return "ok"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def test_two_processes_create_one_fresh_dagster_instance(tmp_path):
    with _Racers(_create_instance) as racers:
        for k in range(2):
            home = tmp_path / f"dagster{k}"
            home.mkdir()
            (home / "dagster.yaml").touch()
            assert racers.race((str(home),), (str(home),)) == ["ok", "ok"]


def test_second_classify_into_one_folder_fails_fast_naming_the_holder(tmp_path):
    import subprocess
    import sys

    from semtel_dagster.cli.classify import OUTPUT_LOCK

    out = tmp_path / "out"
    ready = _SPAWN.Event()
    first = _SPAWN.Process(target=_hold, args=(str(out / OUTPUT_LOCK), ready))
    first.start()
    try:
        assert ready.wait(timeout=60)
        (tmp_path / "in.jsonl").write_text("")
        second = subprocess.run(
            [sys.executable, "-m", "semtel_dagster.cli", "classify", "--input", str(tmp_path / "in.jsonl"), "--output", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert second.returncode == 5
        assert f"held by pid {first.pid}" in second.stderr and "another run is writing this output folder" in second.stderr
    finally:
        _kill(first)
