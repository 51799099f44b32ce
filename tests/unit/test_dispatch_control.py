"""Pure pieces of dispatch control: AIMD concurrency, budget, size-scaled timeouts, circuit breaker."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from semtel_dagster.core.llm.budget import Budget
from semtel_dagster.core.llm.concurrency import Concurrency
from semtel_dagster.core.llm.endpoint_state import EndpointState
from semtel_dagster.core.llm.endpoints import (
    Endpoint,
    EndpointsFileError,
    ModelPrice,
    parse_endpoints,
)
from semtel_dagster.core.llm.quota import QuotaWindow, fair_share
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings


def _request(prompt_tokens=100, max_tokens=50) -> LLMRequest:
    return LLMRequest("r", dt.date(2024, 1, 1), ("c",), ("topic",), "topic", "v", [], None, max_tokens, 0.0, prompt_tokens)


def test_slow_start_then_additive_increase_and_one_cut_per_round_trip():
    c = Concurrency(maximum=64, start=4)
    for i in range(4):
        c.on_success(0.1, now=float(i))
    assert c.limit == 8  # slow start: +1 per success, doubling per round trip
    c.congestion(now=10.0)
    assert c.limit == pytest.approx(8 * 0.7) and c.ssthresh == c.limit
    c.congestion(now=10.05)  # a burst of 429s from one round trip (latency 0.1 s) counts once
    assert c.cuts == 1
    c.congestion(now=10.2)
    assert c.cuts == 2 and c.limit == pytest.approx(8 * 0.7 * 0.7)
    before = c.limit
    c.on_success(0.1, now=11.0)
    assert c.limit == pytest.approx(before + 1 / before)  # congestion avoidance: +1 per round trip


def test_rising_latency_cuts_concurrency():
    c = Concurrency(maximum=64, start=16)
    for i in range(20):
        c.on_success(0.1, now=float(i))
    grown = c.limit
    for i in range(40):  # the endpoint slows down under load: latency triples
        c.on_success(0.3, now=20.0 + i)
    assert c.cuts >= 1 and c.limit < grown


def test_aimd_converges_to_equal_shares():
    """Two senders cut together on shared congestion and grow alike: the gap between them shrinks."""
    a, b = Concurrency(64, start=40), Concurrency(64, start=4)
    a.ssthresh = b.ssthresh = 0  # congestion avoidance from the start
    now = 0.0
    for _ in range(200):
        now += 1.0
        for c in (a, b):
            c.latency = 0.1
            if a.limit + b.limit > 40:  # the shared endpoint is saturated: both see 429s
                c.congestion(now)
            else:
                c.limit += 1.0
    assert abs(a.limit - b.limit) < 2.0


def test_budget_reserves_worst_case_and_charges_actual():
    settings = DispatchSettings(budget_tokens=400)
    budget = Budget(settings, ["m"])
    request = _request(prompt_tokens=100, max_tokens=50)
    assert budget.reserve(request) and budget.reserve(request)
    budget.settle(request, "m", 100, 10)
    budget.settle(request, "m", 100, 10)
    assert budget.spent_tokens == 220 and not budget.exhausted
    assert budget.reserve(request)  # 220 + 150 <= 400
    assert not budget.reserve(request) and budget.exhausted  # 220 + 150 + 150 > 400


def test_cost_budget_needs_prices_and_uses_them():
    with pytest.raises(ValueError, match="prices"):
        Budget(DispatchSettings(budget_cost=1.0), ["m"])
    prices = {"m": ModelPrice(prompt_per_1m=1000.0, completion_per_1m=2000.0)}
    budget = Budget(DispatchSettings(budget_cost=0.3, prices=prices), ["m"])
    request = _request(prompt_tokens=100, max_tokens=50)  # worst case 0.1 + 0.1 = 0.2
    assert budget.reserve(request)
    budget.settle(request, "m", 100, 10)  # 0.1 + 0.02
    assert budget.spent_cost == pytest.approx(0.12)
    assert not budget.reserve(request)  # 0.12 + 0.2 > 0.3


def test_prices_in_endpoints_file():
    parsed = parse_endpoints(
        {
            "endpoints": [{"name": "a", "base_url": "http://x/v1", "model": "gpt-4o-mini", "refund_unused": True}],
            "prices": {"gpt-4o-mini": {"prompt_per_1m": 0.15, "completion_per_1m": 0.6}},
        }
    )
    assert parsed.prices["gpt-4o-mini"].cost(1_000_000, 0) == pytest.approx(0.15)
    assert parsed.endpoints[0].refund_unused
    with pytest.raises(EndpointsFileError, match=r"prices\.gpt-4o-mini\.prompt_per_1m"):
        parse_endpoints(
            {
                "endpoints": [{"name": "a", "base_url": "http://x/v1", "model": "m"}],
                "prices": {"gpt-4o-mini": {"prompt_per_1m": -1, "completion_per_1m": 0}},
            }
        )


def test_timeout_scales_with_request_size_up_to_the_ceiling():
    endpoint = Endpoint(name="a", base_url="http://x/v1", model="m", timeout_s=30, timeout_base_s=5, timeout_per_1k_tokens_s=4)
    state = EndpointState(endpoint, None, DispatchSettings())
    assert state.timeout_for(0) == 5
    assert state.timeout_for(2500) == pytest.approx(15)
    assert state.timeout_for(100_000) == 30


def test_breaker_opens_after_consecutive_failures_and_backs_off():
    settings = DispatchSettings(breaker_failures=3, breaker_open_s=1.0, breaker_max_open_s=4.0)
    state = EndpointState(Endpoint(name="a", base_url="http://x/v1", model="m"), None, settings)
    for _ in range(2):
        state.on_failure(now=0.0, pause_s=0.01)
    assert state.open_s == 0
    state.on_failure(now=0.0, pause_s=0.01)
    assert state.open_s == 1.0 and state.wait_for(10, now=0.5) == pytest.approx(0.5)
    state.on_failure(now=2.0, pause_s=0.01)  # the half-open probe failed: open twice as long
    assert state.open_s == 2.0 and state.cooldown_until == pytest.approx(4.0)
    state.in_flight = 1
    assert state.wait_for(10, now=5.0) > 0  # half-open: one probe at a time
    state.in_flight = 0
    state.on_success(0.1, now=5.0)
    assert state.open_s == 0 and state.failures == 0


def test_rate_limit_pauses_then_slow_starts_back():
    """A 429 cuts concurrency and pauses; after it, slow start (+1 per success) up to the limit that worked."""
    state = EndpointState(Endpoint(name="a", base_url="http://x/v1", model="m", max_concurrency=64), None, DispatchSettings())
    for i in range(20):
        state.on_success(0.1, now=i * 0.2)
    healthy = state.concurrency.limit
    state.on_rate_limited(now=10.0, pause_s=30.0)
    assert state.concurrency.limit < healthy and state.wait_for(10, now=20.0) == pytest.approx(20.0)
    before = state.concurrency.limit
    state.on_success(0.1, now=41.0)
    assert state.concurrency.limit == pytest.approx(before + 1.0)  # slow start, not +1/limit


def test_shared_quota_share_converges_without_a_coordinator():
    """Two processes mirror one provider window; the one that grabbed it all yields until both hold
    about half, and a process alone keeps the whole quota."""
    limit = 1000.0
    a, b = QuotaWindow(limit, declared=False), QuotaWindow(limit, declared=False)
    now = 0.0
    for _ in range(400):  # each second both send what their share allows, then read the headers
        now += 1.0
        for w in (a, b):
            w.charges.clear()  # model one window per step: usage is what the share allows this second
            w.own = 0.0
        want_a, want_b = a.limit * a.share, b.limit * b.share
        scale = min(1.0, limit / (want_a + want_b))
        a.take(want_a * scale, now)
        b.take(want_b * scale, now)
        remaining = limit - a.own - b.own
        a.observe(limit, remaining, now)
        b.observe(limit, remaining, now)
    assert a.share == pytest.approx(b.share, abs=0.1)
    alone = QuotaWindow(limit, declared=True)
    for i in range(30):
        alone.take(limit, float(i))
        alone.observe(limit, 0, float(i))
        alone.charges.clear()
        alone.own = 0.0
    assert alone.share == 1.0


def test_fair_share_rule():
    """Contended window + real others: cap at an equal split (+5 %); room or no others: grow back additively."""
    limit = 1000.0
    # contended, we hold 700 and the other 290: cap at half of 990 + 5 % (we yield until down to it)
    assert fair_share(1.0, 700, 290, 10, limit, 1.0) == pytest.approx(990 / 2 * 1.05 / limit)
    # the one holding less gets the same cap, above its usage: it may take what frees up
    assert fair_share(0.3, 290, 700, 10, limit, 1.0) == pytest.approx(990 / 2 * 1.05 / limit)
    # alone at saturation (others within the estimate's noise): never capped, grows back to 1
    assert fair_share(0.6, 995, 5, 0, limit, 1.0) == pytest.approx(0.65)
    assert fair_share(1.0, 1000, 0, 0, limit, 1.0) == 1.0
    # the window has room: additive increase by 5 points per second, capped at 1
    assert fair_share(0.5, 500, 300, 200, limit, 2.0) == pytest.approx(0.6)
    assert fair_share(0.98, 500, 300, 200, limit, 2.0) == 1.0
    # an expected 4 peers: a quarter each
    assert fair_share(1.0, 400, 600, 0, limit, 1.0, peers=4) == pytest.approx(1000 / 4 * 1.05 / limit)
    # an unknown (infinite) limit leaves the share alone
    assert fair_share(0.7, 1, 1, 0, math.inf, 1.0) == 0.7


def _sliding_window_split(head_start_s: int, seconds: int = 240) -> tuple[float, float]:
    """Two clients on a 60 s sliding window, each taking what its mirror says is free (its own charges
    exactly, the other's from the headers); a client with a head start holds the whole window at first."""
    limit, cost = 1000.0, 10.0
    clients = [QuotaWindow(math.inf, declared=False), QuotaWindow(math.inf, declared=False)]
    server: list[tuple[float, int]] = []  # (arrived at, client)
    for tick in range(seconds * 10):
        now = tick / 10.0
        server = [(at, i) for at, i in server if at > now - 60.0]
        order = (0, 1) if tick % 2 else (1, 0)  # neither always first to the capacity that frees up
        for i in order:
            if i == 1 and now < head_start_s:
                continue
            w = clients[i]
            while w.free(now) >= cost and len(server) * cost + cost <= limit:
                w.take(cost, now)
                server.append((now, i))
                w.observe(limit, limit - len(server) * cost, now)
            w.observe(limit, limit - len(server) * cost, now)  # a response: the headers
    held = [sum(cost for _, i in server if i == c) for c in (0, 1)]
    return held[0] / (sum(held) / 2), sum(held) / limit


@pytest.mark.parametrize("head_start_s", [0, 5, 30])
def test_two_clients_converge_to_equal_shares_of_a_sliding_window(head_start_s):
    share_a, used = _sliding_window_split(head_start_s)
    assert used >= 0.9
    assert 0.8 <= share_a <= 1.2


def test_breaker_close_slow_starts_back_to_the_healthy_limit():
    state = EndpointState(Endpoint(name="a", base_url="http://x/v1", model="m"), None, DispatchSettings(breaker_failures=2))
    for i in range(30):
        state.on_success(0.1, now=float(i))
    healthy = state.concurrency.limit
    for i in range(4):  # 5xx burst: cuts and opens the breaker
        state.on_failure(now=100.0 + i, pause_s=0.01)
    assert state.open_s and state.concurrency.limit < healthy / 2
    state.on_success(0.1, now=110.0)
    assert state.concurrency.ssthresh >= healthy
    before = state.concurrency.limit
    state.on_success(0.1, now=110.1)
    assert state.concurrency.limit == pytest.approx(before + 1)  # slow start again, not +1 per round trip
