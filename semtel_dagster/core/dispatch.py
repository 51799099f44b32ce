"""Asynchronous LLM dispatch over a pool of OpenAI-compatible endpoints.

Each endpoint has its own rate control (RPM and TPM buckets charged the way Azure counts: prompt
tokens + ``max_tokens`` on arrival, corrected live from ``x-ratelimit-*`` headers), its own adaptive
concurrency (additive increase, multiplicative decrease on 429/5xx/timeouts) and a cooldown that honors
``Retry-After``. A failed request is retried on the best other endpoint with jittered backoff; one that
still fails is returned as an ``error`` row, never dropped. Workers pull requests from an iterator, so
millions of queued requests are never materialized at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import httpx
import openai

from semtel_dagster.core.endpoints import Endpoint

STATUS_OK = "ok"
STATUS_ERROR = "error"


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
    seed: int = 0


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


def retry_after_seconds(headers: httpx.Headers | dict) -> float | None:
    if (ms := parse_duration(headers.get("retry-after-ms"))) is not None:
        return ms / 1000.0
    return parse_duration(headers.get("retry-after"))


class RateBucket:
    """Per-minute quota as a token bucket that refills continuously; can go into debt on corrections."""

    def __init__(self, per_minute: float, declared: bool) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.declared = declared
        self._stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.capacity / 60.0)
        self._stamp = now

    def wait_for(self, amount: float, now: float) -> float:
        self._refill(now)
        needed = min(amount, self.capacity) - self.level
        return 0.0 if needed <= 0 else needed * 60.0 / self.capacity

    def take(self, amount: float) -> None:
        self.level -= amount

    def observe(self, limit: float | None, remaining: float | None, now: float) -> None:
        """The provider's own view wins: learn an undeclared limit, never believe we have more left."""
        self._refill(now)
        if limit and not self.declared:
            self.capacity = float(limit)
        if remaining is not None:
            self.level = min(self.level, float(remaining))


def _header_float(headers: httpx.Headers, name: str) -> float | None:
    try:
        return float(headers[name]) if name in headers else None
    except ValueError:
        return None


@dataclass
class EndpointStats:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_total: float = 0.0


class EndpointState:
    """Live view of one endpoint: buckets, concurrency limit, cooldown, counters."""

    def __init__(self, endpoint: Endpoint, client: openai.AsyncOpenAI) -> None:
        self.endpoint = endpoint
        self.client = client
        self.rpm = RateBucket(endpoint.rpm, True) if endpoint.rpm else None
        self.tpm = RateBucket(endpoint.tpm, True) if endpoint.tpm else None
        self.limit = float(min(4, endpoint.max_concurrency))
        self.in_flight = 0
        self.cooldown_until = 0.0
        self.congested = False  # slow start (doubling) until the first sign of overload, then AIMD
        self.stats = EndpointStats()

    def wait_for(self, cost: int, now: float) -> float:
        """Seconds until this endpoint can take a request of ``cost`` tokens (0: now)."""
        waits = [self.cooldown_until - now]
        if self.in_flight >= int(self.limit):
            waits.append(0.02)
        if self.rpm:
            waits.append(self.rpm.wait_for(1, now))
        if self.tpm:
            waits.append(self.tpm.wait_for(cost, now))
        return max(0.0, *waits)

    def headroom(self, now: float) -> float:
        free = 1.0 - self.in_flight / max(1.0, self.limit)
        token_share = self.tpm.level / self.tpm.capacity if self.tpm else 1.0
        capacity = self.tpm.capacity if self.tpm else 1e6
        return free * max(token_share, 0.01) * capacity

    def reserve(self, cost: int) -> None:
        self.in_flight += 1
        self.stats.requests += 1
        if self.rpm:
            self.rpm.take(1)
        if self.tpm:
            self.tpm.take(cost)

    def on_headers(self, headers: httpx.Headers, now: float) -> None:
        for bucket_name, kind in (("rpm", "requests"), ("tpm", "tokens")):
            limit = _header_float(headers, f"x-ratelimit-limit-{kind}")
            remaining = _header_float(headers, f"x-ratelimit-remaining-{kind}")
            bucket = getattr(self, bucket_name)
            if bucket is None and limit:
                bucket = RateBucket(limit, declared=False)
                setattr(self, bucket_name, bucket)
            if bucket is not None:
                bucket.observe(limit, remaining, now)

    def on_success(self) -> None:
        step = 1.0 / max(1.0, self.limit) if self.congested else 1.0
        self.limit = min(float(self.endpoint.max_concurrency), self.limit + step)

    def on_failure(self, now: float, pause_s: float) -> None:
        self.congested = True
        self.limit = max(1.0, self.limit * 0.7)
        self.cooldown_until = max(self.cooldown_until, now + pause_s)


@dataclass
class DispatchStats:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    retries: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_seconds: float = 0.0
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "wall_seconds": round(self.wall_seconds, 3),
            "endpoints": {name: vars(stats) for name, stats in self.endpoints.items()},
        }


