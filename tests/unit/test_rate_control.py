"""Pacing within sub-minute quota buckets, learning their interval, and finding a serial server's
concurrency: the pure logic, on a fake clock, against the simulator's own bucket model."""

from __future__ import annotations

import math
import random

import pytest

from semtel_dagster.core.llm.concurrency import Concurrency, latency_fit, useful_level
from semtel_dagster.core.llm.endpoint_state import EndpointState
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.quota import IntervalLearner, QuotaWindow
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.sim.config import SimEndpointConfig
from semtel_dagster.sim.server import EndpointState as SimState


def _greedy(window: QuotaWindow, server: SimState, seconds: float, seed: int, delay_s: float = 0.005):
    """Send whenever the mirror allows (fake clock); the server counts arrivals ``delay_s`` later."""
    rng = random.Random(seed)
    now, refused, sent = 0.0, 0, []
    cost = rng.randint(600, 1400)
    while now < seconds:
        wait = window.wait_for(cost, now)
        if wait > 0:
            now += wait
            continue
        charge = window.take(cost, now)
        if (retry_after := server.try_admit(cost, cost, now + delay_s)) > 0:
            refused += 1
            window.correct(charge, 0)
            now += retry_after  # the dispatcher's cooldown
        else:
            sent.append((now, cost))
        cost = rng.randint(600, 1400)
    return refused, sent


@pytest.mark.parametrize("phase", [0.0, 3.3, 7.9])
def test_pacing_fills_every_bucket_without_a_429_whatever_their_phase(phase):
    limit = 120_000  # 20,000 tokens per 10 s bucket, requests of ~1,000
    server = SimState(SimEndpointConfig(name="e", tpm=limit))
    server.t0 = -phase
    refused, sent = _greedy(QuotaWindow(limit, declared=True, interval_s=10.0), server, 60.0, seed=int(phase * 10))
    assert refused == 0
    # steady state: past the first two buckets (the first is partly ours, the second shares our window with it)
    full_buckets = [b["charged_tokens"] for b in server.stats(60.0)["tokens_per_bucket"]][2:-1]
    assert len(full_buckets) >= 3
    assert sum(full_buckets) / (len(full_buckets) * limit / 6) >= 0.95
    for start, _ in sent:  # spread: no fifth of an interval holds more than 40 % of its allowance (+ one request)
        assert sum(c for t, c in sent if start <= t < start + 2.0) <= 0.4 * limit / 6 + 1400


def test_a_minute_mirror_alone_bursts_into_a_bucket_and_is_refused():
    """Without the interval the client spends what the minute allows at once: a bucket refuses it."""
    limit = 120_000
    server = SimState(SimEndpointConfig(name="e", tpm=limit))
    server.t0 = 0.0
    refused, _ = _greedy(QuotaWindow(limit, declared=True), server, 60.0, seed=1)
    assert refused >= 5


def test_interval_learned_from_the_boundaries_of_429s():
    learner = IntervalLearner()
    assert learner.refused(now=13.0, retry_after_s=7.0) == 10.0  # one boundary: the shortest >= the wait
    assert learner.refused(now=13.5, retry_after_s=6.5) == 10.0  # the same boundary again
    learner = IntervalLearner()
    assert learner.refused(now=18.5, retry_after_s=1.5) == 2.0
    assert learner.refused(now=35.1, retry_after_s=4.9) == 20.0  # boundaries 20 and 40: 5, 10, 20 fit; the longest
    assert learner.refused(now=51.0, retry_after_s=9.0) == 20.0  # and 60: still 10 or 20
    assert learner.refused(now=65.0, retry_after_s=5.0) == 10.0  # and 70: 10 only
    assert learner.refused(now=0.0, retry_after_s=60.0) == 10.0  # a minute's wait teaches nothing about buckets


def _state(**endpoint) -> EndpointState:
    return EndpointState(Endpoint(name="e", base_url="http://127.0.0.1:9/v1", model="m", **endpoint), None, DispatchSettings())


def test_a_429_while_the_minute_has_room_sets_the_interval_and_a_minute_429_does_not():
    state = _state()
    minute_full = {"x-ratelimit-limit-tokens": "120000", "x-ratelimit-remaining-tokens": "500", "retry-after-ms": "7000"}
    state.on_headers(minute_full, 3.0)
    state.on_rate_limited(3.0, 7.0)
    assert state.tpm.interval_s is None
    room = {"x-ratelimit-limit-tokens": "120000", "x-ratelimit-remaining-tokens": "90000", "retry-after-ms": "7000"}
    state.on_headers(room, 3.0)
    state.on_rate_limited(3.0, 7.0)
    assert state.tpm.interval_s == 10.0 and state.tpm.limit == 120_000
    assert state.wait_for(1000, 11.0) == 0.0 and state.wait_for(1000, 9.0) > 0  # cooldown until the boundary
    declared = _state(tpm=120_000, quota_interval_s=10.0)
    assert declared.tpm.interval_s == 10.0 and declared.intervals is None


def test_latency_linear_in_load_is_worth_one_request_at_a_time():
    serial = [(n, 0.5 * n) for n in (1, 2, 3, 4)] * 4
    fixed, per_request = latency_fit(serial)
    assert fixed == pytest.approx(0.0, abs=1e-9) and per_request == pytest.approx(0.5)
    assert useful_level(fixed, per_request) == 1.0
    parallel = [(n, 1.0 + 0.001 * n) for n in (4, 8, 16, 32)] * 4
    assert useful_level(*latency_fit(parallel)) > 500
    assert latency_fit([(4, 1.0)] * 20) is None  # no spread in load: nothing to tell


def test_concurrency_on_a_serial_server_converges_to_one_or_two():
    """Fake serial server: latency = 0.4 s x requests in flight; the limit settles at 1-2, probing included."""
    c = Concurrency(maximum=32)
    now, levels = 0.0, []
    for _ in range(400):
        load = max(1.0, math.floor(c.limit))
        now += 0.4
        c.on_success(0.4 * load, now, load)
        levels.append(c.limit)
    assert c.cap <= 2 and max(levels[100:]) <= 2.0
    assert c.seconds_per_request == pytest.approx(0.4)


def test_timeout_allows_for_the_requests_queued_ahead_at_the_observed_pace():
    state = _state(timeout_s=10.0, timeout_base_s=2.0, timeout_per_1k_tokens_s=0.0)
    state._in_flight = 3  # this request and two ahead of it
    assert state.timeout_for(500) == pytest.approx(2.0 + 2 * 2.0)  # no answer yet: a work timeout per request ahead
    state.concurrency.on_throughput(0.5)  # answers 0.5 s apart while busy
    assert state.timeout_for(500) == pytest.approx(2.0 + 2 * 2 * 0.5)
    state._in_flight = 1
    assert state.timeout_for(500) == pytest.approx(2.0)
