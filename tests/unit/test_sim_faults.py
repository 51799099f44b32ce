"""The simulator's latency model, fault windows and server-side goodput counters."""

from __future__ import annotations

import time

import httpx
import pytest

from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.server import EndpointState

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "User: hello"}], "max_tokens": 20}


def test_latency_model_adds_tokens_load_and_a_heavy_tail():
    cfg = SimEndpointConfig(latency_ms=100, latency_per_token_ms=2, latency_per_prompt_token_ms=0.5, load_latency_ms=10)
    state = EndpointState(cfg)
    assert state.latency_s(10, 100) == pytest.approx((100 + 20 + 50) / 1000)
    state.in_flight = 4  # three others in flight besides this one
    assert state.latency_s(10, 100) == pytest.approx((100 + 20 + 50 + 30) / 1000)
    tailed = EndpointState(SimEndpointConfig(latency_ms=100, tail_prob=0.2, tail_alpha=1.5, seed=1))
    samples = sorted(tailed.latency_s(0) for _ in range(2000))
    assert samples[0] == pytest.approx(0.1)
    assert samples[len(samples) // 2] == pytest.approx(0.1)  # most answers are not in the tail
    assert samples[-20] > 0.4  # the top 1 % is several times slower


def test_fault_windows_follow_the_clock_and_are_counted():
    faults = {"windows": [{"kind": "429", "start_s": 0, "duration_s": 0.5}, {"kind": "5xx", "start_s": 0.5, "duration_s": 0.5}]}
    with SimulatorThread(SimConfig(endpoints=[SimEndpointConfig(name="a", latency_ms=0, faults=faults)])) as sim:
        url = sim.base_url("a") + "/chat/completions"
        with httpx.Client() as client:
            client.get(sim.url + "/health")
            sim.reset()  # the windows' clock starts now
            first = client.post(url, json=BODY)
            time.sleep(0.6)
            second = client.post(url, json=BODY)
            time.sleep(0.5)
            third = client.post(url, json=BODY)
        stats = sim.stats()["endpoints"]["a"]
    assert first.status_code == 429 and first.headers["retry-after"] == "1"
    assert second.status_code == 503
    assert third.status_code == 200 and third.json()["usage"]["prompt_tokens"] > 0
    assert stats["faults"] == {"429": 1, "5xx": 1}
    assert stats["ok_requests"] == 1 and stats["requests"] == 1  # faults before admission are not charged
    assert stats["ok_charged_tokens"] == stats["charged_tokens"] == third.json()["usage"]["prompt_tokens"] + 20


def test_malformed_body_and_missing_usage_are_not_goodput():
    faults = {"malformed_rate": 1.0}
    with SimulatorThread(SimConfig(endpoints=[SimEndpointConfig(name="a", latency_ms=0, faults=faults)])) as sim:
        response = httpx.post(sim.base_url("a") + "/chat/completions", json=BODY)
        stats = sim.stats()["endpoints"]["a"]
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert stats["requests"] == 1 and stats["ok_requests"] == 0 and stats["faults"] == {"malformed": 1}
