"""Asynchronous LLM dispatch over a pool of OpenAI-compatible endpoints, at the rate limit.

Per endpoint: client-side mirrors of the provider's quotas (RPM and TPM over the minute and over the
short interval the provider enforces them in, declared or learned from 429s; charged the way Azure
counts: prompt tokens + ``max_tokens`` on arrival, corrected to the provider's count, refunded to actual
use where the endpoint says the provider does), kept honest by the ``x-ratelimit-*`` headers of every
response, which also reveal what other processes sharing the endpoint use (an AIMD share of a contended
quota makes uncoordinated processes converge to equal shares); a concurrency limit fitted from latency
versus requests in flight (a serial server settles at 1); timeouts counted from when the server starts
the work where it streams, else scaled to its observed pace (see ``stream``); a circuit breaker;
cooldowns that honor ``Retry-After``. Requests go to the ready endpoint with the most headroom; a failure is retried on
another endpoint with jittered backoff, up to a give-up time; a configuration error (see
``transport_errors``) or every endpoint failing for a while stops the run with a clear, redacted reason;
a straggler past a latency percentile gets one hedged duplicate whose loser is cancelled, so each
request yields exactly one row. An optional token or cost budget stops dispatch cleanly. Workers pull
requests from an iterator: millions of queued requests are never materialized at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from semtel_dagster.core.llm.budget import Budget
from semtel_dagster.core.llm.endpoint_state import EndpointState
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.quota import retry_after_seconds
from semtel_dagster.core.llm.redact import redact
from semtel_dagster.core.llm.requests import STATUS_ERROR, STATUS_OK, LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.stats import DispatchStats, count_timeout
from semtel_dagster.core.llm.stream import Deadline, StreamCutShort
from semtel_dagster.core.llm.transport import error_message
from semtel_dagster.core.llm.transport_errors import failure_kind
from semtel_dagster.core.prepare.tokens import count_tokens

_JITTER_MAX_S = 0.5
_POLL_S = 1.0  # how often a request waiting for an endpoint checks whether it should give up


class DispatchFailed(RuntimeError):
    """The run stopped early: an endpoint is misconfigured, or every endpoint kept failing. Rows of
    the requests that finished were delivered; the message (redacted) says what to fix."""


@dataclass
class _Outcome:
    """One HTTP attempt: ``kind`` is ok, rate_limited, retry (5xx, timeout, broken answer), fatal (this
    request cannot succeed) or config (the endpoint refuses every request as configured)."""

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
        self.failure: str | None = None  # why the run stopped early (redacted); run() then raises DispatchFailed
        self._failing_since: float | None = None

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

    async def _attempt(self, request: LLMRequest, state: EndpointState, charge: list[float], hedge: bool = False) -> _Outcome:
        started = time.monotonic()
        name = state.endpoint.name
        deadline = Deadline(state.limits(request.cost), state.transport.streams)

        def failed(kind: str, error: str, overload: bool = True) -> _Outcome:
            state.stats.errors += 1
            error = self._redact(error, state, request)
            if kind == "config":  # every request would fail the same way: fail fast, before anything else is sent
                state.misconfigured = True
                self._fail_run(f"endpoint {name} is misconfigured: {error}")
            if kind == "retry":
                state.last_error = error
                pause = min(self._backoff(state.failures + 1), self.settings.breaker_max_open_s)
                state.on_failure(time.monotonic(), pause, overload=overload)
            return _Outcome(kind, state, started, error=error, hedge=hedge)

        try:
            sent = await state.transport.headers()
            answer = await state.transport.post(state.session, request, sent, deadline)
            status, headers, content = answer.status, answer.headers, answer.content
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
            if 300 <= status < 400:
                target = urlsplit(headers.get("Location", ""))
                return failed(
                    "config",
                    f"HTTP {status} from {name}: redirect to {target.scheme}://{target.netloc} not followed; "
                    "set base_url to the address that answers",
                )
            if status == 401 and state.transport.refused(sent):
                return failed("retry", f"HTTP 401 from {name}: token refused, fetching a new one", overload=False)
            if answer.body is None:
                message = error_message(content)
                return failed(failure_kind(status, message), f"HTTP {status} from {name}: {message}")
            body = answer.body
        except TimeoutError:
            count_timeout(state.stats, deadline.phase)
            count_timeout(self.stats, deadline.phase)
            return failed("retry", deadline.timed_out(name))
        except StreamCutShort as exc:  # a serial server ending one stream for the next: overload
            return failed("retry", f"{type(exc).__name__} from {name}: {exc}")
        except (aiohttp.ClientError, ValueError, KeyError, IndexError, TypeError) as exc:
            return failed("retry", f"{type(exc).__name__} from {name}: {exc}", overload=False)
        finally:
            self._release(state)
        now = time.monotonic()
        state.on_headers(headers, now)
        usage = body.get("usage") or {}
        if usage.get("prompt_tokens") is not None:
            used_completion = usage.get("completion_tokens") if state.endpoint.refund_unused else None
            state.tpm.correct(
                charge, usage["prompt_tokens"] + (used_completion if used_completion is not None else request.max_tokens)
            )
        state.on_success(now - started, now)
        self._failing_since = None
        return _Outcome("ok", state, started, body=body, hedge=hedge)

    def _redact(self, error: str, state: EndpointState, request: LLMRequest) -> str:
        """Every error is stored and logged: without the endpoint's secrets or the request's text."""
        return redact(error, state.transport.secrets(), [str(m.get("content", "")) for m in request.messages])

    def _fail_run(self, reason: str) -> None:
        """Stop dispatch for good: requests in flight finish, nothing new is sent, ``run`` raises."""
        if self.failure is None:
            self.failure = reason
        self.stop()

    def _check_pool(self, now: float) -> None:
        """Every endpoint failing with no answer from any for ``stop_after_failing_s``: stop the run."""
        if not all(state.failures for state in self.states):
            self._failing_since = None
            return
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since >= self.settings.stop_after_failing_s:
            self._fail_run(f"every endpoint failing for {now - self._failing_since:.0f}s ({self._pool_errors()})")

    async def _hedged(self, request: LLMRequest, state: EndpointState, charge: list[float], avoid: set[str]) -> _Outcome:
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
        outcome: _Outcome | None = None
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
        assert outcome is not None  # the loop settled at least one attempt
        if outcome.hedge and outcome.kind == "ok":
            self.stats.hedge_wins += 1
        return outcome

    def _settle(self, request: LLMRequest, outcome: _Outcome) -> None:
        """Charge an attempt to the budget: its usage, or its prompt if the provider may have billed it."""
        if outcome.kind == "ok":
            assert outcome.body is not None  # an ok attempt always carries its answer
            prompt, completion, cached = usage_of(request, outcome.body)
        else:
            prompt = request.prompt_tokens if "timed out" in outcome.error else 0
            completion, cached = 0, None
        self.budget.settle(request, outcome.state.endpoint.model, prompt, completion, cached)

    # ------------------------------------------------------------------ one request, all attempts

    async def _execute(self, request: LLMRequest) -> dict | None:
        attempts = rate_limited = 0
        error = ""
        avoid: set[str] = set()
        first_failure: float | None = None
        while attempts < self.settings.max_attempts:
            reserved = self.budget.reserve(request)
            if not reserved:
                self.stop()
            acquired: tuple[EndpointState, list[float]] | None = None
            if not self._stopping:
                try:
                    acquired = await self._acquire_within(request, avoid, first_failure)
                except TimeoutError:  # failing and no endpoint free before the give-up time
                    if reserved:
                        self.budget.settle(request, "", 0, 0)
                    return self._row(request, None, self._gave_up(attempts, first_failure, error), attempts, rate_limited)
            if acquired is None:  # stopped (budget, caller or a failed run): no row, so a rerun asks again
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
            if outcome.kind == "config":  # the run is stopping (see _attempt): this request is left for a rerun
                continue
            error = outcome.error
            avoid = {outcome.state.endpoint.name}
            if outcome.kind == "rate_limited":
                rate_limited += 1
                continue
            now = time.monotonic()
            first_failure = first_failure or outcome.started  # 429s do not count: quota waits are paced, not failures
            self._check_pool(now)
            if now - first_failure >= self.settings.give_up_s:
                return self._row(request, None, self._gave_up(attempts, first_failure, error), attempts, rate_limited)
            if attempts < self.settings.max_attempts:
                await asyncio.sleep(min(_JITTER_MAX_S, self._backoff(attempts) * 0.25))  # retries do not arrive in waves
        return self._row(request, None, f"gave up after {attempts} attempts: {error}", attempts, rate_limited)

    async def _acquire_within(
        self, request: LLMRequest, avoid: set[str], first_failure: float | None
    ) -> tuple[EndpointState, list[float]] | None:
        """``_acquire``, bounded by the give-up time once the request has failed itself (429s aside). A
        request that has not failed waits: other requests' failures are not its own (a sole endpoint that
        fails some requests still answers the rest), and a pool where every endpoint fails is stopped as a
        whole after ``stop_after_failing_s``; a request waiting for quota waits as long as the quota says."""
        while True:
            since = first_failure
            left = self.settings.give_up_s - (time.monotonic() - since) if since is not None else _POLL_S
            if left <= 0:
                raise TimeoutError
            try:
                async with asyncio.timeout(min(left, _POLL_S)):  # inline, not a task: choosing stays immediate
                    return await self._acquire(request.cost, avoid)
            except TimeoutError:
                continue

    def _gave_up(self, attempts: int, first_failure: float | None, error: str) -> str:
        since = first_failure or time.monotonic()
        return f"gave up after {attempts} attempts in {time.monotonic() - since:.1f}s: {error or self._pool_errors()}"

    def _pool_errors(self) -> str:
        return "; ".join(f"{s.endpoint.name}: {s.last_error}" for s in self.states if s.last_error)

    def _row(self, request: LLMRequest, outcome: _Outcome | None, error: str | None, attempts: int, rate_limited: int) -> dict:
        body = outcome.body if outcome is not None else None
        state = outcome.state if outcome is not None else None
        prompt_tokens, completion_tokens, cached_tokens = usage_of(request, body) if body is not None else (0, 0, None)
        latency_ms = (time.monotonic() - outcome.started) * 1000.0 if outcome is not None else None
        self.stats.requests += attempts
        self.stats.retries += attempts - 1
        self.stats.rate_limited += rate_limited
        if outcome is not None and body is not None and latency_ms is not None:  # answered
            self.stats.ok += 1
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
            self.stats.cached_tokens += cached_tokens or 0
            answered = outcome.state.stats
            answered.ok += 1
            answered.prompt_tokens += prompt_tokens
            answered.completion_tokens += completion_tokens
            answered.cached_tokens += cached_tokens or 0
            answered.latency_ms_total += latency_ms
        else:
            self.stats.errors += 1
        return answer_row(
            request,
            state.endpoint if state else None,
            body,
            error,
            attempts=attempts,
            rate_limited=rate_limited,
            latency_ms=latency_ms,
            usage=(prompt_tokens, completion_tokens, cached_tokens),
        )

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
            if self.failure is not None:
                raise DispatchFailed(f"{self.failure}; answers received are saved, a rerun asks the rest again")
        finally:
            for state in self.states:
                await state.session.close()
            self.stats.wall_seconds = time.monotonic() - started
            self.stats.budget_exhausted = int(self.budget.exhausted)
            self.stats.budget_spent_tokens = self.budget.spent_tokens
            self.stats.budget_spent_cost = self.budget.spent_cost
        return self.stats


def answer_row(
    request: LLMRequest,
    endpoint: Endpoint | None,
    body: dict | None,
    error: str | None,
    *,
    attempts: int,
    rate_limited: int = 0,
    latency_ms: float | None = None,
    usage: tuple[int, int, int | None] = (0, 0, None),
) -> dict:
    """The ``llm_responses`` row of a finished request: ``body`` its completion, else ``error`` why not.
    Online calls and batch items write the same rows."""
    choice = body["choices"][0] if body else None
    return {
        "request_id": request.request_id,
        "week_start": request.week_start,
        "conversation_ids": list(request.conversation_ids),
        "classifiers": list(request.classifiers),
        "prompt_name": request.prompt_name,
        "prompt_version": request.prompt_version,
        "model": endpoint.model if endpoint else None,
        "endpoint": endpoint.name if endpoint else None,
        "status": STATUS_OK if body is not None else STATUS_ERROR,
        "error": error,
        "finish_reason": choice.get("finish_reason") if choice else None,
        "raw_text": choice["message"]["content"] if choice else None,
        "prompt_tokens": usage[0],
        "completion_tokens": usage[1],
        "cached_tokens": usage[2],
        "latency_ms": latency_ms,
        "attempts": attempts,
        "rate_limited": rate_limited,
        "created_at": dt.datetime.now(dt.UTC),
        "strategy": request.strategy,
    }


def usage_of(request: LLMRequest, body: dict) -> tuple[int, int, int | None]:
    """(prompt, completion, cached prompt) tokens of an answer; without a usage object, our own count, so
    budgets and totals stay meaningful. Cached tokens are None where the server does not say
    (``usage.prompt_tokens_details.cached_tokens``, as OpenAI and Azure report their prompt cache)."""
    usage = body.get("usage") or {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return (
        int(prompt) if prompt is not None else request.prompt_tokens,
        int(completion) if completion is not None else count_tokens(body["choices"][0]["message"]["content"]),
        int(cached) if cached is not None else None,
    )


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
