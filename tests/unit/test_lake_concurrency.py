"""Concurrent writers in real processes: one week is never duplicated, one folder has one classify run.

Each round starts two spawned processes at a barrier so their first writes of a fresh table overlap
(before these guards, about one round in ten left both copies).
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
pytestmark = pytest.mark.timeout(240)  # a hung writer fails the test instead of the suite
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


def _write(uri: str, tag: str, barrier, results, locked: bool) -> None:
    data = tables.conform(_rejects(tag), tables.INGEST_REJECTS)
    barrier.wait(timeout=60)
    try:
        if locked:
            delta.overwrite_weeks(uri, data, tables.INGEST_REJECTS, [WEEK])
        else:  # what an object-store lake does: no file lock, Delta's conflict check only
            delta.commit_overwrite(uri, data, tables.INGEST_REJECTS, [WEEK])
        results.put((tag, "ok"))
    except delta.ConcurrentWeekWrite as exc:
        results.put((tag, f"refused: {exc}"))


def _race(uri: str, locked: bool) -> list[tuple[str, str]]:
    barrier, results = _SPAWN.Barrier(2), _SPAWN.Queue()
    procs = [_SPAWN.Process(target=_write, args=(uri, tag, barrier, results, locked)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, "a writer crashed or hung"
    return sorted(results.get(timeout=5) for _ in procs)


@pytest.mark.parametrize("locked", [True, False], ids=["local-lock", "delta-conflict-check"])
def test_two_first_writes_of_a_week_never_duplicate(tmp_path, locked):
    refused = 0
    for k in range(ROUNDS):
        uri = str(tmp_path / f"lake{k}" / "ingest_rejects")
        outcomes = _race(uri, locked)
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


def _hold(path: str, ready, release) -> None:
    with locks.exclusive(Path(path), purpose="semtel classify into out"):
        ready.set()
        release.wait(timeout=60)


def test_second_holder_fails_fast_naming_the_pid_and_a_killed_holder_frees_the_lock(tmp_path):
    path = tmp_path / "out" / ".lock"
    ready, release = _SPAWN.Event(), _SPAWN.Event()
    holder = _SPAWN.Process(target=_hold, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(timeout=60)
        started = time.monotonic()
        with pytest.raises(locks.LockHeld) as err, locks.exclusive(path, purpose="semtel classify into out"):
            pass
        assert time.monotonic() - started < 2
        assert f"pid {holder.pid}" in str(err.value) and str(path) in str(err.value)
        os.kill(holder.pid, signal.SIGKILL)  # a crash: no cleanup runs
        holder.join(timeout=30)
        with locks.exclusive(path, wait_seconds=5):  # the kernel released it; nothing stale to remove
            assert locks.holder(path)["pid"] == os.getpid()
    finally:
        release.set()
        holder.join(timeout=30)
        if holder.is_alive():
            holder.kill()


def _create_instance(home: str, barrier, results) -> None:
    from semtel_dagster.resources.lake import open_dagster_instance

    barrier.wait(timeout=60)
    try:
        with open_dagster_instance(Path(home)) as instance:
            instance.get_runs(limit=1)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_create_one_fresh_dagster_instance(tmp_path):
    for k in range(2):
        home = tmp_path / f"dagster{k}"
        home.mkdir()
        (home / "dagster.yaml").touch()
        barrier, results = _SPAWN.Barrier(2), _SPAWN.Queue()
        procs = [_SPAWN.Process(target=_create_instance, args=(str(home), barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert sorted(results.get(timeout=5) for _ in procs) == ["ok", "ok"]


@pytest.mark.integration
def test_second_classify_into_one_folder_fails_fast_naming_the_holder(tmp_path):
    import subprocess
    import sys

    from semtel_dagster.cli.classify import OUTPUT_LOCK

    out = tmp_path / "out"
    ready, release = _SPAWN.Event(), _SPAWN.Event()
    first = _SPAWN.Process(target=_hold, args=(str(out / OUTPUT_LOCK), ready, release))
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
        assert second.returncode == 4
        assert f"held by pid {first.pid}" in second.stderr and "another run is writing this output folder" in second.stderr
    finally:
        release.set()
        first.join(timeout=30)
