"""Streamed answers (semtel_dagster.core.llm.stream) over real HTTP to scripted servers: assembly and
usage, timeouts counted from when the server starts (queue, work, stall), mid-stream faults retried,
and ``stream: auto`` falling back where a server refuses to stream or cuts streams short."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from scripted_http import (
    USAGE,
    HandlerServer,
    answer_chunks,
    chunk,
    completion,
    open_stream,
    plain_requests,
    send_event,
    streaming,
)

from semtel_dagster.core.llm.dispatch import Dispatcher, DispatchFailed
from semtel_dagster.core.llm.endpoints import Endpoint, EndpointsFileError, SimEndpoint, parse_endpoints
from semtel_dagster.core.llm.requests import STATUS_ERROR, STATUS_OK
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.transport import Transport
from semtel_dagster.core.prepare.tokens import count_tokens

pytestmark = pytest.mark.timeout(30)

ANSWER = '{"label": "math"}'
FAST = dict(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.02, hedge_quantile=None)


def _endpoint(base_url: str, **fields) -> Endpoint:
    return Endpoint(name="s", base_url=base_url, model="m", **fields)


def _run(endpoint: Endpoint, n: int = 1, **settings):
    dispatcher = Dispatcher([endpoint], DispatchSettings(**{**FAST, **settings}))
    rows: list[dict] = []
    started = time.monotonic()
    asyncio.run(dispatcher.run(plain_requests(n), rows.append))
    return rows, dispatcher.stats, time.monotonic() - started


def test_streamed_answer_and_usage_are_assembled():
    """Azure's content-filter event (no choices), keep-alive comments and CRLF framing are read past."""

    async def azure_like(request, call):
        response = await open_stream(request)
        await send_event(response, {"id": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]})
        await response.write(b": ping\r\n\r\n")
        for data in answer_chunks(ANSWER, usage=True):
            await send_event(response, data)
        await send_event(response, "[DONE]")
        return response

    with HandlerServer(azure_like) as server:
        rows, stats, _ = _run(_endpoint(server.base_url), n=2)
        bodies = [c.body for c in server.calls]
    assert all(b["stream"] is True and b["stream_options"] == {"include_usage": True} for b in bodies)
    assert [r["raw_text"] for r in rows] == [ANSWER, ANSWER] and {r["finish_reason"] for r in rows} == {"stop"}
    assert rows[0]["prompt_tokens"] == USAGE["prompt_tokens"] and rows[0]["completion_tokens"] == USAGE["completion_tokens"]
    assert stats.prompt_tokens == 2 * USAGE["prompt_tokens"] and stats.retries == 0


def test_queued_longer_than_the_work_timeout_does_not_time_out_when_streamed():
    """The server holds each request 0.4 s before it starts (busy with others' work), over twice the
    0.15 s work timeout: streamed, the work's clock starts at the first event; plain, the same server
    times the request out (it has no requests of ours ahead to allow for)."""
    work = dict(timeout_s=0.15, timeout_base_s=0.15, timeout_per_1k_tokens_s=0.0)
    with HandlerServer(streaming(queued_s=0.4)) as server:
        rows, stats, _ = _run(_endpoint(server.base_url, **work), n=3)
        plain_rows, plain_stats, _ = _run(_endpoint(server.base_url, stream=False, **work), n=1, max_attempts=1)
    assert [r["status"] for r in rows] == [STATUS_OK] * 3 and stats.timeouts == 0 and stats.retries == 0
    assert [r["status"] for r in plain_rows] == [STATUS_ERROR] and plain_stats.timeouts == 1
    assert plain_stats.queue_timeouts == plain_stats.work_timeouts == 0  # a plain timeout cannot tell which
    assert "timed out after" in plain_rows[0]["error"] and "(queue)" not in plain_rows[0]["error"]


