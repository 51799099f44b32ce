"""Runs killed or run twice at once: ``semtel classify`` killed with SIGKILL at two points then rerun, two
``semtel classify`` into one folder at once, and two Dagster ingests of one week on a fresh lake at once:
nothing lost, nothing duplicated, and how much work was repeated."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import polars as pl
import pytest
from deltalake import DeltaTable
from harness import WEEK, classify_command, endpoints_file, finish, landing, raw_responses, run, start

from semtel_dagster.core.ingest.landing import read_file
from semtel_dagster.resources import PipelineSettings
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]
FLUSH_ROWS = 5
_SPAWN = mp.get_context("spawn")  # fork would copy Polars' thread pool mid-use


def _slow_sim(latency_ms: float) -> SimulatorThread:
    return SimulatorThread(SimConfig(endpoints=[SimEndpointConfig(name="slow", latency_ms=latency_ms)]))


def _saved(uri) -> int:
    try:
        return DeltaTable(str(uri)).to_pyarrow_table().num_rows
    except Exception:  # not created yet
        return 0


@pytest.mark.parametrize("kill_at", [0.2, 0.6], ids=["early", "late"])
def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path, figure, kill_at):
    conversations = landing(tmp_path, n=60)
    with _slow_sim(80.0) as sim:
        endpoints = endpoints_file(tmp_path, {"name": "slow", "base_url": sim.base_url("slow"), "max_concurrency": 3})
        command = classify_command(conversations, tmp_path / "out", endpoints, "--flush-rows", str(FLUSH_ROWS))
        expected = 54  # the sample's requests for one classifier (60 conversations less exact duplicates)
        proc = start(command)
        uri = tmp_path / "out" / "llm_responses"
        deadline = time.monotonic() + 60
        while _saved(uri) < kill_at * expected and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        saved = _saved(uri)
        answered_before_kill = sim.stats()["totals"]["ok_requests"]
        rerun = run(command)
        answered = sim.stats()["totals"]["ok_requests"]
    summary = rerun.summary
    raw = raw_responses(uri)
    final = pl.read_delta(str(uri))
    lost = summary["requests"] - final.filter(pl.col("status") == "ok")["request_id"].n_unique()
    figure(
        "6. SIGKILL mid-run, then rerun",
        "0 lost, 0 duplicated rows; repeated ≤ one flush + requests in flight",
        killed_at=f"{saved}/{summary['requests']} saved",
        requests=summary["requests"],
        lost=lost,
        duplicated=raw.height - raw["request_id"].n_unique(),
        repeated=answered - summary["requests"],
        answered_before_kill=answered_before_kill,
        resumed=summary["requests_resumed"],
        rerun_seconds=rerun.seconds,
    )
    assert rerun.code == 0, rerun.stderr[-2000:]
    assert 0 < saved < summary["requests"] and summary["requests_resumed"] == saved
    assert lost == 0 and raw.height == raw["request_id"].n_unique() == summary["requests"]
    assert answered - summary["requests"] <= FLUSH_ROWS + 3  # one flush plus the requests in flight


def test_two_classify_runs_into_one_folder_at_once_duplicate_nothing(tmp_path, figure):
    conversations = landing(tmp_path, n=30)
    with _slow_sim(300.0) as sim:
        endpoints = endpoints_file(tmp_path, {"name": "slow", "base_url": sim.base_url("slow"), "max_concurrency": 2})
        started = time.monotonic()
        procs = [
            start(classify_command(conversations, tmp_path / "out", endpoints, summary=tmp_path / f"{i}.json")) for i in range(2)
        ]
        done = [finish(proc, started) for proc in procs]
        answered = sim.stats()["totals"]["ok_requests"]
    raw = raw_responses(tmp_path / "out" / "llm_responses")
    codes = sorted(d.code for d in done)
    winner = next(d for d in done if d.code == 0)
    figure(
        "7a. two semtel classify into one folder at once",
        "one runs, the other stops naming the holder; 0 duplicated rows, no request asked twice",
        exit_codes=codes,
        requests=winner.summary["requests"],
        http_answered=answered,
        duplicated=raw.height - raw["request_id"].n_unique(),
    )
    assert codes == [0, 5], [d.stderr[-1000:] for d in done]
    loser = next(d for d in done if d.code == 5)
    assert "another run is writing this output folder" in loser.stderr and "held by pid" in loser.stderr
    assert raw.height == raw["request_id"].n_unique() == winner.summary["requests"] == answered


ROUNDS = 3


def _ingest_rounds(home: str, barrier, results) -> None:
    """Materialize the week's ingest on a fresh lake per round, in step with the other process."""
    from dagster import materialize

    from semtel_dagster.assets.ingest import ingest
    from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings

    for round_ in range(ROUNDS):
        barrier.wait(timeout=120)
        result = materialize(
            [ingest],
            partition_key=WEEK.isoformat(),
            resources={
                "lake": LakeResource(root=f"{home}/lake{round_}"),
                "settings": PipelineSettings(landing_dir=f"{home}/landing"),
                "engine": EngineResource(kind="polars"),
            },
            raise_on_error=False,
        )
        results.put((round_, result.success))


def test_two_first_ingests_of_one_week_at_once_duplicate_nothing(tmp_path, figure):
    conversations = landing(tmp_path, n=60)
    valid = read_file(conversations, max_record_bytes=PipelineSettings().max_record_bytes).conversations.height
    barrier, results = _SPAWN.Barrier(2), _SPAWN.Queue()
    procs = [_SPAWN.Process(target=_ingest_rounds, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=140)
    outcomes = sorted(results.get(timeout=5) for _ in range(2 * ROUNDS))
    rows = [pl.read_delta(str(tmp_path / f"lake{r}" / "conversations")).height for r in range(ROUNDS)]
    ids = [
        pl.read_delta(str(tmp_path / f"lake{r}" / "conversations"))["conversation_id"].is_unique().all() for r in range(ROUNDS)
    ]
    figure(
        "7b. two concurrent first writes of one week (Dagster ingest, fresh lake)",
        "the week holds its conversations once",
        rounds=ROUNDS,
        rows_per_round=rows,
        runs_succeeded=sum(ok for _, ok in outcomes),
        valid_records=valid,
    )
    assert all(p.exitcode == 0 for p in procs)
    assert all(ids) and rows == [valid] * ROUNDS and all(ok for _, ok in outcomes)
