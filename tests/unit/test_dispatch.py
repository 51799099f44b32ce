"""The async dispatcher (semtel_dagster.core.llm.dispatch) over real HTTP: the simulator, small scripted
aiohttp servers for faults the simulator does not inject, and closed ports."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web
from scripted_http import plain_requests

from semtel_dagster.core.classify.parse import parse_answer
from semtel_dagster.core.classify.plan import ClassifyPlan, run_dispatch
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.llm.dispatch import Dispatcher, DispatchFailed
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.quota import QuotaWindow, parse_duration, retry_after_seconds
from semtel_dagster.core.llm.requests import STATUS_ERROR, STATUS_OK, LLMRequest, request_id
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
WEEK = dt.date(2024, 1, 1)
FAST = DispatchSettings(max_attempts=4, backoff_base_s=0.02, backoff_max_s=0.1, breaker_open_s=0.05, breaker_max_open_s=0.1)

TEXTS = [
    "User: My Python function throws a KeyError, how do I fix it?",
    "User: Give me a recipe for banana bread.",
    "User: Plan a three-day trip to Rome.",
    "User: Solve 3x + 7 = 22.",
    "User: Translate 'good morning' into Spanish.",
    "User: Why is the sky blue?",
    "User: hi",
    "User: Write a poem about rain.",
]


@pytest.fixture(scope="module")
def topic():
    return load_classifiers(PROMPTS, names=["topic"])["topic"]


def _requests(classifier, n: int) -> list[LLMRequest]:
    out = []
    for i in range(n):
        cid = f"c{i:03d}"
        out.append(
            LLMRequest(
                request_id=request_id([cid], [classifier.name], classifier.version),
                week_start=WEEK,
                conversation_ids=(cid,),
                classifiers=(classifier.name,),
                prompt_name=classifier.name,
                prompt_version=classifier.version,
                messages=classifier.messages(TEXTS[i % len(TEXTS)]),
                response_format=classifier.response_format(),
                max_tokens=classifier.max_tokens,
                temperature=classifier.temperature,
                prompt_tokens=600,
            )
        )
    return out


def _run(endpoints, requests, settings=FAST):
    dispatcher = Dispatcher(endpoints, settings)
    rows: list[dict] = []
    stats = asyncio.run(dispatcher.run(requests, rows.append))
    return rows, stats


def _endpoint(name, base_url, **kw):
    return Endpoint(name=name, base_url=base_url, model=kw.pop("model", "gpt-4o-mini"), timeout_s=kw.pop("timeout_s", 5), **kw)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class ScriptedServer:
    """A real aiohttp server answering like OpenAI after a scripted list of failures.

    ``script`` is a list of (status, headers) returned for the first calls; afterwards every call is
    answered 200 (or, with ``always``, with that failure forever). Arrival times are recorded.
    """

    def __init__(self, script=(), always=None):
        self.script = list(script)
        self.always = always
        self.arrivals: list[float] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _chat(self, request):
        body = await request.json()
        self.arrivals.append(time.monotonic())
        failure = self.script.pop(0) if self.script else self.always
        if failure is not None:
            status, headers = failure
            return web.json_response(
                {"error": {"message": f"scripted {status}", "type": "server_error", "param": None, "code": None}},
                status=status,
                headers=headers,
            )
        return web.json_response(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": '{"label": "math"}'}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
            }
        )

    def _serve(self):
        async def main():
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        asyncio.run(main())

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# ----------------------------------------------------------------------------- pure units


def test_request_id_stability():
    rid = request_id(["b", "a"], ["topic", "intent"], "v1")
    assert rid == request_id(["a", "b"], ["intent", "topic"], "v1")
    assert len(rid) == 24 and all(ch in "0123456789abcdef" for ch in rid)
    assert rid != request_id(["a", "b"], ["intent", "topic"], "v2")
    assert rid != request_id(["a"], ["intent", "topic"], "v1")
    assert rid != request_id(["a", "b"], ["topic"], "v1")
    # fixed values: ids stored in llm_responses must keep matching across releases and processes
    assert rid == "183c507cba7526d81962b46c"
    assert request_id(("c1",), ("topic",), "abc") == "726f84204c3b3461ed90a877"


@pytest.mark.parametrize(
    "value,seconds",
    [
        ("6m0s", 360.0),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("2", 2.0),
        ("0.5", 0.5),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


def test_retry_after_seconds():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after_seconds({}) is None


def test_quota_window_mirrors_a_sliding_minute():
    window = QuotaWindow(600, declared=True)
    assert window.wait_for(100, now=0.0) == 0.0
    charge = window.take(500, now=0.0)
    assert window.wait_for(100, now=1.0) == 0.0
    window.take(100, now=1.0)
    # full: the first charge leaves the window 60 s (+ margin) after it was sent
    assert window.wait_for(100, now=2.0) == pytest.approx(60.25 - 2.0)
    window.correct(charge, 400)  # the provider counted fewer tokens than we estimated
    assert window.wait_for(100, now=2.0) == 0.0
    assert window.free(now=61.0) == pytest.approx(500)
    # headers: what the provider counts beyond our own charges is another process's share
    window.observe(limit=600, remaining=100, now=61.0)
    assert window.external(61.0) == pytest.approx(400)
    assert window.external(91.0) == pytest.approx(200)  # assumed to leave the window within a minute
    # a declared share of a provider quota shared with other processes: both bounds hold
    share = QuotaWindow(300, declared=True)
    share.take(100, now=0.0)
    share.observe(limit=1200, remaining=500, now=0.0)  # others use 600 of the provider's 1200
    assert share.free(now=0.0) == pytest.approx(200)  # our share's bound (300 - 100), not the provider's 500
    share.observe(limit=1200, remaining=50, now=0.0)  # others now use 1050
    assert share.free(now=0.0) == pytest.approx(50)
    learned = QuotaWindow(100, declared=False)
    learned.observe(limit=30, remaining=None, now=0.0)
    assert learned.limit == 30


# ----------------------------------------------------------------------------- simulator


def test_all_answered_against_simulator(topic):
    cfg = SimConfig(endpoints=[SimEndpointConfig(name="sim", model="gpt-4o-mini", latency_ms=1.0)])
    requests = _requests(topic, 8)
    with SimulatorThread(cfg) as sim:
        rows, stats = _run([_endpoint("sim", sim.base_url("sim"))], requests)
        served = sim.stats()["endpoints"]["sim"]
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)
    assert {r["status"] for r in rows} == {STATUS_OK}
    assert all(r["endpoint"] == "sim" and r["model"] == "gpt-4o-mini" and r["attempts"] == 1 for r in rows)
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 and r["latency_ms"] > 0 for r in rows)
    for row in rows:
        assert parse_answer(row["raw_text"], topic).label in topic.labels
    assert (stats.requests, stats.ok, stats.errors, stats.retries, stats.rate_limited) == (8, 8, 0, 0, 0)
    assert stats.prompt_tokens == sum(r["prompt_tokens"] for r in rows) == served["prompt_tokens"]
    assert stats.completion_tokens == sum(r["completion_tokens"] for r in rows) == served["completion_tokens"]
    assert served["requests"] == 8
    assert stats.endpoints["sim"].ok == 8


def test_undeclared_rpm_429_moves_work_and_respects_retry_after(topic):
    """The sim limits ``tight`` to 2 rpm (not declared in the Endpoint): the first wave gets 429s
    with a ~60 s Retry-After; those requests move to ``roomy`` and ``tight`` is not called again."""
    cfg = SimConfig(
        endpoints=[
            SimEndpointConfig(name="tight", model="gpt-4o-mini", rpm=2, latency_ms=20.0),
            SimEndpointConfig(name="roomy", model="gpt-4o-mini", latency_ms=1.0),
        ]
    )
    requests = _requests(topic, 8)
    with SimulatorThread(cfg) as sim:
        endpoints = [_endpoint("tight", sim.base_url("tight")), _endpoint("roomy", sim.base_url("roomy"))]
        started = time.monotonic()
        rows, stats = _run(endpoints, requests)
        elapsed = time.monotonic() - started
        served = sim.stats()["endpoints"]
    assert len(rows) == 8 and {r["status"] for r in rows} == {STATUS_OK}
    assert served["tight"]["rate_limited"] >= 1
    assert served["tight"]["requests"] <= 2
    # every 429 the server sent was seen by exactly one row, and none was retried on tight
    assert sum(r["rate_limited"] for r in rows) == stats.rate_limited == served["tight"]["rate_limited"]
    assert stats.endpoints["tight"].rate_limited == served["tight"]["rate_limited"]
    limited = [r for r in rows if r["rate_limited"]]
    assert limited and all(r["endpoint"] == "roomy" and r["attempts"] == 2 for r in limited)
    assert served["roomy"]["requests"] + served["tight"]["requests"] == 8
    assert elapsed < 10


def test_run_dispatch_streams_every_row_once(topic):
    cfg = SimConfig(endpoints=[SimEndpointConfig(name="sim", latency_ms=5.0)])
    requests = _requests(topic, 7)
    batches: list[list[dict]] = []
    progress: list[int] = []
    with SimulatorThread(cfg) as sim:
        stats = run_dispatch(
            ClassifyPlan(total=7, answered=0, to_send=requests),
            Dispatcher([_endpoint("sim", sim.base_url())], FAST),
            batches.append,
            flush_rows=3,
            flush_seconds=0.05,
            on_progress=lambda done, _stats: progress.append(done),
        )
    ids = [row["request_id"] for batch in batches for row in batch]
    assert sorted(ids) == sorted(r.request_id for r in requests)
    assert all(batch for batch in batches)
    assert progress == list(range(1, 8))
    assert stats.ok == 7


# ----------------------------------------------------------------------------- scripted faults


def test_retry_after_is_honoured():
    with ScriptedServer(script=[(429, {"Retry-After": "1"})]) as server:
        rows, stats = _run([_endpoint("one", server.base_url)], _requests_plain(1))
        arrivals = list(server.arrivals)
    (row,) = rows
    assert row["status"] == STATUS_OK and row["attempts"] == 2 and row["rate_limited"] == 1
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.95  # waited for Retry-After, not the (much shorter) backoff
    assert stats.rate_limited == 1 and stats.retries == 1


def test_server_error_twice_then_success():
    with ScriptedServer(script=[(500, {}), (503, {})]) as server:
        rows, stats = _run([_endpoint("flaky", server.base_url)], _requests_plain(1))
        calls = len(server.arrivals)
    (row,) = rows
    assert row["status"] == STATUS_OK
    assert row["attempts"] == 3 and row["rate_limited"] == 0
    assert row["raw_text"] == '{"label": "math"}'
    assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 4)
    assert calls == 3
    assert (stats.requests, stats.retries, stats.ok, stats.errors) == (3, 2, 1, 0)
    assert stats.endpoints["flaky"].errors == 2


def test_client_error_is_a_configuration_error_never_retried():
    with ScriptedServer(always=(400, {})) as server:
        with pytest.raises(DispatchFailed, match="endpoint strict is misconfigured: HTTP 400 from strict: scripted 400"):
            _run([_endpoint("strict", server.base_url)], _requests_plain(20))
        calls = len(server.arrivals)
    assert 1 <= calls <= 4  # the first round trip (slow start) only: none retried, nothing sent after the refusal


def test_closed_port_falls_back_to_good_endpoint(topic):
    cfg = SimConfig(endpoints=[SimEndpointConfig(name="good", latency_ms=1.0)])
    requests = _requests(topic, 6)
    with SimulatorThread(cfg) as sim:
        endpoints = [_endpoint("dead", _closed_port_url()), _endpoint("good", sim.base_url("good"))]
        rows, stats = _run(endpoints, requests)
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)
    assert {r["status"] for r in rows} == {STATUS_OK}
    assert {r["endpoint"] for r in rows} == {"good"}
    assert stats.ok == 6 and stats.errors == 0
    assert stats.endpoints["dead"].errors == stats.retries >= 1
    assert stats.endpoints["dead"].ok == 0


def test_all_endpoints_failing_yields_error_rows():
    settings = DispatchSettings(
        max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.02, breaker_open_s=0.05, breaker_max_open_s=0.1
    )
    requests = _requests_plain(5)
    with ScriptedServer(always=(500, {})) as server:
        endpoints = [_endpoint("dead", _closed_port_url()), _endpoint("broken", server.base_url)]
        rows, stats = _run(endpoints, requests, settings)
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)  # nothing dropped
    for row in rows:
        assert row["status"] == STATUS_ERROR
        assert row["attempts"] == 3
        assert row["error"].startswith("gave up after 3 attempts: ")
        assert row["endpoint"] is None and row["model"] is None and row["raw_text"] is None
    assert (stats.ok, stats.errors, stats.requests, stats.retries) == (0, 5, 15, 10)


def _requests_plain(n: int) -> list[LLMRequest]:
    return plain_requests(n, week=WEEK)