def test_a_stream_that_starts_then_stalls_times_out_by_the_stall_limit():
    async def stalls(request, call):
        response = await open_stream(request)
        for data in answer_chunks(ANSWER)[:2]:
            await send_event(response, data)
        await asyncio.sleep(30)
        return response

    with HandlerServer(stalls) as server:
        endpoint = _endpoint(server.base_url, timeout_s=20, timeout_base_s=20, timeout_stall_s=0.3)
        rows, stats, wall = _run(endpoint, max_attempts=1)
    (row,) = rows
    assert row["status"] == STATUS_ERROR and "no event for 0.3s (stall)" in row["error"]
    assert stats.timeouts == stats.stall_timeouts == 1 and stats.queue_timeouts == stats.work_timeouts == 0
    assert wall < 3  # the stall limit, not the 20 s work timeout


def test_work_and_queue_timeouts_are_told_apart():
    steady = streaming(gap_s=0.15)  # six events 0.15 s apart: never stalls, outlasts 0.4 s of work
    with HandlerServer(steady) as server:
        work = dict(timeout_s=0.4, timeout_base_s=0.4, timeout_per_1k_tokens_s=0.0, timeout_stall_s=1.0)
        rows, stats, _ = _run(_endpoint(server.base_url, **work), max_attempts=1)
    assert "0.4s into the answer" in rows[0]["error"] and stats.work_timeouts == stats.timeouts == 1
    with HandlerServer(streaming(queued_s=5)) as server:
        rows, stats, wall = _run(_endpoint(server.base_url, timeout_queue_s=0.3), max_attempts=1)
    assert "before the answer started (queue)" in rows[0]["error"] and stats.queue_timeouts == stats.timeouts == 1
    assert stats.endpoints["s"].queue_timeouts == 1 and wall < 3


@pytest.mark.parametrize("fault", ["error-event", "dropped"])
def test_a_mid_stream_fault_is_retried(fault):
    async def first_breaks(request, call):
        response = await open_stream(request)
        events = answer_chunks(ANSWER)
        if len(server.calls) > 1:
            for data in events:
                await send_event(response, data)
            await send_event(response, "[DONE]")
            return response
        for data in events[:2]:
            await send_event(response, data)
        if fault == "error-event":
            await send_event(response, {"error": {"message": "The server had an error while processing your request."}})
        else:
            request.transport.close()
        return response

    with HandlerServer(first_breaks) as server:
        rows, stats, _ = _run(_endpoint(server.base_url))
    (row,) = rows
    assert row["status"] == STATUS_OK and row["raw_text"] == ANSWER and row["attempts"] == 2 and stats.retries == 1


def _cuts_short(request, call):
    """llama-cpp-python's default when another request waits: ``[DONE]`` before any finish reason."""

    async def handler(request, call):
        if not call.body.get("stream"):
            return web.json_response(completion(ANSWER))
        response = await open_stream(request)
        await send_event(response, chunk())
        await send_event(response, chunk('{"lab'))
        await send_event(response, "[DONE]")
        return response

    return handler(request, call)


@pytest.mark.parametrize("stream", ["auto", True])
def test_a_stream_cut_short_is_retried_and_auto_stops_streaming(stream):
    with HandlerServer(_cuts_short) as server:
        rows, stats, _ = _run(_endpoint(server.base_url, stream=stream), n=1, max_attempts=2)
        streamed = [bool(c.body.get("stream")) for c in server.calls]
    if stream == "auto":  # the retry asks plainly, and is answered
        assert streamed == [True, False] and rows[0]["status"] == STATUS_OK and rows[0]["raw_text"] == ANSWER
    else:  # stream: true keeps streaming: every attempt is cut short
        assert streamed == [True, True] and rows[0]["status"] == STATUS_ERROR
        assert "StreamCutShort" in rows[0]["error"] and "no finish_reason" in rows[0]["error"]
    assert stats.timeouts == 0


async def _refuses_stream(request, call):
    """The simulator's (and some models') answer to ``stream``."""
    if call.body.get("stream"):
        message = {"message": "stream=true is not supported by the simulator", "type": "invalid_request_error"}
        return web.json_response({"error": message}, status=400)
    return web.json_response(completion(ANSWER))


