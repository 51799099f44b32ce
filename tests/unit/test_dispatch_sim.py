"""The dispatcher against the simulator over real HTTP: quotas, faults, hedging, budget, streaming."""

from __future__ import annotations

import asyncio

import pytest
from sim_dispatch import FAST, run_for, sim_endpoint, sim_requests, simulator

from semtel_dagster.core.classify.plan import ClassifyPlan, run_dispatch
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.requests import STATUS_OK
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.sim import SimEndpointConfig


@pytest.mark.parametrize("declare", [True, False])
def test_quota_is_filled_exactly_declared_or_learned(declare):
    """One minute's quota holds ten requests: the client sends ten and then waits, with the quota
    declared (no 429 at all) or learned from the first response's headers (a 429 or two at most)."""
    requests = sim_requests(30)
    tpm = requests[0].cost * 10 + 5
    with simulator(SimEndpointConfig(name="a", tpm=tpm, tpm_interval_s=None, latency_ms=20.0)) as sim:  # a sliding minute
        dispatcher = Dispatcher([sim_endpoint(sim, "a", tpm=tpm if declare else None)], DispatchSettings(**FAST))
        rows = asyncio.run(run_for(dispatcher, requests, 1.5))
        served = sim.stats()["endpoints"]["a"]
    assert served["ok_requests"] == 10 and served["charged_tokens"] <= tpm
    assert len([r for r in rows if r["status"] == STATUS_OK]) == 10
    if declare:
        assert served["rate_limited"] == 0
    else:
        assert served["rate_limited"] <= 4
        assert dispatcher.states[0].tpm.limit == tpm  # learned from x-ratelimit-limit-tokens
    # what was not sent is not in the rows: a rerun asks it again
    assert all(r["status"] == STATUS_OK for r in rows)


def test_busy_endpoint_share_follows_quota():
    """Headroom routing: the endpoint with four times the quota takes most of the work."""
    requests = sim_requests(60)
    cost = requests[0].cost
    with simulator(
        SimEndpointConfig(name="big", tpm=cost * 40, tpm_interval_s=None, latency_ms=10.0),
        SimEndpointConfig(name="small", tpm=cost * 10, tpm_interval_s=None, latency_ms=10.0),
    ) as sim:
        endpoints = [sim_endpoint(sim, "big", tpm=cost * 40), sim_endpoint(sim, "small", tpm=cost * 10)]
        dispatcher = Dispatcher(endpoints, DispatchSettings(**FAST))
        rows = asyncio.run(run_for(dispatcher, requests, 1.5))
        served = sim.stats()["endpoints"]
    assert served["big"]["ok_requests"] == 40 and served["small"]["ok_requests"] == 10
    assert served["big"]["rate_limited"] + served["small"]["rate_limited"] == 0
    assert len(rows) == 50


def test_5xx_burst_and_dropped_connections_move_work_and_open_the_breaker():
    cfg_down = SimEndpointConfig(
        name="down", latency_ms=5.0, faults={"windows": [{"kind": "down", "start_s": 0, "duration_s": 60}]}
    )
    cfg_5xx = SimEndpointConfig(
        name="flaky", latency_ms=5.0, faults={"windows": [{"kind": "5xx", "start_s": 0, "duration_s": 60}]}
    )
    cfg_ok = SimEndpointConfig(name="ok", latency_ms=5.0)
    requests = sim_requests(40)
    with simulator(cfg_down, cfg_5xx, cfg_ok) as sim:
        endpoints = [sim_endpoint(sim, n, tpm=10**6) for n in ("down", "flaky", "ok")]
        rows: list[dict] = []
        settings = DispatchSettings(**FAST, breaker_failures=2)
        stats = asyncio.run(Dispatcher(endpoints, settings).run(requests, rows.append))
        served = sim.stats()["endpoints"]
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)
    assert {r["status"] for r in rows} == {STATUS_OK} and {r["endpoint"] for r in rows} == {"ok"}
    assert served["flaky"]["faults"]["5xx"] >= 1 and served["down"]["faults"]["down"] >= 1
    assert stats.endpoints["down"].breaker_opens >= 1 and stats.endpoints["flaky"].breaker_opens >= 1
    assert stats.retries == stats.endpoints["down"].errors + stats.endpoints["flaky"].errors


