"""The dispatcher paced by quotas and servers that take seconds of real time to show (the simulator over
real HTTP): a serial server's queueing, a per-minute quota enforced in sub-minute buckets."""

from __future__ import annotations

import asyncio

import pytest
from sim_dispatch import FAST, run_for, sim_endpoint, sim_requests, simulator

from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.requests import STATUS_OK
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.sim import SimEndpointConfig

pytestmark = pytest.mark.integration


def test_serial_server_no_timeouts_for_queueing_and_concurrency_converges_to_one_or_two():
    """A llama-cpp-python-like server answers one request at a time (150 ms each). A request's work fits
    its 0.4 s timeout, but four sent at once queue for up to 0.6 s: the timeout allows for the requests
    ahead, and the concurrency limit finds the server's level from latency versus load."""
    requests = sim_requests(40)
    with simulator(SimEndpointConfig(name="serial", serial=True, latency_ms=150.0)) as sim:
        endpoint = sim_endpoint(sim, "serial", timeout_s=0.4, timeout_base_s=0.4, timeout_per_1k_tokens_s=0.0)
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
    requests = sim_requests(60)
    cost = requests[0].cost
    tpm = cost * 4 * 30 + 10  # four requests per 2 s bucket
    with simulator(SimEndpointConfig(name="a", tpm=tpm, tpm_interval_s=2.0, latency_ms=20.0)) as sim:
        kw = {"tpm": tpm, "quota_interval_s": 2.0} if declare else {}
        dispatcher = Dispatcher([sim_endpoint(sim, "a", **kw)], DispatchSettings(**FAST))
        rows = asyncio.run(run_for(dispatcher, requests, 9.0))
        served = sim.stats()["endpoints"]["a"]
    assert dispatcher.states[0].tpm.interval_s == 2.0
    assert served["rate_limited"] == 0 if declare else served["rate_limited"] <= 12
    buckets = [b["charged_tokens"] for b in served["tokens_per_bucket"]]
    assert len(buckets) >= 4 and all(tokens <= 4 * cost for tokens in buckets)
    assert sum(buckets[2:-1]) >= 0.9 * 4 * cost * len(buckets[2:-1])  # steady buckets filled
    assert all(r["status"] == STATUS_OK for r in rows) and len(rows) == served["ok_requests"]
