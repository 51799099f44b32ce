"""The batch submitter against the simulator's batch API over real HTTP, its ledger a real Delta table."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiohttp
import polars as pl
import pytest
from sim_dispatch import WEEK, sim_requests, simulator

from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm import batch_state as bs
from semtel_dagster.core.llm.batch import MAX_POLL_FAILURES, BatchRun, DeltaLedger, submit_batches
from semtel_dagster.core.llm.batch_api import BatchApi, BatchApiError
from semtel_dagster.core.llm.batch_files import batch_key, batch_line
from semtel_dagster.core.llm.endpoints import Endpoint, ModelPrice
from semtel_dagster.core.llm.requests import STATUS_OK
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.sim import SimEndpointConfig

FAST_BATCH = {"validating_s": 0.02, "completion_s": 0.05, "finalizing_s": 0.02}


def sim_config(**batch) -> SimEndpointConfig:
    return SimEndpointConfig(name="a", latency_ms=1.0, batch={**FAST_BATCH, **batch})


def batch_endpoint(sim, **options) -> Endpoint:
    return Endpoint(name="a", base_url=sim.base_url("a"), model="gpt-4o-mini", mode="batch", batch={"poll_s": 0.03, **options})


def run(requests, endpoint, tmp_path, settings=None, online=()):
    ledger = DeltaLedger(str(tmp_path / "llm_batches"), WEEK)
    rows: list[dict] = []
    lines: list[str] = []
    stats = asyncio.run(
        submit_batches(requests, BatchRun([endpoint], settings or DispatchSettings(), ledger, online, lines.append), rows.extend)
    )
    return rows, stats, ledger.load(), lines


def sim_batches(sim) -> dict:
    with urllib.request.urlopen(sim.url + "/sim/batches") as response:
        return json.loads(response.read())


def test_a_week_in_files_within_limits(tmp_path):
    requests = sim_requests(25)
    with simulator(sim_config()) as sim:
        rows, stats, ledger, lines = run(requests, batch_endpoint(sim, max_requests=10), tmp_path)
        served = sim_batches(sim)
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)
    assert all(r["status"] == STATUS_OK and r["endpoint"] == "a" and r["attempts"] == 1 for r in rows)
    assert served["created"] == {"a": 3} and served["items"] == {"a": 25}
    latest = bs.latest_records(ledger)
    assert len(latest) == 3 and {r.status for r in latest} == {bs.COLLECTED}
    steps = ledger.filter(pl.col("batch_key") == latest[0].batch_key).sort("updated_at").get_column("status").to_list()
    assert steps[:2] == [bs.PLANNED, bs.UPLOADED] and steps[-1] == bs.COLLECTED and bs.COMPLETED in steps
    assert stats.ok == 25 and stats.prompt_tokens > 0
    assert "items: 25/25 answered" in lines[-1]


def test_failed_items_are_resubmitted_until_answered(tmp_path):
    requests = sim_requests(30)
    with simulator(sim_config(item_failure_rate=0.3)) as sim:
        rows, _, _, _ = run(requests, batch_endpoint(sim, max_submissions=20), tmp_path)
        served = sim_batches(sim)
    assert {r["request_id"] for r in rows if r["status"] == STATUS_OK} == {r.request_id for r in requests}
    assert served["created"]["a"] > 1 and served["items"]["a"] > 30
    assert max(r["attempts"] for r in rows) > 1


def test_items_out_of_submissions_are_error_rows(tmp_path):
    with simulator(sim_config(item_failure_rate=1.0)) as sim:
        rows, stats, _, _ = run(sim_requests(4), batch_endpoint(sim, max_submissions=2), tmp_path)
        served = sim_batches(sim)
    assert len(rows) == 4 and all(r["status"] == "error" and "failed 2 times" in r["error"] for r in rows)
    assert served["items"]["a"] == 8 and stats.errors == 4


def test_failed_items_sent_online(tmp_path):
    with simulator(sim_config(item_failure_rate=0.5)) as sim:
        rows, _, _, _ = run(sim_requests(20), batch_endpoint(sim, on_failure="online"), tmp_path)
        online = sim.stats()["endpoints"]["a"]["ok_requests"]
    ok = [r for r in rows if r["status"] == STATUS_OK]
    assert len({r["request_id"] for r in ok}) == 20 and online > 0
    assert len([r for r in ok if r["attempts"] == 1 and r["latency_ms"] is not None]) == 20


def test_expired_batches_are_resubmitted(tmp_path):
    with simulator(sim_config(expire_rate=1.0)) as sim:  # every batch expires with half its items done
        rows, _, ledger, _ = run(sim_requests(12), batch_endpoint(sim, max_requests=3, max_submissions=30), tmp_path)
    assert len({r["request_id"] for r in rows if r["status"] == STATUS_OK}) == 12
    assert bs.EXPIRED in ledger.get_column("status").to_list()


def test_enqueued_token_limits(tmp_path):
    """The simulator fails a batch past its enqueued-token limit (OpenAI's token_limit_exceeded); the
    items wait for room, uncounted. With the limit declared, no batch is refused."""
    requests = sim_requests(12)
    per_file = sum(r.prompt_tokens for r in requests[:4])
    with simulator(sim_config(enqueued_token_limit=per_file + 1, completion_s=0.1)) as sim:
        rows, _, ledger, _ = run(requests, batch_endpoint(sim, max_requests=4), tmp_path / "refused")
        refused = ledger.filter(pl.col("error").str.starts_with(bs.TOKEN_LIMIT_EXCEEDED)).height
        assert refused > 0 and len({r["request_id"] for r in rows if r["status"] == STATUS_OK}) == 12
        assert all(r["attempts"] == 1 for r in rows)
        rows, _, ledger, _ = run(
            requests, batch_endpoint(sim, max_requests=4, max_enqueued_tokens=per_file + 1), tmp_path / "kept"
        )
    assert ledger.filter(pl.col("status") == bs.FAILED).height == 0 and len(rows) == 12


def test_budget_is_charged_at_batch_prices(tmp_path):
    price = ModelPrice(prompt_per_1m=2.0, completion_per_1m=8.0)
    settings = DispatchSettings(prices={"gpt-4o-mini": price})
    with simulator(sim_config()) as sim:
        rows, stats, _, _ = run(sim_requests(10), batch_endpoint(sim), tmp_path, settings)
    online = sum(price.cost(r["prompt_tokens"], r["completion_tokens"]) for r in rows)
    assert stats.budget_spent_cost == pytest.approx(online / 2)
    assert ModelPrice(prompt_per_1m=2.0, completion_per_1m=8.0, batch_prompt_per_1m=1.5).batch_price().prompt_per_1m == 1.5


def test_budget_stops_submission_cleanly(tmp_path):
    requests = sim_requests(10)
    settings = DispatchSettings(budget_tokens=requests[0].cost * 4)
    with simulator(sim_config()) as sim:
        rows, stats, _, _ = run(requests, batch_endpoint(sim), tmp_path, settings)
    assert 0 < len(rows) <= 4 and stats.budget_exhausted == 1


@pytest.mark.parametrize("cut_after", ["upload", "create"])
def test_a_step_cut_off_before_its_id_was_recorded_is_found_not_done_again(tmp_path, cut_after):
    """A crash between uploading (creating) and recording the file (batch) id: the rerun finds the file
    by its name (the batch by its metadata) instead of uploading (creating) it again."""
    requests = sim_requests(6)
    ids = tuple(r.request_id for r in requests)
    ledger = DeltaLedger(str(tmp_path / "llm_batches"), WEEK)
    with simulator(sim_config()) as sim:
        endpoint = batch_endpoint(sim)
        key = batch_key(WEEK, "a", ids)
        content = b"".join(batch_line(r, endpoint).line for r in requests)
        planned = bs.BatchRecord(key, WEEK, "a", endpoint.model, ids, 1, len(content), bs.PLANNED)

        async def interrupted() -> None:
            async with aiohttp.ClientSession() as session:
                api = BatchApi(endpoint, session)
                ledger.append([planned.row()])
                file_id = await api.upload(key, content)
                if cut_after == "create":
                    ledger.append([bs.BatchRecord(**{**vars(planned), "status": bs.UPLOADED, "input_file_id": file_id}).row()])
                    await api.create(key, file_id)

        asyncio.run(interrupted())
        rows, _, _, _ = run(requests, endpoint, tmp_path)
        served = sim_batches(sim)
    assert served["created"] == {"a": 1} and served["files"] == 2  # the input file and its output
    assert len(rows) == 6 and all(r["status"] == STATUS_OK for r in rows)


def test_ledger_contract_is_described():
    assert set(tables.DESCRIPTIONS["llm_batches"]) == set(tables.LLM_BATCHES)
    assert delta.table_uri("/lake", "llm_batches").endswith("llm_batches")


def test_a_batch_that_cannot_be_polled_is_tried_again_then_stops_the_run(tmp_path):
    requests = sim_requests(2)
    ledger = DeltaLedger(str(tmp_path / "llm_batches"), WEEK)
    ids = tuple(r.request_id for r in requests)
    ledger.append([bs.BatchRecord("k", WEEK, "a", "gpt-4o-mini", ids, 1, 1, bs.IN_PROGRESS, "file-x", "batch_gone").row()])
    lines: list[str] = []
    with simulator(sim_config()) as sim, pytest.raises(BatchApiError, match="HTTP 404"):
        run_ = BatchRun([batch_endpoint(sim, poll_s=0.01)], DispatchSettings(), ledger, (), lines.append)
        asyncio.run(submit_batches(requests, run_, lambda rows: None))
    assert len([line for line in lines if "looking again next round" in line]) == MAX_POLL_FAILURES - 1
