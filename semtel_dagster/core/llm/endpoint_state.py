"""The live view of one endpoint: transport, quota mirrors, concurrency, breaker, cooldown, latencies."""

from __future__ import annotations

import math
from collections import deque

import aiohttp

from semtel_dagster.core.llm.concurrency import Concurrency
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.quota import QuotaWindow, header_float
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.stats import EndpointStats
from semtel_dagster.core.llm.transport import Transport


class EndpointState:
    """Live view of one endpoint: quota windows, concurrency, breaker, cooldown, latencies, counters."""

    def __init__(self, endpoint: Endpoint, session: aiohttp.ClientSession, settings: DispatchSettings) -> None:
        self.endpoint = endpoint
        self.session = session
        self.transport = Transport(endpoint)
        self.settings = settings
        # undeclared quotas start unbounded and still record our charges, so the first headers that
        # reveal the limit are compared with everything we sent, not mistaken for another process
        peers = settings.quota_peers
        self.rpm = QuotaWindow(endpoint.rpm or math.inf, declared=endpoint.rpm is not None, peers=peers)
        self.tpm = QuotaWindow(endpoint.tpm or math.inf, declared=endpoint.tpm is not None, peers=peers)
        self.concurrency = Concurrency(endpoint.max_concurrency)
        self.in_flight = 0
        self.cooldown_until = 0.0
        self.failures = 0  # consecutive
        self.open_s = 0.0  # > 0: the breaker has opened; half-open once cooldown_until passes
        self.healthy_limit = self.concurrency.limit  # the limit before the current run of failures
        self.misconfigured = False  # refused a request as configured: never chosen again
        self.last_error = ""  # of the current run of failures (redacted), for the run's failure message
        self.latencies: deque[float] = deque(maxlen=256)
        self.stats = EndpointStats()

    def wait_for(self, cost: int, now: float, hedge: bool = False) -> float:
        """Seconds until this endpoint can take a request of ``cost`` tokens (0: now); a hedge may exceed
        the concurrency limit (it is rare and capped), never the quota, a cooldown or an open breaker."""
        if self.misconfigured:
            return math.inf
        wait = self.cooldown_until - now
        if self.in_flight >= (1 if self.open_s else int(self.concurrency.limit)) and not (hedge and not self.open_s):
            wait = max(wait, 1.0)  # woken early when a request finishes
        wait = max(wait, self.rpm.wait_for(1, now), self.tpm.wait_for(cost, now))
        return max(0.0, wait)

    def headroom(self, now: float) -> float:
        """Free quota (tokens) weighted by free concurrency: high-TPM endpoints take more of the work."""
        free = 1.0 - self.in_flight / max(1.0, self.concurrency.limit)
        tokens = min(self.tpm.free(now), 1e9)
        return max(free, 0.01) * max(tokens, 1.0)

    def reserve(self, cost: int, now: float) -> list[float]:
        self.in_flight += 1
        self.stats.requests += 1
        self.rpm.take(1, now)
        return self.tpm.take(cost, now)

    def timeout_for(self, cost: int) -> float:
        """Bigger requests take longer: the timeout grows with prompt + max_tokens, up to ``timeout_s``."""
        e = self.endpoint
        return min(e.timeout_s, e.timeout_base_s + e.timeout_per_1k_tokens_s * cost / 1000.0)

    def hedge_after(self) -> float | None:
        q = self.settings.hedge_quantile
        if q is None or len(self.latencies) < self.settings.hedge_min_samples:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * self.settings.hedge_factor

    def on_headers(self, headers, now: float) -> None:
        for attr, kind in (("rpm", "requests"), ("tpm", "tokens")):
            limit = header_float(headers, f"x-ratelimit-limit-{kind}")
            remaining = header_float(headers, f"x-ratelimit-remaining-{kind}")
            getattr(self, attr).observe(limit, remaining, now)

    def on_success(self, latency_s: float, now: float) -> None:
        if self.open_s:  # the breaker closes: slow-start back to what worked before the outage
            self.concurrency.recover(self.healthy_limit)
        self.failures = 0
        self.open_s = 0.0
        self.latencies.append(latency_s)
        self.concurrency.on_success(latency_s, now)
        self.healthy_limit = self.concurrency.limit

    def on_rate_limited(self, now: float, pause_s: float) -> None:
        """A 429: cut concurrency, pause until ``Retry-After``; then slow-start back to the limit that worked
        (the quota mirror, not concurrency, paces a full quota: a process that waited out a long
        ``Retry-After`` must not creep back one request per round trip while others refill the window)."""
        self.concurrency.congestion(now)
        self.concurrency.recover(self.healthy_limit)
        self.cooldown_until = max(self.cooldown_until, now + pause_s)

    def on_failure(self, now: float, pause_s: float, overload: bool = True) -> None:
        """A 5xx, timeout (``overload``: cut concurrency), dropped connection or broken answer: back off;
        enough in a row (or a failed probe) open the breaker."""
        if overload:
            self.concurrency.congestion(now)
        self.failures += 1
        if self.open_s or self.failures >= self.settings.breaker_failures:
            s = self.settings
            self.open_s = min(s.breaker_max_open_s, self.open_s * 2 if self.open_s else s.breaker_open_s)
            self.stats.breaker_opens += 1
            pause_s = max(pause_s, self.open_s)
        self.cooldown_until = max(self.cooldown_until, now + pause_s)