def test_malformed_bodies_missing_usage_and_truncated_answers():
    faults = {"malformed_rate": 0.3, "missing_usage_rate": 0.3, "length_rate": 0.2}
    requests = sim_requests(30)
    with simulator(SimEndpointConfig(name="odd", latency_ms=2.0, seed=3, faults=faults)) as sim:
        rows: list[dict] = []
        stats = asyncio.run(
            Dispatcher([sim_endpoint(sim, "odd")], DispatchSettings(**{**FAST, "max_attempts": 8})).run(requests, rows.append)
        )
        served = sim.stats()["endpoints"]["odd"]
    assert len(rows) == 30 and {r["status"] for r in rows} == {STATUS_OK}
    assert stats.retries == served["faults"]["malformed"] > 0  # a broken body is retried, never saved
    assert 0 < sum(r["finish_reason"] == "length" for r in rows) == served["faults"].get("length", 0)
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in rows)  # estimated when usage is missing
    assert served["faults"]["missing_usage"] > 0


def test_hangs_are_hedged_and_each_request_saved_once():
    """From 0.3 s on, ``slow`` never answers: a duplicate on ``fast`` after the latency quantile answers
    instead, the hung attempt is cancelled, and every request yields exactly one row."""
    hang = {"windows": [{"kind": "hang", "start_s": 0.3, "duration_s": 60}]}
    slow = SimEndpointConfig(name="slow", latency_ms=50.0, faults=hang)
    fast = SimEndpointConfig(name="fast", latency_ms=50.0)
    requests = sim_requests(200)
    settings = DispatchSettings(**FAST, hedge_min_samples=10, hedge_max_share=0.5)
    with simulator(slow, fast) as sim:
        endpoints = [sim_endpoint(sim, n, max_concurrency=8, timeout_s=3, tpm=10**7) for n in ("slow", "fast")]
        rows: list[dict] = []
        stats = asyncio.run(Dispatcher(endpoints, settings).run(requests, rows.append))
        served = sim.stats()["endpoints"]
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)
    assert {r["status"] for r in rows} == {STATUS_OK} and stats.ok == 200
    assert stats.hedges >= 1 and stats.hedge_wins >= 1
    assert served["slow"]["faults"]["hang"] >= stats.hedge_wins
    assert served["slow"]["ok_requests"] + served["fast"]["ok_requests"] >= 200


def test_timeouts_are_retried_elsewhere():
    stuck = SimEndpointConfig(
        name="stuck", latency_ms=1.0, faults={"windows": [{"kind": "hang", "start_s": 0, "duration_s": 60}]}
    )
    good = SimEndpointConfig(name="good", latency_ms=1.0)
    requests = sim_requests(6)
    with simulator(stuck, good) as sim:
        endpoints = [sim_endpoint(sim, "stuck", tpm=10**7, timeout_s=0.3), sim_endpoint(sim, "good", tpm=10**3 * 5)]
        rows: list[dict] = []
        stats = asyncio.run(Dispatcher(endpoints, DispatchSettings(**FAST, hedge_quantile=None)).run(requests, rows.append))
    assert {r["status"] for r in rows} == {STATUS_OK} and {r["endpoint"] for r in rows} == {"good"}
    assert stats.timeouts >= 1 and stats.endpoints["stuck"].timeouts == stats.timeouts


def test_budget_stops_cleanly_and_counts_retries():
    requests = sim_requests(50)
    per_request = requests[0].cost
    with simulator(SimEndpointConfig(name="a", latency_ms=5.0, faults={"error_rate": 0.2}, seed=1)) as sim:
        settings = DispatchSettings(**FAST, budget_tokens=per_request * 12)
        dispatcher = Dispatcher([sim_endpoint(sim, "a")], settings)
        rows: list[dict] = []
        stats = asyncio.run(dispatcher.run(requests, rows.append))
        served = sim.stats()["endpoints"]["a"]
    assert stats.budget_exhausted == 1
    assert 0 < len(rows) <= 12 and all(r["status"] == STATUS_OK for r in rows)
    assert stats.budget_spent_tokens <= per_request * 12
    assert stats.budget_spent_tokens == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    assert served["ok_requests"] == len(rows)  # nothing answered was dropped


def test_streaming_commits_every_row_once_and_flushes_on_time():
    requests = sim_requests(25)
    batches: list[list[dict]] = []
    with simulator(SimEndpointConfig(name="a", latency_ms=40.0)) as sim:
        endpoint = sim_endpoint(sim, "a", max_concurrency=2)
        run_dispatch(
            ClassifyPlan(25, 0, iter(requests)),
            Dispatcher([endpoint], DispatchSettings(**FAST)),
            batches.append,
            flush_rows=1000,
            flush_seconds=0.1,
        )
    ids = [row["request_id"] for batch in batches for row in batch]
    assert sorted(ids) == sorted(r.request_id for r in requests)
    assert len(batches) >= 3  # the timer flushed while requests were in flight, not only at the end
