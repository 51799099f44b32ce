"""Client-side mirrors of provider quotas (RPM, TPM), kept honest by rate-limit headers, and a fair
share of a quota contended by processes that do not talk to each other."""

from __future__ import annotations

import math
import re
from collections import deque

WINDOW_S = 60.0  # providers count per-minute quotas over a sliding minute (and some in shorter buckets)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """OpenAI-style reset durations (``6m0s``, ``250ms``, ``1.5s``) or plain seconds, in seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts) if parts else None


def retry_after_seconds(headers) -> float | None:
    if (ms := parse_duration(headers.get("retry-after-ms"))) is not None:
        return ms / 1000.0
    return parse_duration(headers.get("retry-after"))


def header_float(headers, name: str) -> float | None:
    try:
        value = headers.get(name)
        return float(value) if value is not None else None
    except ValueError:
        return None


SATURATED = 0.1  # the provider's window is contended when less than this share of it remains

PEER_FLOOR = 0.01  # others hold a real part of the window: more than this share (below: our estimate's noise)

FAIR_MARGIN = 0.05  # a process may hold this much above an equal split before it yields

SHARE_GROWTH = 0.05  # share points per second a cap grows back once the window has room


def fair_share(share: float, own: float, others: float, remaining: float, limit: float, dt: float, peers: int = 2) -> float:
    """Next cap on our usage of a contended provider window, as a fraction of the provider's ``limit``.

    ``own`` is what we hold in the provider's window (our charges of the last minute), ``others`` what
    the provider counts beyond that (``limit - remaining - own``), ``dt`` seconds since the last call.
    While the window is nearly full and others hold more than noise, the cap is an equal split of what
    the window holds among ``peers`` processes, plus a margin: above it we stop refilling our own
    expiring charges until we are down to it, and the others take them; below it we may take whatever
    frees up. When the window has room (or the others are gone), the cap grows back additively, so a
    competitor that leaves, or that wants less, does not leave the quota idle for long.

    Headers show the others' total, not how many they are: ``peers`` is the expected number of
    processes on the quota (2 by default). With more processes than ``peers`` the cap only keeps each
    below ``1/peers`` of the window, so a 3-way split is not enforced to be equal; with fewer, the
    quota is not fully used while contended (a lone process never sees others and is never capped).
    """
    if limit <= 0 or not math.isfinite(limit):
        return share
    used = own + others
    if remaining < SATURATED * limit and others > PEER_FLOOR * limit:
        return max(0.05, used / max(1, peers) * (1.0 + FAIR_MARGIN) / limit)
    return min(1.0, share + SHARE_GROWTH * dt)


def window_margin(length_s: float) -> float:
    """Our send time precedes the provider's arrival time: free our charges this much later."""
    return min(0.25, 0.01 * length_s)


SPREAD_PARTS = 5  # within a quota interval, no fifth of it may hold more than ...
SPREAD_SHARE = 0.4  # ... this share of the interval's allowance (twice the even rate): sends are spread


class _Span:
    """Our charges of the last ``length_s`` seconds, allowed ``fraction`` of the per-minute limit."""

    def __init__(self, length_s: float, fraction: float) -> None:
        self.length_s = length_s
        self.fraction = fraction
        self.margin_s = window_margin(length_s)
        self.charges: deque[list[float]] = deque()
        self.own = 0.0

    def prune(self, now: float) -> None:
        cutoff = now - self.length_s - self.margin_s
        while self.charges and self.charges[0][0] <= cutoff:
            self.own -= self.charges.popleft()[1]

    def holds(self, charge: list[float]) -> bool:
        return bool(self.charges) and charge[0] >= self.charges[0][0]

    def wait_for(self, missing: float, now: float) -> float | None:
        """Seconds until ``missing`` of our charges leave (None: they are not ours to free)."""
        freed = 0.0
        for sent, charged in self.charges:
            freed += charged
            if freed >= missing:
                return max(0.001, sent + self.length_s + self.margin_s - now)
        return None


def interval_spans(interval_s: float) -> list[_Span]:
    """The spans that pace a per-minute quota enforced in ``interval_s`` buckets: at most
    limit x interval / 60 in any interval (so in each of the provider's buckets, whatever their phase),
    and at most twice the even rate in any fifth of it (a fresh interval is not spent in one burst)."""
    share = interval_s / WINDOW_S
    return [_Span(interval_s, share), _Span(interval_s / SPREAD_PARTS, share * SPREAD_SHARE)]


