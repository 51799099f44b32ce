"""The live view of one endpoint: transport, quota mirrors, concurrency, breaker, cooldown, latencies."""

from __future__ import annotations

import bisect
import math
import time
from collections import deque

import aiohttp

from semtel_dagster.core.llm.concurrency import Concurrency
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.quota import IntervalLearner, QuotaWindow, header_float, retry_after_seconds
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.stats import EndpointStats
from semtel_dagster.core.llm.stream import Limits
from semtel_dagster.core.llm.transport import Transport

MINUTE_ROOM = 0.1  # a 429 with more than this share of the minute left is a sub-minute bucket's


class EndpointState:
    """Live view of one endpoint: quota windows, concurrency, breaker, cooldown, latencies, counters."""

    def __init__(self, endpoint: Endpoint, session: aiohttp.ClientSession, settings: DispatchSettings) -> None:
        self.endpoint = endpoint
        self.session = session
        self.transport = Transport(endpoint)
        self.settings = settings
        # undeclared quotas start unbounded and still record our charges, so the first headers that
        # reveal the limit are compared with everything we sent, not mistaken for another process
        peers, every = settings.quota_peers, endpoint.quota_interval_s
        self.rpm = QuotaWindow(endpoint.rpm or math.inf, declared=endpoint.rpm is not None, peers=peers, interval_s=every)
        self.tpm = QuotaWindow(endpoint.tpm or math.inf, declared=endpoint.tpm is not None, peers=peers, interval_s=every)
        # an undeclared interval is learned from 429s that come while the minute still has room
        self.intervals = IntervalLearner() if every is None else None
        self._minute_room: float | None = None  # the least share of its minute the provider said was left
        self._retry_after: float | None = None
        self.concurrency = Concurrency(endpoint.max_concurrency)
        self._in_flight = 0
        self._load: deque[tuple[float, int]] = deque(maxlen=4096)  # (at, in flight from then on)
        self._busy_since = 0.0  # when in flight last rose from 0
        self._answered_at: float | None = None
        self.cooldown_until = 0.0
        self.failures = 0  # consecutive
        self.open_s = 0.0  # > 0: the breaker has opened; half-open once cooldown_until passes
        self.healthy_limit = self.concurrency.limit  # the limit before the current run of failures
        self.misconfigured = False  # refused a request as configured: never chosen again
        self.last_error = ""  # of the current run of failures (redacted), for the run's failure message
        self.latencies: deque[float] = deque(maxlen=256)
        self.stats = EndpointStats()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        """Every change is recorded, so an answer's load (in flight when it was sent) can be told."""
        now = time.monotonic()
        if self._in_flight == 0 and value > 0:
            self._busy_since = now
        self._load.append((now, value))
        self._in_flight = value

    def load(self, latency_s: float, now: float) -> int | None:
        """Requests in flight at this endpoint (the answer's own included) when an answer that took
        ``latency_s`` until ``now`` was sent: what a server that queues makes it wait for. None: not recorded."""
        sent = now - latency_s
        i = bisect.bisect_right(self._load, sent, key=lambda entry: entry[0]) - 1
        return self._load[i][1] if i >= 0 else None

    def wait_for(self, cost: int, now: float, hedge: bool = False) -> float:
        """Seconds until this endpoint can take a request of ``cost`` tokens (0: now); a hedge may exceed
        the concurrency limit (it is rare and capped) unless that limit is the level the server was found
        to serve at once, never the quota, a cooldown or an open breaker."""
        if self.misconfigured:
            return math.inf
        wait = self.cooldown_until - now
        at_useful_level = self.concurrency.limit >= self.concurrency.cap  # more would only queue at the server
        may_exceed = hedge and not self.open_s and not at_useful_level
        if self.in_flight >= (1 if self.open_s else int(self.concurrency.limit)) and not may_exceed:
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

    def work_timeout(self, cost: int) -> float:
        """Bigger requests take longer: the work's timeout grows with prompt + max_tokens, up to ``timeout_s``."""
        e = self.endpoint
        return min(e.timeout_s, e.timeout_base_s + e.timeout_per_1k_tokens_s * cost / 1000.0)

    def _ahead_s(self, work: float) -> float:
        """The time the server takes for the requests sent before this one (``in_flight`` counts it) at
        its observed pace (twice over); before any answer, a whole work timeout per request ahead."""
        pace = self.concurrency.seconds_per_request
        return max(0, self.in_flight - 1) * (work if pace is None else 2.0 * pace)

    def timeout_for(self, cost: int) -> float:
        """A plain request's timeout: the work's, plus the requests ahead of it, so that queueing on a
        server that serves one at a time is not taken for a hang."""
        work = self.work_timeout(cost)
        return work + self._ahead_s(work)

    def limits(self, cost: int) -> Limits:
        """Plain: ``timeout_for``. Streamed: the queue's generous limit plus the requests ahead until the
        first event, then the work's own timeout from there (see ``stream``)."""
        e, work = self.endpoint, self.work_timeout(cost)
        ahead = self._ahead_s(work)
        return Limits(total_s=work + ahead, queue_s=e.timeout_queue_s + ahead, work_s=work, stall_s=e.timeout_stall_s)

    def hedge_after(self) -> float | None:
        q = self.settings.hedge_quantile
        if q is None or len(self.latencies) < self.settings.hedge_min_samples:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * self.settings.hedge_factor

    def on_headers(self, headers, now: float) -> None:
        self._retry_after = retry_after_seconds(headers)
        self._minute_room = None
        for attr, kind in (("rpm", "requests"), ("tpm", "tokens")):
            limit = header_float(headers, f"x-ratelimit-limit-{kind}")
            remaining = header_float(headers, f"x-ratelimit-remaining-{kind}")
            getattr(self, attr).observe(limit, remaining, now)
            if limit and remaining is not None:
                room = remaining / limit
                self._minute_room = room if self._minute_room is None else min(self._minute_room, room)

    def on_success(self, latency_s: float, now: float) -> None:
        if self.open_s:  # the breaker closes: slow-start back to what worked before the outage
            self.concurrency.recover(self.healthy_limit)
        self.failures = 0
        self.open_s = 0.0
        self.latencies.append(latency_s)
        if self._answered_at is not None:
            self.concurrency.on_throughput(now - max(self._answered_at, self._busy_since))
        self._answered_at = now
        self.concurrency.on_success(latency_s, now, self.load(latency_s, now))
        self.healthy_limit = self.concurrency.limit

    def on_rate_limited(self, now: float, pause_s: float) -> None:
        """A 429: cut concurrency, pause until ``Retry-After``; then slow-start back to the limit that worked
        (the quota mirror, not concurrency, paces a full quota: a process that waited out a long
        ``Retry-After`` must not creep back one request per round trip while others refill the window)."""
        self.concurrency.congestion(now)
        self.concurrency.recover(self.healthy_limit)
        self.cooldown_until = max(self.cooldown_until, now + pause_s)
        self._learn_interval(now)

    def _learn_interval(self, now: float) -> None:
        """A 429 while the provider's minute has room (its headers say so) comes from a shorter bucket:
        its ``Retry-After`` tells the bucket's boundary, and the boundaries tell the interval."""
        if self.intervals is None or self._retry_after is None or (self._minute_room or 0.0) < MINUTE_ROOM:
            return
        every = self.intervals.refused(now, self._retry_after)
        if every is not None:
            self.tpm.set_interval(every, now)
            self.rpm.set_interval(every, now)

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
