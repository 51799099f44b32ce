"""Adaptive concurrency per endpoint (AIMD with a latency gradient)."""

from __future__ import annotations


class Concurrency:
    """AIMD concurrency limit with a latency gradient.

    Slow start doubles the limit each round trip up to ``ssthresh``; then +1 per round trip. A 429, 5xx,
    timeout, or smoothed latency above twice its baseline multiplies it by ``cut`` (and sets ``ssthresh``
    there), at most once per round trip, which is what makes processes sharing an endpoint converge to
    equal shares. After an outage, ``recover`` slow-starts back to the limit that worked before it.
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

    def on_success(self, latency_s: float, now: float) -> None:
        self.latency = latency_s if self.latency is None else 0.9 * self.latency + 0.1 * latency_s
        self.baseline = self.latency if self.baseline is None else min(self.baseline * 1.001, self.latency)
        if self.latency > 2.0 * self.baseline + 0.005:
            self.congestion(now)
        else:
            self.limit = min(self.maximum, self.limit + (1.0 if self.limit < self.ssthresh else 1.0 / self.limit))

    def congestion(self, now: float) -> None:
        if now - self._last_cut < (self.latency or 0.0):
            return
        self._last_cut = now
        self.limit = max(1.0, self.limit * self.cut)
        self.ssthresh = self.limit
        self.cuts += 1

    def recover(self, healthy: float) -> None:
        self.ssthresh = max(self.ssthresh, healthy)