class QuotaWindow:
    """Client-side mirror of one provider quota (tokens or requests per minute).

    Holds our own charges of the last minute; the provider's ``remaining`` header tells how much more
    of the window is used than we sent ourselves (other processes, or our estimate being low), and that
    external share is assumed to leave the window linearly over the next minute. ``limit`` is what we may
    use (a declared share may be less than the provider's limit); both bounds hold.

    A provider that enforces the minute in shorter buckets (``interval_s``: declared, or learned from
    its 429s, see :class:`IntervalLearner`) is paced token-bucket style by :func:`interval_spans`:
    sliding spans of our own charges that never hold more than the interval's allowance, which keeps
    every bucket of the provider within its allowance whatever their phase, and fills them all.

    When others use the same quota, ``share`` (of ``limit``) follows :func:`fair_share`: while the
    provider's window is nearly full and others hold a real part of it, a process caps itself at an
    equal split of what the window holds (it stops refilling its own expiring charges until it is
    down to that, and the others take them); once the window has room again its cap grows back by
    5 points per second. Without this, processes that all respect ``remaining`` see no 429s and each
    keeps refilling its own slots, so any split persists. Alone, a process keeps the whole quota.
    """

    def __init__(self, limit: float, declared: bool, peers: int = 2, interval_s: float | None = None) -> None:
        self.peers = peers
        self.limit = float(limit)
        self.provider_limit = float(limit)
        self.declared = declared
        self.share = 1.0
        self._share_at = 0.0
        self.minute = _Span(WINDOW_S, 1.0)
        self.charges = self.minute.charges  # [sent at, amount]; amount corrected in place
        self.spans: list[_Span] = []
        self.interval_s: float | None = None
        self._external = 0.0
        self._external_at = 0.0
        if interval_s is not None:
            self.set_interval(interval_s, 0.0)

    @property
    def own(self) -> float:
        """What we hold in the provider's minute."""
        return self.minute.own

    @own.setter
    def own(self, value: float) -> None:
        self.minute.own = value

    def set_interval(self, interval_s: float, now: float) -> None:
        """Pace within ``interval_s`` buckets from now on; our charges already sent count in the new spans."""
        if interval_s == self.interval_s or interval_s >= WINDOW_S:
            return
        self.interval_s = interval_s
        self.spans = interval_spans(interval_s)
        for span in self.spans:
            for charge in self.minute.charges:
                if charge[0] > now - span.length_s - span.margin_s:
                    span.charges.append(charge)
                    span.own += charge[1]

    def _prune(self, now: float) -> None:
        self.minute.prune(now)
        for span in self.spans:
            span.prune(now)

    def external(self, now: float) -> float:
        return self._external * max(0.0, 1.0 - (now - self._external_at) / WINDOW_S)

    def _allowed(self, span: _Span) -> float:
        return self.limit * self.share * span.fraction

    def free(self, now: float) -> float:
        self._prune(now)
        minute = min(self.limit * self.share, self.provider_limit - self.external(now)) - self.minute.own
        return min([minute] + [self._allowed(span) - span.own for span in self.spans])

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0: now); a request larger than a span waits for it to be empty."""
        self._prune(now)
        wait = 0.0
        for span in self.spans:
            missing = min(amount, self._allowed(span)) - (self._allowed(span) - span.own)
            if missing > 0:
                wait = max(wait, span.wait_for(missing, now) or 0.001)
        missing = min(amount, self.limit) - self.free_in_minute(now)
        if missing > 0:
            # only the external share in the way: it decays, and every response re-measures it
            wait = max(wait, self.minute.wait_for(missing, now) or 0.25)
        return wait

    def free_in_minute(self, now: float) -> float:
        self.minute.prune(now)
        return min(self.limit * self.share, self.provider_limit - self.external(now)) - self.minute.own

    def take(self, amount: float, now: float) -> list[float]:
        charge = [now, float(amount)]
        for span in (self.minute, *self.spans):
            span.charges.append(charge)
            span.own += amount
        return charge

    def correct(self, charge: list[float], amount: float) -> None:
        """Replace a charge by what the provider actually counted (no-op in spans it has left)."""
        for span in (self.minute, *self.spans):
            if span.holds(charge):
                span.own += amount - charge[1]
        charge[1] = float(amount)

    def observe(self, limit: float | None, remaining: float | None, now: float) -> None:
        """The provider's view wins: learn an undeclared limit; what it counts beyond ours is external."""
        if limit:
            self.provider_limit = float(limit)
            if not self.declared:
                self.limit = float(limit)
        if remaining is not None and math.isfinite(self.provider_limit):
            self._prune(now)
            used = self.provider_limit - remaining
            self._external = max(0.0, used - self.own)
            self._external_at = now
            scale = self.limit / self.provider_limit  # share is of our limit, fair_share of the provider's
            capped = fair_share(
                self.share * scale,
                self.own,
                self._external,
                remaining,
                self.provider_limit,
                max(0.0, now - self._share_at),
                self.peers,
            )
            self.share = min(1.0, capped / scale) if scale > 0 else 1.0
            self._share_at = now


INTERVALS_S = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0)  # bucket lengths providers use (Azure: 1 s and 10 s)

BOUNDARY_TOLERANCE_S = 0.2  # a bucket boundary read from a Retry-After is this precise (network, jitter)


class IntervalLearner:
    """The bucket length of a provider that enforces its per-minute quota in shorter intervals, learned
    from the 429s it sends while the minute still has room.

    Each such 429 names a bucket boundary (arrival + ``Retry-After``), and the wait is never longer than
    one bucket. The estimate is the longest standard interval that every distance between two observed
    boundaries is a multiple of, and at least the longest wait; with one boundary only, the shortest
    standard interval at least as long as the longest wait (pacing in shorter spans never over-spends a
    longer bucket that they divide; it only wastes a little more of each to rounding).
    """

    def __init__(self, keep: int = 32) -> None:
        self.boundaries: deque[float] = deque(maxlen=keep)
        self.longest_wait = 0.0
        self.interval_s: float | None = None

    def refused(self, now: float, retry_after_s: float) -> float | None:
        """Record a sub-minute 429; return the interval estimate (None: the wait is a minute's)."""
        if not 0.0 < retry_after_s < WINDOW_S:
            return self.interval_s
        self.boundaries.append(now + retry_after_s)
        self.longest_wait = max(self.longest_wait, retry_after_s)
        long_enough = [c for c in INTERVALS_S if c >= self.longest_wait - BOUNDARY_TOLERANCE_S]
        if not long_enough:
            return self.interval_s
        first = self.boundaries[0]
        gaps = [b - first for b in self.boundaries if abs(b - first) > BOUNDARY_TOLERANCE_S]
        on_grid = [c for c in long_enough if all(_near_multiple(gap, c) for gap in gaps)] if gaps else []
        self.interval_s = max(on_grid) if on_grid else long_enough[0]
        return self.interval_s


def _near_multiple(value: float, step: float) -> bool:
    return abs(value - round(value / step) * step) <= BOUNDARY_TOLERANCE_S
