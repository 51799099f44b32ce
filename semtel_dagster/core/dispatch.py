"""Asynchronous LLM dispatch over a pool of OpenAI-compatible endpoints, at the rate limit.

Per endpoint: a client-side mirror of the provider's 60 s quota windows (RPM and TPM, charged the way
Azure counts: prompt tokens + ``max_tokens`` on arrival, corrected to the provider's count, refunded to
actual use where the endpoint says the provider does), kept honest by the ``x-ratelimit-*`` headers of
every response, which also reveal what other processes sharing the endpoint use (an AIMD share of a
contended quota makes uncoordinated processes converge to equal shares); an AIMD concurrency limit
with a latency gradient (cut on 429, 5xx, timeouts or rising latency, at most once per round trip);
a circuit breaker; cooldowns that honor ``Retry-After``. Requests go to the ready endpoint with the most headroom; a failure is retried on
another endpoint with jittered backoff; a straggler past a latency percentile gets one hedged duplicate
whose loser is cancelled, so each request yields exactly one row. An optional token or cost budget stops
dispatch cleanly. Workers pull requests from an iterator: millions of queued requests are never
materialized at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import aiohttp

from semtel_dagster.core.endpoints import Endpoint, ModelPrice
from semtel_dagster.core.tokens import count_tokens

STATUS_OK = "ok"
STATUS_ERROR = "error"
WINDOW_S = 60.0  # providers count per-minute quotas over a sliding minute
_WINDOW_MARGIN_S = 0.25  # our send time precedes the provider's arrival time: free our charges a bit later


@dataclass(frozen=True)
class LLMRequest:
    request_id: str
    week_start: dt.date
    conversation_ids: tuple[str, ...]
    classifiers: tuple[str, ...]
    prompt_name: str
    prompt_version: str
    messages: list[dict]
    response_format: dict | None
    max_tokens: int
    temperature: float
    prompt_tokens: int  # estimated locally; charged against TPM before the provider counts
    strategy: str = "single"  # batching strategy that produced the request (recorded in llm_responses)

    @property
    def cost(self) -> int:
        return self.prompt_tokens + self.max_tokens


def request_id(conversation_ids: Iterable[str], classifiers: Iterable[str], prompt_version: str) -> str:
    """Stable id of a unit of work: reruns recognise what was already answered."""
    key = json.dumps([sorted(conversation_ids), sorted(classifiers), prompt_version])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = 6
    backoff_base_s: float = 0.25
    backoff_max_s: float = 20.0
    hedge_quantile: float | None = 0.95  # hedge a request still running past this latency quantile; None: off
    hedge_factor: float = 1.5  # ... times this factor
    hedge_min_samples: int = 20
    hedge_max_share: float = 0.05  # hedges never exceed this share of requests (no load doubling when all is slow)
    breaker_failures: int = 5  # consecutive failures that open an endpoint's circuit
    breaker_open_s: float = 1.0  # first open period; doubles while probes fail
    breaker_max_open_s: float = 8.0
    budget_tokens: int | None = None  # stop dispatch before prompt + completion tokens (retries included) pass this
    budget_cost: float | None = None  # ... or before the cost passes this (needs prices)
    prices: dict[str, ModelPrice] = field(default_factory=dict)  # per model
    seed: int = 0
    quota_peers: int = 2  # processes expected to share a contended quota (see fair_share); headers cannot count them


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


def _header_float(headers, name: str) -> float | None:
    try:
        value = headers.get(name)
        return float(value) if value is not None else None
    except ValueError:
        return None


SATURATED = 0.1  # the provider's window is contended when less than this share of it remains
PEER_FLOOR = 0.01  # others hold a real part of the window: more than this share (below: our estimate's noise)
FAIR_MARGIN = 0.05  # a process may hold this much above an equal split before it yields
SHARE_GROWTH = 0.05  # share points per second a cap grows back once the window has room


def fair_share(share: float, own: float, others: float, remaining: float, limit: float, dt: float,
               peers: int = 2) -> float:
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
            capped = fair_share(self.share * scale, self.own, self._external, remaining, self.provider_limit,
                                max(0.0, now - self._share_at), self.peers)
            self.share = min(1.0, capped / scale) if scale > 0 else 1.0
            self._share_at = now


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


@dataclass
class EndpointStats:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: int = 0
    timeouts: int = 0
    hedges: int = 0
    breaker_opens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_total: float = 0.0


class EndpointState:
    """Live view of one endpoint: quota windows, concurrency, breaker, cooldown, latencies, counters."""

    def __init__(self, endpoint: Endpoint, session: aiohttp.ClientSession, settings: DispatchSettings) -> None:
        self.endpoint = endpoint
        self.session = session
        self.url = f"{endpoint.base_url}/chat/completions"
        self.headers = {"Authorization": f"Bearer {endpoint.api_key()}", "Content-Type": "application/json"}
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
        self.latencies: deque[float] = deque(maxlen=256)
        self.stats = EndpointStats()

    def wait_for(self, cost: int, now: float, hedge: bool = False) -> float:
        """Seconds until this endpoint can take a request of ``cost`` tokens (0: now); a hedge may exceed
        the concurrency limit (it is rare and capped), never the quota, a cooldown or an open breaker."""
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
            limit = _header_float(headers, f"x-ratelimit-limit-{kind}")
            remaining = _header_float(headers, f"x-ratelimit-remaining-{kind}")
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


class Budget:
    """A cap on tokens or cost per run; requests reserve their worst case before they are sent."""

    def __init__(self, settings: DispatchSettings, models: Iterable[str]) -> None:
        self.max_tokens = settings.budget_tokens
        self.max_cost = settings.budget_cost
        self.prices = settings.prices
        if self.max_cost is not None:
            missing = sorted(set(models) - set(self.prices))
            if missing:
                raise ValueError(f"a cost budget needs prices for every model of the pool; missing {missing}")
        priced = [self.prices[m] for m in models if m in self.prices]
        self._worst = ModelPrice(
            prompt_per_1m=max((p.prompt_per_1m for p in priced), default=0.0),
            completion_per_1m=max((p.completion_per_1m for p in priced), default=0.0),
        )
        self.spent_tokens = 0
        self.spent_cost = 0.0
        self._reserved_tokens = 0
        self._reserved_cost = 0.0
        self.exhausted = False

    def reserve(self, request: LLMRequest) -> bool:
        cost = self._worst.cost(request.prompt_tokens, request.max_tokens)
        if (self.max_tokens is not None and self.spent_tokens + self._reserved_tokens + request.cost > self.max_tokens) or (
            self.max_cost is not None and self.spent_cost + self._reserved_cost + cost > self.max_cost
        ):
            self.exhausted = True
            return False
        self._reserved_tokens += request.cost
        self._reserved_cost += cost
        return True

    def settle(self, request: LLMRequest, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Release the reservation and charge what the attempt used (a lost attempt: its prompt)."""
        self._reserved_tokens -= request.cost
        self._reserved_cost -= self._worst.cost(request.prompt_tokens, request.max_tokens)
        self.spent_tokens += prompt_tokens + completion_tokens
        price = self.prices.get(model)
        if price is not None:
            self.spent_cost += price.cost(prompt_tokens, completion_tokens)


