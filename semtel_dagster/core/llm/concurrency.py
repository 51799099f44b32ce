"""Adaptive concurrency per endpoint (AIMD with a latency gradient), capped at the level the server
serves at once, found from latency versus requests in flight."""

from __future__ import annotations

import math
from collections import deque

USEFUL_SHARE = 0.9  # the useful level: the fewest in flight that reach this share of the server's throughput
FIT_SAMPLES = 12  # answers needed before latency versus load is fitted ...
FIT_SPREAD = 0.3  # ... and this standard deviation of their loads (else the fit says nothing)
PROBE_AFTER = 32  # answers at the cap without spread in load before the cap is probed one higher


def latency_fit(samples: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares ``latency = fixed + per_request * load`` over (load, latency) samples; None without
    enough spread in load to tell the two apart."""
    if len(samples) < FIT_SAMPLES:
        return None
    n = len(samples)
    mean_load = sum(load for load, _ in samples) / n
    mean_latency = sum(latency for _, latency in samples) / n
    var = sum((load - mean_load) ** 2 for load, _ in samples) / n
    if var < FIT_SPREAD**2:
        return None
    per_request = sum((load - mean_load) * (latency - mean_latency) for load, latency in samples) / (n * var)
    return mean_latency - per_request * mean_load, per_request


def useful_level(fixed: float, per_request: float, share: float = USEFUL_SHARE) -> float:
    """Requests in flight worth sending at once. With latency = fixed + per_request x load, throughput is
    load / latency, which reaches ``share`` of its ceiling (1 / per_request) at share/(1-share) x
    fixed/per_request: a server whose latency grows in step with the load (fixed ~ 0, a serial one)
    is worth 1, one whose latency does not grow is worth any level."""
    if per_request <= 0:
        return math.inf
    return max(1.0, math.ceil(share / (1.0 - share) * max(0.0, fixed) / per_request))


class Concurrency:
    """AIMD concurrency limit with a latency gradient, capped at the server's useful level.

    Slow start doubles the limit each round trip up to ``ssthresh``; then +1 per round trip. A 429, 5xx,
    timeout, or smoothed latency above twice its baseline multiplies it by ``cut`` (and sets ``ssthresh``
    there), at most once per round trip, which is what makes processes sharing an endpoint converge to
    equal shares. After an outage, ``recover`` slow-starts back to the limit that worked before it.

    Each answer's ``load`` (requests in flight when it was sent, itself included) and latency feed :func:`latency_fit`;
    the limit never exceeds :func:`useful_level` (``cap``), so a server that queues what it cannot run
    at once (latency linear in load, llama-cpp-python) is sent one request at a time. At the cap the
    loads stop varying; after ``PROBE_AFTER`` such answers the cap is tried one higher, and the next
    fit sets it again. ``seconds_per_request`` is the server's pace, what timeouts allow per request
    queued ahead.
    """

    def __init__(self, maximum: int, start: int = 4, cut: float = 0.7) -> None:
        self.maximum = float(maximum)
        self.limit = float(min(start, maximum))
        self.ssthresh = self.maximum
        self.cut = cut
        self.latency: float | None = None  # smoothed seconds
        self.baseline: float | None = None
        self._last_cut = 0.0
        self.cuts = 0
        self.cap = math.inf
        self._pace: float | None = None  # smoothed seconds between answers while busy
        self._slope: float | None = None  # of the last fit
        self.samples: deque[tuple[float, float]] = deque(maxlen=64)
        self._unfitted = 0

    def on_success(self, latency_s: float, now: float, load: float | None = None) -> None:
        if load is not None and load > 0:
            self._serving(latency_s, load)
        self.latency = latency_s if self.latency is None else 0.9 * self.latency + 0.1 * latency_s
        self.baseline = self.latency if self.baseline is None else min(self.baseline * 1.001, self.latency)
        if self.latency > 2.0 * self.baseline + 0.005:
            self.congestion(now)
        else:
            step = 1.0 if self.limit < self.ssthresh else 1.0 / self.limit
            self.limit = min(self.maximum, self.cap, self.limit + step)

    def _serving(self, latency_s: float, load: float) -> None:
        self.samples.append((load, latency_s))
        fit = latency_fit(list(self.samples))
        if fit is not None:
            self._unfitted = 0
            self._slope = max(0.0, fit[1])
            self.cap = useful_level(*fit)
            self.limit = max(1.0, min(self.limit, self.cap))
        elif math.isfinite(self.cap):
            self._unfitted += 1
            if self._unfitted >= PROBE_AFTER:  # loads stopped varying at the cap: try one more
                self._unfitted = 0
                self.cap = min(self.maximum, self.cap + 1.0)

    def on_throughput(self, gap_s: float) -> None:
        """Seconds between two answers while requests were in flight all along: the server's pace."""
        self._pace = gap_s if self._pace is None else 0.9 * self._pace + 0.1 * gap_s

    @property
    def seconds_per_request(self) -> float | None:
        """What each request in flight ahead adds to a request's latency: the fit's slope once loads
        varied enough to fit, before that the observed time between answers (exact on a serial server,
        an upper bound elsewhere); None before the second answer."""
        return self._slope if self._slope is not None else self._pace

    def congestion(self, now: float) -> None:
        if now - self._last_cut < (self.latency or 0.0):
            return
        self._last_cut = now
        self.limit = max(1.0, self.limit * self.cut)
        self.ssthresh = self.limit
        self.cuts += 1

    def recover(self, healthy: float) -> None:
        self.ssthresh = max(self.ssthresh, healthy)
