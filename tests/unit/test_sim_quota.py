"""The simulator's sub-minute quota enforcement (Azure-style buckets) and its serial (llama-cpp-python) mode."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.server import EndpointState


def _state(**cfg) -> EndpointState:
    st = EndpointState(SimEndpointConfig(name="e", **cfg))
    st.t0 = 0.0  # bucket k covers [10k, 10k + 10) seconds
    return st


def test_tpm_buckets_refuse_a_burst_of_the_minute_and_open_at_the_next_bucket():
    st = _state(tpm=60_000)  # 10 s buckets of 10,000 tokens
    assert [st.try_admit(2_500, 100, 12.0) for _ in range(4)] == [0.0] * 4
    wait = st.try_admit(2_500, 100, 13.0)  # the minute has 50,000 left, the bucket none
    assert wait == pytest.approx(7.0)
    assert st.headers(13.0)["x-ratelimit-remaining-tokens"] == str(60_000 - 10_000)  # headers describe the minute
    assert st.try_admit(2_500, 100, 20.0) == 0.0  # the next bucket
    assert st.rate_limited == 1 and st.requests == 5
    assert st.stats(20.0)["tokens_per_bucket"] == [
        {"bucket": 1, "charged_tokens": 10_000},
        {"bucket": 2, "charged_tokens": 2_500},
    ]


def test_tpm_bucket_interval_is_configurable_and_a_big_request_fits_an_empty_bucket():
    st = _state(tpm=60_000, tpm_interval_s=1.0)  # 1,000 tokens a second
    assert st.try_admit(600, 10, 5.1) == 0.0
    assert st.try_admit(600, 10, 5.2) == pytest.approx(0.8)
    assert st.try_admit(3_000, 10, 6.0) == 0.0  # above one bucket's allowance: admitted into an empty bucket
    assert st.try_admit(1, 1, 6.5) == pytest.approx(0.5)
    assert st.try_admit(70_000, 10, 60.0) == 60.0  # above the minute: never


def test_sliding_minute_mode_admits_a_whole_minute_in_one_burst():
    st = _state(tpm=60_000, tpm_interval_s=None)
    assert [st.try_admit(10_000, 100, 1.0 + i / 10) for i in range(6)] == [0.0] * 6
    assert st.try_admit(10_000, 100, 2.0) == pytest.approx(60.0 - 1.0)  # the first charge leaves the minute


def test_rpm_is_evaluated_per_second_and_tiny_quotas_fall_back_to_the_minute():
    st = _state(rpm=600)  # 10 a second
    assert all(st.try_admit(1, 1, 3.05 + i * 0.01) == 0.0 for i in range(10))
    assert st.try_admit(1, 1, 3.5) == pytest.approx(0.5)
    assert st.try_admit(1, 1, 4.0) == 0.0
    tiny = _state(rpm=3)  # 0.05 a second: the sliding minute
    assert [tiny.try_admit(1, 1, t) for t in (0.0, 1.0, 2.0)] == [0.0] * 3
    assert tiny.try_admit(1, 1, 3.0) == pytest.approx(57.0)


def test_serial_server_has_no_quota():
    with pytest.raises(ValueError, match="serial server has no tpm/rpm"):
        SimEndpointConfig(name="s", serial=True, tpm=1000)


async def _post(session: aiohttp.ClientSession, url: str, timeout: float | None = None) -> tuple[float, dict]:
    started = time.monotonic()
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        await r.read()
        return time.monotonic() - started, dict(r.headers)


def test_serial_server_answers_one_at_a_time_without_headers_and_finishes_abandoned_work():
    config = SimConfig(endpoints=[SimEndpointConfig(name="serial", serial=True, latency_ms=200.0)])
    with SimulatorThread(config) as sim:
        url = sim.base_url("serial") + "/chat/completions"

        async def main() -> tuple[list, list]:
            async with aiohttp.ClientSession() as session:
                answers = await asyncio.gather(*(_post(session, url) for _ in range(4)))
                with pytest.raises(TimeoutError):  # the client leaves before its 200 ms answer
                    await _post(session, url, timeout=0.1)
                return answers

        answers = asyncio.run(main())
        time.sleep(0.5)  # the abandoned answer is still computed to its end
        stats = sim.stats()["endpoints"]["serial"]
    latencies = sorted(latency for latency, _ in answers)
    assert latencies[0] >= 0.19 and latencies[-1] >= 0.75  # the fourth waited for three answers
    assert all(not any(h.lower().startswith("x-ratelimit") for h in headers) for _, headers in answers)
    assert stats["max_in_flight"] >= 4 and stats["in_flight"] == 0
    assert stats["abandoned"] == 1 and stats["completion_tokens"] > 0
