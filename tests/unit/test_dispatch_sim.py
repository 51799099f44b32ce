"""The dispatcher against the simulator over real HTTP: quotas, faults, hedging, budget, streaming."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from semtel_dagster.core.classify.plan import ClassifyPlan, run_dispatch
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.requests import STATUS_OK, LLMRequest, request_id
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.server import prompt_tokens

WEEK = dt.date(2024, 1, 1)
FAST = dict(max_attempts=5, backoff_base_s=0.02, backoff_max_s=0.1)


def _requests(n: int, max_tokens: int = 40, tag: str = "q") -> list[LLMRequest]:
    out = []
    for i in range(n):
        messages = [{"role": "user", "content": f"User: question number {i} about python errors"}]
        cid = f"{tag}{i}"
        out.append(
            LLMRequest(
                request_id([cid], ["topic"], "v"),
                WEEK,
                (cid,),
                ("topic",),
                "topic",
                "v",
                messages,
                None,
                max_tokens,
                0.0,
                prompt_tokens(messages),
            )
        )
    return out


def _endpoint(sim: SimulatorThread, name: str, **kw) -> Endpoint:
    return Endpoint(name=name, base_url=sim.base_url(name), model="gpt-4o-mini", **{"timeout_s": 5, **kw})


async def _run_for(dispatcher: Dispatcher, requests, seconds: float) -> list[dict]:
    rows: list[dict] = []
    task = asyncio.create_task(dispatcher.run(requests, rows.append))
    await asyncio.sleep(seconds)
    dispatcher.stop()
    await task
    return rows


def _sim(*endpoints: SimEndpointConfig) -> SimulatorThread:
    return SimulatorThread(SimConfig(endpoints=list(endpoints)))


@pytest.mark.parametrize("declare", [True, False])
def test_quota_is_filled_exactly_declared_or_learned(declare):
    """One minute's quota holds ten requests: the client sends ten and then waits, with the quota
    declared (no 429 at all) or learned from the first response's headers (a 429 or two at most)."""
    requests = _requests(30)
    tpm = requests[0].cost * 10 + 5
    with _sim(SimEndpointConfig(name="a", tpm=tpm, tpm_interval_s=None, latency_ms=20.0)) as sim:  # a sliding minute
        dispatcher = Dispatcher([_endpoint(sim, "a", tpm=tpm if declare else None)], DispatchSettings(**FAST))
        rows = asyncio.run(_run_for(dispatcher, requests, 1.5))
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
    requests = _requests(60)
    cost = requests[0].cost
    with _sim(
        SimEndpointConfig(name="big", tpm=cost * 40, tpm_interval_s=None, latency_ms=10.0),
        SimEndpointConfig(name="small", tpm=cost * 10, tpm_interval_s=None, latency_ms=10.0),
    ) as sim:
        endpoints = [_endpoint(sim, "big", tpm=cost * 40), _endpoint(sim, "small", tpm=cost * 10)]
        dispatcher = Dispatcher(endpoints, DispatchSettings(**FAST))
        rows = asyncio.run(_run_for(dispatcher, requests, 1.5))
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
    requests = _requests(40)
    with _sim(cfg_down, cfg_5xx, cfg_ok) as sim:
        endpoints = [_endpoint(sim, n, tpm=10**6) for n in ("down", "flaky", "ok")]
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
    requests = _requests(30)
    with _sim(SimEndpointConfig(name="odd", latency_ms=2.0, seed=3, faults=faults)) as sim:
        rows: list[dict] = []
        stats = asyncio.run(
            Dispatcher([_endpoint(sim, "odd")], DispatchSettings(**{**FAST, "max_attempts": 8})).run(requests, rows.append)
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
    requests = _requests(200)
    settings = DispatchSettings(**FAST, hedge_min_samples=10, hedge_max_share=0.5)
    with _sim(slow, fast) as sim:
        endpoints = [_endpoint(sim, n, max_concurrency=8, timeout_s=3, tpm=10**7) for n in ("slow", "fast")]
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
    requests = _requests(6)
    with _sim(stuck, good) as sim:
        endpoints = [_endpoint(sim, "stuck", tpm=10**7, timeout_s=0.3), _endpoint(sim, "good", tpm=10**3 * 5)]
        rows: list[dict] = []
        stats = asyncio.run(Dispatcher(endpoints, DispatchSettings(**FAST, hedge_quantile=None)).run(requests, rows.append))
    assert {r["status"] for r in rows} == {STATUS_OK} and {r["endpoint"] for r in rows} == {"good"}
    assert stats.timeouts >= 1 and stats.endpoints["stuck"].timeouts == stats.timeouts


def test_budget_stops_cleanly_and_counts_retries():
    requests = _requests(50)
    per_request = requests[0].cost
    with _sim(SimEndpointConfig(name="a", latency_ms=5.0, faults={"error_rate": 0.2}, seed=1)) as sim:
        settings = DispatchSettings(**FAST, budget_tokens=per_request * 12)
        dispatcher = Dispatcher([_endpoint(sim, "a")], settings)
        rows: list[dict] = []
        stats = asyncio.run(dispatcher.run(requests, rows.append))
        served = sim.stats()["endpoints"]["a"]
    assert stats.budget_exhausted == 1
    assert 0 < len(rows) <= 12 and all(r["status"] == STATUS_OK for r in rows)
    assert stats.budget_spent_tokens <= per_request * 12
    assert stats.budget_spent_tokens == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    assert served["ok_requests"] == len(rows)  # nothing answered was dropped


def test_streaming_commits_every_row_once_and_flushes_on_time():
    requests = _requests(25)
    batches: list[list[dict]] = []
    with _sim(SimEndpointConfig(name="a", latency_ms=40.0)) as sim:
        endpoint = _endpoint(sim, "a", max_concurrency=2)
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


def test_serial_server_no_timeouts_for_queueing_and_concurrency_converges_to_one_or_two():
    """A llama-cpp-python-like server answers one request at a time (150 ms each). A request's work fits
    its 0.4 s timeout, but four sent at once queue for up to 0.6 s: the timeout allows for the requests
    ahead, and the concurrency limit finds the server's level from latency versus load."""
    requests = _requests(40)
    with _sim(SimEndpointConfig(name="serial", serial=True, latency_ms=150.0)) as sim:
        endpoint = _endpoint(sim, "serial", timeout_s=0.4, timeout_base_s=0.4, timeout_per_1k_tokens_s=0.0)
        dispatcher = Dispatcher([endpoint], DispatchSettings(**FAST))
        rows: list[dict] = []
        stats = asyncio.run(dispatcher.run(requests, rows.append))
        served = sim.stats()["endpoints"]["serial"]
    state = dispatcher.states[0]
    assert len(rows) == 40 and all(r["status"] == STATUS_OK for r in rows)
    assert stats.timeouts == 0 and stats.retries == 0 and served["abandoned"] == 0
    assert state.concurrency.cap <= 2 and state.concurrency.limit <= 2
    assert served["ok_requests"] == 40


@pytest.mark.parametrize("declare", [True, False])
def test_sub_minute_buckets_are_paced_declared_or_learned(declare):
    """The per-minute quota is enforced in 2 s buckets of four requests each: declared, no 429 at all;
    undeclared, the requests in flight when the first bucket runs out are refused (with the minute's
    headers showing room: a bucket's 429s), they teach the interval, and every bucket is then filled."""
    requests = _requests(60)
    cost = requests[0].cost
    tpm = cost * 4 * 30 + 10  # four requests per 2 s bucket
    with _sim(SimEndpointConfig(name="a", tpm=tpm, tpm_interval_s=2.0, latency_ms=20.0)) as sim:
        kw = {"tpm": tpm, "quota_interval_s": 2.0} if declare else {}
        dispatcher = Dispatcher([_endpoint(sim, "a", **kw)], DispatchSettings(**FAST))
        rows = asyncio.run(_run_for(dispatcher, requests, 9.0))
        served = sim.stats()["endpoints"]["a"]
    assert dispatcher.states[0].tpm.interval_s == 2.0
    assert served["rate_limited"] == 0 if declare else served["rate_limited"] <= 12
    buckets = [b["charged_tokens"] for b in served["tokens_per_bucket"]]
    assert len(buckets) >= 4 and all(tokens <= 4 * cost for tokens in buckets)
    assert sum(buckets[2:-1]) >= 0.9 * 4 * cost * len(buckets[2:-1])  # steady buckets filled
    assert all(r["status"] == STATUS_OK for r in rows) and len(rows) == served["ok_requests"]
