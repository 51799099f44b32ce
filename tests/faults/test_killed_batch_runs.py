"""``semtel classify --mode batch`` killed with SIGKILL while it submits batches and while it polls them,
then rerun: no batch and no item is submitted twice, and every request is answered exactly once."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import polars as pl
import pytest
from deltalake import DeltaTable
from harness import classify_command, endpoints_file, landing, raw_responses, run, start

from semtel_dagster.core.llm import batch_state as bs
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]
PER_BATCH = 4


def _ledger(uri) -> pl.DataFrame:
    try:
        return pl.from_arrow(DeltaTable(str(uri)).to_pyarrow_table())  # type: ignore[return-value]
    except Exception:  # not created yet
        return pl.DataFrame()


def _served(sim: SimulatorThread) -> dict:
    with urllib.request.urlopen(sim.url + "/sim/batches") as response:
        return json.loads(response.read())


def _submitting(ledger: pl.DataFrame, sim: SimulatorThread) -> bool:
    """Some batches created, others not yet: the run is between two submissions."""
    return _served(sim)["created"].get("slow", 0) >= 2


def _polling(ledger: pl.DataFrame, sim: SimulatorThread) -> bool:
    """Every batch submitted and at least one collected: the run is waiting for the others."""
    return ledger.height > 0 and bs.COLLECTED in ledger["status"].to_list()


@pytest.mark.parametrize("kill_when", [_submitting, _polling], ids=["submitting", "polling"])
def test_sigkill_then_rerun_submits_nothing_twice_and_loses_nothing(tmp_path, figure, kill_when):
    conversations = landing(tmp_path, n=60)
    # validation takes a while, so submission (three ledger commits per batch) overlaps it; batches end one
    # after another, so a run that collected one still polls the others
    batch = {"validating_s": 0.3, "completion_s": 1.0, "finalizing_s": 0.1}
    with SimulatorThread(SimConfig(endpoints=[SimEndpointConfig(name="slow", batch=batch)])) as sim:
        endpoint = {"name": "slow", "base_url": sim.base_url("slow"), "mode": "batch"}
        endpoints = endpoints_file(tmp_path, {**endpoint, "batch": {"max_requests": PER_BATCH, "poll_s": 0.1}})
        command = classify_command(conversations, tmp_path / "out", endpoints)
        ledger_uri = tmp_path / "out" / "llm_batches"
        proc = start(command)
        deadline = time.monotonic() + 60
        while not kill_when(_ledger(ledger_uri), sim) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = _served(sim)
        at_kill = bs.latest_records(_ledger(ledger_uri))
        rerun = run(command)
        served = _served(sim)
    assert rerun.code == 0, rerun.stderr[-2000:]
    summary = rerun.summary
    responses = pl.read_delta(str(tmp_path / "out" / "llm_responses"))
    raw = raw_responses(tmp_path / "out" / "llm_responses")
    expected = summary["requests"]
    figure(
        f"SIGKILL while {kill_when.__name__.strip('_')} batches, then rerun",
        "0 batches or items submitted twice, 0 requests lost",
        batches_before_kill=before["created"].get("slow", 0),
        batches_recorded_before_kill=len(at_kill),
        batches=served["created"]["slow"],
        items=served["items"]["slow"],
        requests=expected,
    )
    assert responses.filter(pl.col("status") == "ok")["request_id"].n_unique() == expected  # nothing lost
    assert raw["request_id"].n_unique() == expected
    keys = served["batch_keys"]
    assert len(keys) == len(set(keys))  # no batch submitted twice
    assert served["items"]["slow"] == expected  # no item submitted twice
    assert served["created"]["slow"] == -(-expected // PER_BATCH)
    assert {r.status for r in bs.latest_records(_ledger(ledger_uri))} == {bs.COLLECTED}
    if kill_when is _submitting:  # killed between two submissions: the rerun submitted the rest
        assert before["created"]["slow"] < served["created"]["slow"]
    else:  # killed with batches in flight: the rerun collected them
        assert any(r.status != bs.COLLECTED for r in at_kill)