@dataclass
class DispatchStats:
    requests: int = 0  # HTTP attempts, hedges included
    ok: int = 0
    errors: int = 0
    retries: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    hedges: int = 0
    hedge_wins: int = 0
    unfinished: int = 0  # started but stopped by the budget: no row, a rerun asks again
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_seconds: float = 0.0
    budget_exhausted: int = 0  # 1: the budget stopped dispatch (counts stay summable across tasks and rounds)
    budget_spent_tokens: int = 0
    budget_spent_cost: float = 0.0
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "timeouts": self.timeouts,
            "hedges": self.hedges,
            "hedge_wins": self.hedge_wins,
            "unfinished": self.unfinished,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "wall_seconds": round(self.wall_seconds, 3),
            "budget_exhausted": self.budget_exhausted,
            "budget_spent_tokens": self.budget_spent_tokens,
            "budget_spent_cost": round(self.budget_spent_cost, 6),
            "endpoints": {name: vars(stats) for name, stats in self.endpoints.items()},
        }


@dataclass
class _Outcome:
    """One HTTP attempt: ``kind`` is ok, rate_limited, retry (5xx, timeout, broken answer) or fatal."""

    kind: str
    state: EndpointState
    started: float
    body: dict | None = None
    error: str = ""
    hedge: bool = False
    settled: bool = False  # already charged to the budget


