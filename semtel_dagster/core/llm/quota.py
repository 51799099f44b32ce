"""Client-side mirrors of provider quotas (RPM, TPM), kept honest by rate-limit headers, and a fair
share of a quota contended by processes that do not talk to each other."""

from __future__ import annotations

import math
import re
from collections import deque

WINDOW_S = 60.0  # providers count per-minute quotas over a sliding minute

_WINDOW_MARGIN_S = 0.25  # our send time precedes the provider's arrival time: free our charges a bit later

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


class QuotaWindow:
    """Client-side mirror of one provider quota (tokens or requests per sliding minute).

    Holds our own charges of the last minute; the provider's ``remaining`` header tells how much more
    of the window is used than we sent ourselves (other processes, or our estimate being low), and that
    external share is assumed to leave the window linearly over the next minute. ``limit`` is what we may
    use (a declared share may be less than the provider's limit); both bounds hold.

    When others use the same quota, ``share`` (of ``limit``) follows :func:`fair_share`: while the
    provider's window is nearly full and others hold a real part of it, a process caps itself at an
    equal split of what the window holds (it stops refilling its own expiring charges until it is
    down to that, and the others take them); once the window has room again its cap grows back by
    5 points per second. Without this, processes that all respect ``remaining`` see no 429s and each
    keeps refilling its own slots, so any split persists. Alone, a process keeps the whole quota.
    """

    def __init__(self, limit: float, declared: bool, peers: int = 2) -> None:
        self.peers = peers
        self.limit = float(limit)
        self.provider_limit = float(limit)
        self.declared = declared
        self.share = 1.0
        self._share_at = 0.0
        self.charges: deque[list[float]] = deque()  # [sent at, amount]; amount corrected in place
        self.own = 0.0
        self._external = 0.0
        self._external_at = 0.0

    def _prune(self, now: float) -> None:
        cutoff = now - WINDOW_S - _WINDOW_MARGIN_S
        while self.charges and self.charges[0][0] <= cutoff:
            self.own -= self.charges.popleft()[1]

    def external(self, now: float) -> float:
        return self._external * max(0.0, 1.0 - (now - self._external_at) / WINDOW_S)

    def free(self, now: float) -> float:
        self._prune(now)
        return min(self.limit * self.share, self.provider_limit - self.external(now)) - self.own

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0: now); a request larger than the quota waits for an empty window."""
        amount = min(amount, self.limit)
        missing = amount - self.free(now)
        if missing <= 0:
            return 0.0
        freed = 0.0
        for sent, charged in self.charges:
            freed += charged
            if freed >= missing:
                return max(0.001, sent + WINDOW_S + _WINDOW_MARGIN_S - now)
        return 0.25  # only the external share is in the way; it decays, and every response re-measures it

    def take(self, amount: float, now: float) -> list[float]:
        charge = [now, float(amount)]
        self.charges.append(charge)
        self.own += amount
        return charge

    def correct(self, charge: list[float], amount: float) -> None:
        """Replace a charge by what the provider actually counted (no-op once it left the window)."""
        if self.charges and charge[0] >= self.charges[0][0]:
            self.own += amount - charge[1]
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