def test_auto_sends_a_refused_stream_again_plainly_within_the_attempt():
    with HandlerServer(_refuses_stream) as server:
        rows, stats, _ = _run(_endpoint(server.base_url, max_concurrency=1), n=4)
        streamed = [bool(c.body.get("stream")) for c in server.calls]
    assert [r["status"] for r in rows] == [STATUS_OK] * 4 and [r["attempts"] for r in rows] == [1] * 4
    assert streamed == [True, False, False, False, False] and stats.errors == 0


def test_stream_true_on_a_server_that_refuses_it_is_a_configuration_error():
    refused = "misconfigured: HTTP 400 from s: stream=true is not supported"
    with HandlerServer(_refuses_stream) as server, pytest.raises(DispatchFailed, match=refused):
        _run(_endpoint(server.base_url, stream=True), n=3)


def test_refused_stream_options_are_dropped_and_tokens_counted_locally():
    """Azure's older api-versions refuse ``stream_options``: asked again without it, the stream carries
    no usage, so the row counts tokens as a plain answer without usage would: the prompt as estimated,
    the completion with the local tokenizer; the TPM mirror keeps prompt + max_tokens charged."""

    async def no_stream_options(request, call):
        if "stream_options" in call.body:
            message = "Unrecognized request argument supplied: stream_options"
            return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=400)
        return await streaming()(request, call)

    with HandlerServer(no_stream_options) as server:
        dispatcher = Dispatcher([_endpoint(server.base_url)], DispatchSettings(**FAST))
        rows: list[dict] = []
        request = plain_requests(1)[0]
        asyncio.run(dispatcher.run([request], rows.append))
        bodies = [c.body for c in server.calls]
    assert ["stream_options" in b for b in bodies] == [True, False] and all(b["stream"] for b in bodies)
    (row,) = rows
    assert row["status"] == STATUS_OK and row["attempts"] == 1
    assert row["prompt_tokens"] == request.prompt_tokens and row["completion_tokens"] == count_tokens(ANSWER)
    assert dispatcher.states[0].tpm.own == request.cost  # no usage: the arrival charge stands


def test_structured_output_is_asked_for_and_streamed():
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": ["math"]}}, "required": ["label"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "topic", "strict": True, "schema": schema}}

    async def grammar(request, call):
        assert call.body["response_format"] == {"type": "json_object", "schema": schema} and call.body["stream"]
        return await streaming()(request, call)

    request = plain_requests(1)[0]
    request = type(request)(**{**vars(request), "response_format": response_format})
    with HandlerServer(grammar) as server:
        endpoint = _endpoint(server.base_url, structured_output="json_object_schema")
        rows: list[dict] = []
        asyncio.run(Dispatcher([endpoint], DispatchSettings(**FAST)).run([request], rows.append))
    assert rows[0]["status"] == STATUS_OK and json.loads(rows[0]["raw_text"]) == {"label": "math"}


def test_stream_setting_is_validated_and_auto_is_plain_on_the_simulator():
    assert parse_endpoints({"endpoints": [{"name": "a", "base_url": "http://x/v1", "model": "m"}]}).endpoints[0].stream == "auto"
    for value in ("auto", True, False):
        (endpoint,) = parse_endpoints(
            {"endpoints": [{"name": "a", "base_url": "http://x/v1", "model": "m", "stream": value}]}
        ).endpoints
        assert endpoint.stream == value
    with pytest.raises(EndpointsFileError, match=r"endpoints\.0\.stream"):
        parse_endpoints({"endpoints": [{"name": "a", "base_url": "http://x/v1", "model": "m", "stream": "sometimes"}]})
    assert Transport(_endpoint("http://x/v1")).streams and not Transport(_endpoint("http://x/v1", stream=False)).streams
    assert not Transport(SimEndpoint(name="sim", base_url="http://x/v1")).streams  # the simulator does not stream