class Dispatcher:
    """Sends requests to the pool; ``on_result`` receives one ``llm_responses`` row per request."""

    def __init__(self, endpoints: list[Endpoint], settings: DispatchSettings | None = None) -> None:
        self.settings = settings or DispatchSettings()
        self._endpoints = endpoints
        self._rng = random.Random(self.settings.seed)
        self.states: list[EndpointState] = []
        self.stats = DispatchStats()
        self.budget = Budget(self.settings, {e.model for e in endpoints})
        self._waiters: deque[asyncio.Future] = deque()
        self._stopping = False

    def stop(self) -> None:
        """Finish the requests in flight, send nothing new (a request waiting for quota ends without a row)."""
        self._stopping = True
        while self._waiters:
            _wake(self._waiters.popleft())

    def _open(self) -> None:
        """One aiohttp session per endpoint: a plain OpenAI-compatible POST costs a tenth of the CPU the
        OpenAI client spends building and parsing the same call, which decides requests/s per process."""
        self.states = [
            EndpointState(
                endpoint,
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), json_serialize=json.dumps),
                self.settings,
            )
            for endpoint in self._endpoints
        ]
        self.stats.endpoints = {s.endpoint.name: s.stats for s in self.states}

    # ------------------------------------------------------------------ choosing an endpoint

    def _choose(self, cost: int, avoid: set[str], now: float, hedge: bool = False) -> tuple[EndpointState | None, float]:
        waits = [(state.wait_for(cost, now, hedge), state) for state in self.states]
        candidates = [(w, s) for w, s in waits if s.endpoint.name not in avoid] or waits
        ready = [s for w, s in candidates if w == 0.0]
        if ready:
            return max(ready, key=lambda s: s.headroom(now)), 0.0
        return None, min(w for w, _ in candidates)

    async def _acquire(self, cost: int, avoid: set[str]) -> tuple[EndpointState, list[float]] | None:
        """The best endpoint once one can take the request, already charged (choice and charge are one
        step, so concurrent workers never see the same free quota); None once dispatch is stopping."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            now = time.monotonic()
            state, wait = self._choose(cost, avoid, now)
            if state is not None:
                return state, state.reserve(cost, now)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            timer = loop.call_later(min(wait, 1.0), _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
        return None

    def _release(self, state: EndpointState) -> None:
        state.in_flight -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    # ------------------------------------------------------------------ one HTTP attempt

    def _payload(self, request: LLMRequest, endpoint: Endpoint) -> dict:
        payload = {
            "model": endpoint.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.response_format and endpoint.structured_outputs:
            payload["response_format"] = request.response_format
        return payload

    async def _attempt(self, request: LLMRequest, state: EndpointState, charge: list[float], hedge: bool = False) -> _Outcome:
        started = time.monotonic()
        name = state.endpoint.name
        timeout = state.timeout_for(request.cost)
        try:
            async with state.session.post(
                state.url,
                json=self._payload(request, state.endpoint),
                headers=state.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status, headers, content = response.status, response.headers, await response.read()
            if status == 429:
                now = time.monotonic()
                state.stats.rate_limited += 1
                state.on_headers(headers, now)
                state.tpm.correct(charge, 0)  # a refused request is not charged
                pause = retry_after_seconds(headers) or self._backoff(1)
                # wake when the provider said, not seconds later: the capacity that frees then goes to whoever
                # asks first, and a process that holds the window refills its own expiring charges at once
                state.on_rate_limited(now, pause + self._rng.uniform(0.0, min(0.1, 0.1 * pause)))
                return _Outcome("rate_limited", state, started, error=f"429 rate limited by {name}", hedge=hedge)
            if status != 200:
                state.stats.errors += 1
                error = f"HTTP {status} from {name}: {_error_message(content)}"
                if status < 500 and status not in (408, 409):
                    return _Outcome("fatal", state, started, error=error, hedge=hedge)
                state.on_failure(time.monotonic(), self._backoff(state.failures + 1))
                return _Outcome("retry", state, started, error=error, hedge=hedge)
            body = json.loads(content)
            choice = body["choices"][0]
            if not isinstance(choice["message"]["content"], str):
                raise TypeError("message.content is not a string")
        except asyncio.TimeoutError:
            state.stats.errors += 1
            state.stats.timeouts += 1
            self.stats.timeouts += 1
            state.on_failure(time.monotonic(), self._backoff(state.failures + 1))
            return _Outcome("retry", state, started, error=f"timed out after {timeout:.1f}s on {name}", hedge=hedge)
        except (aiohttp.ClientError, ValueError, KeyError, IndexError, TypeError) as exc:
            state.stats.errors += 1
            state.on_failure(time.monotonic(), self._backoff(state.failures + 1), overload=False)
            return _Outcome("retry", state, started, error=f"{type(exc).__name__} from {name}: {str(exc)[:200]}", hedge=hedge)
        finally:
            self._release(state)
        now = time.monotonic()
        state.on_headers(headers, now)
        usage = body.get("usage") or {}
        if usage.get("prompt_tokens") is not None:
            used_completion = usage.get("completion_tokens") if state.endpoint.refund_unused else None
            state.tpm.correct(charge, usage["prompt_tokens"] + (used_completion if used_completion is not None else request.max_tokens))
        state.on_success(now - started, now)
        return _Outcome("ok", state, started, body=body, hedge=hedge)

    async def _hedged(self, request: LLMRequest, state: EndpointState, charge, avoid: set[str]) -> _Outcome:
        """The attempt, plus one duplicate on the best other endpoint if it straggles; the first answer wins."""
        first = asyncio.ensure_future(self._attempt(request, state, charge))
        delay = state.hedge_after()
        if delay is None or self.stats.hedges >= self.settings.hedge_max_share * max(20, self.stats.ok):
            return await first
        done, _ = await asyncio.wait({first}, timeout=delay)
        if done:
            return first.result()
        now = time.monotonic()
        other, _ = self._choose(request.cost, avoid | {state.endpoint.name}, now, hedge=True)
        if other is None or not self.budget.reserve(request):
            return await first
        self.stats.hedges += 1
        other.stats.hedges += 1
        second = asyncio.ensure_future(self._attempt(request, other, other.reserve(request.cost, now), hedge=True))
        models = {first: state.endpoint.model, second: other.endpoint.model}
        pending = {first, second}
        outcome = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                result = task.result()
                self._settle(request, result)
                result.settled = True
                if outcome is None or (result.kind == "ok" and outcome.kind != "ok"):
                    outcome = result
            if outcome is not None and outcome.kind == "ok":
                break
        for task in pending:  # the loser: cancelled, its prompt counted against the budget
            task.cancel()
            self.budget.settle(request, models[task], request.prompt_tokens, 0)
        if outcome.hedge and outcome.kind == "ok":
            self.stats.hedge_wins += 1
        return outcome

    def _settle(self, request: LLMRequest, outcome: _Outcome) -> None:
        """Charge an attempt to the budget: its usage, or its prompt if the provider may have billed it."""
        if outcome.kind == "ok":
            prompt, completion = _usage(request, outcome.body)
        else:
            prompt = request.prompt_tokens if "timed out" in outcome.error else 0
            completion = 0
        self.budget.settle(request, outcome.state.endpoint.model, prompt, completion)

    # ------------------------------------------------------------------ one request, all attempts

    async def _execute(self, request: LLMRequest) -> dict | None:
        attempts = rate_limited = 0
        error = ""
        avoid: set[str] = set()
        while attempts < self.settings.max_attempts:
            reserved = self.budget.reserve(request)
            if not reserved:
                self.stop()
            acquired = await self._acquire(request.cost, avoid) if not self._stopping else None
            if acquired is None:  # stopped (budget or caller): no row, so a rerun asks again
                if reserved:
                    self.budget.settle(request, "", 0, 0)
                self.stats.requests += attempts
                self.stats.unfinished += 1
                return None
            attempts += 1
            outcome = await self._hedged(request, *acquired, avoid)
            if not outcome.settled:
                self._settle(request, outcome)
            if outcome.kind == "ok":
                return self._row(request, outcome, None, attempts, rate_limited)
            if outcome.kind == "fatal":
                return self._row(request, outcome, outcome.error, attempts, rate_limited)
            error = outcome.error
            avoid = {outcome.state.endpoint.name}
            if outcome.kind == "rate_limited":
                rate_limited += 1
            elif attempts < self.settings.max_attempts:
                await asyncio.sleep(self._backoff(attempts) * 0.25)  # jitter: retries do not arrive in waves
        return self._row(request, None, f"gave up after {attempts} attempts: {error}", attempts, rate_limited)

    def _row(self, request: LLMRequest, outcome: _Outcome | None, error: str | None, attempts: int, rate_limited: int) -> dict:
        body = outcome.body if outcome is not None else None
        state = outcome.state if outcome is not None else None
        choice = body["choices"][0] if body else None
        raw_text = choice["message"]["content"] if choice else None
        prompt_tokens, completion_tokens = _usage(request, body) if body is not None else (0, 0)
        latency_ms = (time.monotonic() - outcome.started) * 1000.0 if outcome is not None else None
        self.stats.requests += attempts
        self.stats.retries += attempts - 1
        self.stats.rate_limited += rate_limited
        if body is not None:
            self.stats.ok += 1
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
            state.stats.ok += 1
            state.stats.prompt_tokens += prompt_tokens
            state.stats.completion_tokens += completion_tokens
            state.stats.latency_ms_total += latency_ms
        else:
            self.stats.errors += 1
        return {
            "request_id": request.request_id,
            "week_start": request.week_start,
            "conversation_ids": list(request.conversation_ids),
            "classifiers": list(request.classifiers),
            "prompt_name": request.prompt_name,
            "prompt_version": request.prompt_version,
            "model": state.endpoint.model if state else None,
            "endpoint": state.endpoint.name if state else None,
            "status": STATUS_OK if body is not None else STATUS_ERROR,
            "error": error,
            "finish_reason": choice.get("finish_reason") if choice else None,
            "raw_text": raw_text,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": latency_ms,
            "attempts": attempts,
            "rate_limited": rate_limited,
            "created_at": dt.datetime.now(dt.timezone.utc),
            "strategy": request.strategy,
        }

    async def run(self, requests: Iterable[LLMRequest], on_result: Callable[[dict], None]) -> DispatchStats:
        """Dispatch everything (or until ``stop``); returns totals. ``on_result`` gets one row per finished request."""
        self._open()
        started = time.monotonic()
        source: Iterator[LLMRequest] = iter(requests)

        async def worker() -> None:
            for request in source:
                if self._stopping:
                    return
                row = await self._execute(request)
                if row is not None:
                    on_result(row)

        n_workers = min(1024, sum(e.max_concurrency for e in self._endpoints))
        try:
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            for state in self.states:
                await state.session.close()
            self.stats.wall_seconds = time.monotonic() - started
            self.stats.budget_exhausted = int(self.budget.exhausted)
            self.stats.budget_spent_tokens = self.budget.spent_tokens
            self.stats.budget_spent_cost = self.budget.spent_cost
        return self.stats


def _usage(request: LLMRequest, body: dict) -> tuple[int, int]:
    """(prompt, completion) tokens of an answer; without a usage object, our own count, so budgets and
    totals stay meaningful."""
    usage = body.get("usage") or {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return (
        int(prompt) if prompt is not None else request.prompt_tokens,
        int(completion) if completion is not None else count_tokens(body["choices"][0]["message"]["content"]),
    )


def _error_message(content: bytes) -> str:
    """The provider's error message (never the request: it may hold conversation text)."""
    try:
        return str(json.loads(content)["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return content[:200].decode("utf-8", "replace")


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def budget_summary(totals: dict, max_tokens: int | None, max_cost: float | None) -> dict:
    """What a run's budget allowed and what it spent (``totals`` is ``DispatchStats.as_dict()``)."""
    return {
        "max_tokens": max_tokens,
        "max_cost": max_cost,
        "spent_tokens": totals["budget_spent_tokens"],
        "spent_cost": totals["budget_spent_cost"],
        "exhausted": bool(totals["budget_exhausted"]),
        "unfinished_requests": totals["unfinished"],
    }