class Dispatcher:
    """Sends requests to the pool; ``on_result`` receives one ``llm_responses`` row per request."""

    def __init__(self, endpoints: list[Endpoint], settings: DispatchSettings | None = None) -> None:
        self.settings = settings or DispatchSettings()
        self._endpoints = endpoints
        self._rng = random.Random(self.settings.seed)
        self.states: list[EndpointState] = []
        self.stats = DispatchStats()

    def _open(self) -> None:
        limits = httpx.Limits(max_connections=max(e.max_concurrency for e in self._endpoints) * 2)
        self.states = [
            EndpointState(
                endpoint,
                openai.AsyncOpenAI(
                    base_url=endpoint.base_url,
                    api_key=endpoint.api_key(),
                    max_retries=0,
                    http_client=httpx.AsyncClient(limits=limits, timeout=endpoint.timeout_s),
                ),
            )
            for endpoint in self._endpoints
        ]
        self.stats.endpoints = {s.endpoint.name: s.stats for s in self.states}

    async def _acquire(self, cost: int, avoid: str | None) -> EndpointState:
        while True:
            now = time.monotonic()
            waits = {state: state.wait_for(cost, now) for state in self.states}
            ready = [s for s, wait in waits.items() if wait == 0.0]
            preferred = [s for s in ready if s.endpoint.name != avoid] or ready
            if preferred:
                best = max(preferred, key=lambda s: s.headroom(now))
                best.reserve(cost)
                return best
            await asyncio.sleep(min(1.0, max(0.005, min(waits.values()))))

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    async def _execute(self, request: LLMRequest) -> dict:
        attempts = rate_limited = 0
        error = ""
        avoid: str | None = None
        while attempts < self.settings.max_attempts:
            state = await self._acquire(request.cost, avoid)
            attempts += 1
            started = time.monotonic()
            try:
                raw = await state.client.chat.completions.with_raw_response.create(
                    model=state.endpoint.model,
                    messages=request.messages,
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    timeout=state.endpoint.timeout_s,
                    **({"response_format": request.response_format} if request.response_format else {}),
                )
                completion = raw.parse()
            except openai.RateLimitError as exc:
                rate_limited += 1
                state.stats.rate_limited += 1
                state.on_headers(exc.response.headers, time.monotonic())
                pause = retry_after_seconds(exc.response.headers) or self._backoff(attempts)
                state.on_failure(time.monotonic(), pause + self._rng.uniform(0, 0.1 * pause))
                error, avoid = f"429 rate limited by {state.endpoint.name}", state.endpoint.name
                continue
            except openai.APIStatusError as exc:
                state.stats.errors += 1
                error = f"HTTP {exc.status_code} from {state.endpoint.name}: {str(exc.message)[:200]}"
                if exc.status_code < 500 and exc.status_code not in (408, 409):
                    return self._row(request, state, None, error, attempts, rate_limited, started)
                state.on_failure(time.monotonic(), self._backoff(attempts))
                avoid = state.endpoint.name
                continue
            except (openai.APIConnectionError, openai.APITimeoutError, json.JSONDecodeError) as exc:
                state.stats.errors += 1
                error = f"{type(exc).__name__} from {state.endpoint.name}: {str(exc)[:200]}"
                state.on_failure(time.monotonic(), self._backoff(attempts))
                avoid = state.endpoint.name
                continue
            finally:
                state.in_flight -= 1
            state.on_headers(raw.headers, time.monotonic())
            state.on_success()
            return self._row(request, state, completion, None, attempts, rate_limited, started)
        return self._row(request, None, None, f"gave up after {attempts} attempts: {error}", attempts, rate_limited, None)

    def _row(self, request, state, completion, error, attempts, rate_limited, started) -> dict:
        usage = getattr(completion, "usage", None)
        choice = completion.choices[0] if completion is not None and completion.choices else None
        prompt_tokens = int(usage.prompt_tokens) if usage else 0
        completion_tokens = int(usage.completion_tokens) if usage else 0
        latency_ms = (time.monotonic() - started) * 1000.0 if started is not None else None
        self.stats.requests += attempts
        self.stats.retries += attempts - 1
        self.stats.rate_limited += rate_limited
        if completion is not None:
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
            "status": STATUS_OK if completion is not None else STATUS_ERROR,
            "error": error,
            "finish_reason": choice.finish_reason if choice else None,
            "raw_text": (choice.message.content or "") if choice else None,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": latency_ms,
            "attempts": attempts,
            "rate_limited": rate_limited,
            "created_at": dt.datetime.now(dt.timezone.utc),
        }

    async def run(self, requests: Iterable[LLMRequest], on_result: Callable[[dict], None]) -> DispatchStats:
        """Dispatch everything; returns totals. ``on_result`` is called once per request."""
        self._open()
        started = time.monotonic()
        source: Iterator[LLMRequest] = iter(requests)

        async def worker() -> None:
            for request in source:
                on_result(await self._execute(request))

        n_workers = min(1024, sum(e.max_concurrency for e in self._endpoints))
        try:
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            for state in self.states:
                await state.client.close()
            self.stats.wall_seconds = time.monotonic() - started
        return self.stats
