"""Failing, broken and misconfigured endpoints cost seconds, not hours (semtel_dagster.core.llm.dispatch
over real HTTP to scripted aiohttp servers): isolation, bounded give-up, a run-level stop, no retries of
configuration errors, capped answers, no redirects, one row per request at most."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from scripted_http import (
    HandlerServer,
    always_500,
    completion,
    empty_200,
    html_200,
    huge,
    huge_chunked,
    mid_body_close,
    no_choices,
    ok,
    plain_requests,
    stall,
)

from semtel_dagster.core.llm.dispatch import Dispatcher, DispatchFailed
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.requests import STATUS_ERROR, STATUS_OK, LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]

LLAMA_CPP_500 = {
    "error": {
        "message": "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or "
        "'json_object' [type=literal_error, input_value='json_schema', input_type=str]\n    For further information visit "
        "https://errors.pydantic.dev/2.11/v/literal_error",
        "type": "internal_server_error",
    }
}


def _requests(n: int, text: str = "question") -> list[LLMRequest]:
    return plain_requests(n, text=text)


def _endpoint(name: str, base_url: str, **kw) -> Endpoint:
    return Endpoint(name=name, base_url=base_url, model="m", timeout_s=kw.pop("timeout_s", 5), **kw)


def _run(endpoints, requests, **settings):
    dispatcher = Dispatcher(endpoints, DispatchSettings(**settings))
    rows: list[dict] = []
    started = time.monotonic()
    try:
        asyncio.run(dispatcher.run(requests, rows.append))
    except DispatchFailed as failure:
        return rows, dispatcher, time.monotonic() - started, failure
    return rows, dispatcher, time.monotonic() - started, None


def test_sole_always_500_endpoint_ends_in_seconds():
    """Requests that failed give up as error rows; the pool, failing as a whole, stops the run: the
    requests that never got a turn are left for a rerun."""
    with HandlerServer(always_500) as server:
        rows, dispatcher, wall, failure = _run(
            [_endpoint("broken", server.base_url)], _requests(30), give_up_s=0.6, stop_after_failing_s=1.0
        )
    assert failure is not None and str(failure).startswith("every endpoint failing for ")
    assert 0 < len(rows) <= 30 and len({r["request_id"] for r in rows}) == len(rows)  # at most one row each
    assert {r["status"] for r in rows} == {STATUS_ERROR}
    assert all(r["error"].startswith("gave up after ") and "HTTP 500 from broken: upstream exploded" in r["error"] for r in rows)
    assert wall < 10
    assert dispatcher.stats.endpoints["broken"].breaker_opens >= 1


def test_every_endpoint_failing_stops_the_run_with_a_clear_failure():
    requests = _requests(200)
    with HandlerServer(always_500) as a, HandlerServer(html_200) as b:
        endpoints = [_endpoint("five-hundred", a.base_url), _endpoint("html", b.base_url)]
        rows, _dispatcher, wall, failure = _run(endpoints, requests, stop_after_failing_s=0.8)
        calls = len(a.calls) + len(b.calls)
    assert failure is not None and wall < 12
    message = str(failure)
    assert message.startswith("every endpoint failing for ")
    assert "five-hundred: HTTP 500" in message and "html: JSONDecodeError" in message and "rerun" in message
    assert len({r["request_id"] for r in rows}) == len(rows)  # at most one row per request, the rest left for a rerun
    assert all(r["status"] == STATUS_ERROR for r in rows)
    assert calls < 200  # nowhere near a retry storm


@pytest.mark.parametrize(
    "handler,timeout_s",
    [
        (always_500, 5),
        (html_200, 5),
        (empty_200, 5),
        (no_choices, 5),
        (stall, 0.25),
        (mid_body_close, 5),
        (huge, 5),
        (huge_chunked, 5),
    ],
    ids=["500", "html", "empty", "no-choices", "stall", "mid-body-close", "too-large", "too-large-chunked"],
)
def test_broken_endpoint_is_isolated_and_work_moves_elsewhere(handler, timeout_s):
    requests = _requests(60)
    with HandlerServer(handler) as bad, HandlerServer(ok) as good:
        # streamed, a server that never answers has not started: its queue limit applies
        bad_endpoint = _endpoint("bad", bad.base_url, timeout_s=timeout_s, timeout_queue_s=timeout_s)
        endpoints = [bad_endpoint, _endpoint("good", good.base_url)]
        rows, dispatcher, wall, failure = _run(endpoints, requests, hedge_quantile=None)
        bad_calls = len(bad.calls)
    assert failure is None
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)
    assert {r["status"] for r in rows} == {STATUS_OK} and {r["endpoint"] for r in rows} == {"good"}
    assert dispatcher.stats.endpoints["bad"].ok == 0
    assert bad_calls <= 16  # a slow-start's worth plus breaker probes, not a share of 60 requests
    assert wall < 12


def test_too_large_answer_is_read_no_further():
    with HandlerServer(huge) as server:
        endpoints = [_endpoint("big", server.base_url, max_response_bytes=64 * 1024)]
        rows, _dispatcher, _wall, _failure = _run(endpoints, _requests(1), max_attempts=1)
    (row,) = rows
    assert row["status"] == STATUS_ERROR and "ResponseTooLarge" in row["error"] and "max_response_bytes (65,536)" in row["error"]


def test_llama_cpp_validation_500_is_a_configuration_error_never_retried():
    async def refuse_json_schema(request, call):
        if (call.body.get("response_format") or {}).get("type") == "json_schema":
            return web.json_response(LLAMA_CPP_500, status=500)
        return web.json_response(completion())

    requests = _requests(50)
    for request in requests:
        object.__setattr__(request, "response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})
    with HandlerServer(refuse_json_schema) as server:
        rows, _dispatcher, wall, failure = _run([_endpoint("llama", server.base_url)], requests)
        calls = len(server.calls)
    assert failure is not None and wall < 5
    assert "endpoint llama is misconfigured: HTTP 500 from llama: 1 validation error" in str(failure)
    assert calls <= 4 and rows == []  # the first round trip only; every request is left for a rerun


def test_request_specific_400_fails_that_request_only():
    async def too_long_sometimes(request, call):
        if call.body["messages"][0]["content"].endswith(" 3"):
            message = "This model's maximum context length is 8192 tokens."
            return web.json_response({"error": {"message": message, "code": "context_length_exceeded"}}, status=400)
        return web.json_response(completion())

    with HandlerServer(too_long_sometimes) as server:
        rows, _dispatcher, _wall, failure = _run([_endpoint("one", server.base_url)], _requests(8))
        calls = len(server.calls)
    assert failure is None and len(rows) == 8 and calls == 8
    failed = [r for r in rows if r["status"] == STATUS_ERROR]
    assert [r["conversation_ids"] for r in failed] == [["p3"]] and failed[0]["attempts"] == 1
    assert "maximum context length" in failed[0]["error"]


def test_cross_host_redirect_is_never_followed():
    with HandlerServer(ok) as elsewhere:

        async def redirect(request, call):
            raise web.HTTPTemporaryRedirect(f"{elsewhere.base_url}/chat/completions")

        with HandlerServer(redirect) as server:
            rows, _dispatcher, _wall, failure = _run([_endpoint("moved", server.base_url)], _requests(5))
        assert elsewhere.calls == []  # the conversation never reached the other host
    assert failure is not None and rows == []
    assert f"HTTP 307 from moved: redirect to {elsewhere.origin} not followed" in str(failure)


def test_rate_limits_do_not_count_towards_giving_up():
    refusals = iter(range(3))

    async def busy_thenok(request, call):
        if next(refusals, None) is not None:
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"retry-after-ms": "300"})
        return web.json_response(completion())

    with HandlerServer(busy_thenok) as server:
        rows, _dispatcher, wall, failure = _run([_endpoint("busy", server.base_url)], _requests(1), give_up_s=0.15)
    (row,) = rows
    assert failure is None and row["status"] == STATUS_OK and row["rate_limited"] == 3 and wall >= 0.85


def test_requests_that_fail_on_their_own_end_as_errors_while_the_rest_are_answered():
    """A third of the requests always get a 500 from the sole endpoint: they give up as error rows
    before the pool can look dead, and every other request is answered (defaults' ordering)."""
    defaults = DispatchSettings()
    assert defaults.give_up_s < defaults.stop_after_failing_s

    async def some_fail(request, call):
        body = await request.json()
        number = int(body["messages"][0]["content"].split()[-1])
        return await (always_500 if number % 3 == 0 else ok)(request, call)

    with HandlerServer(some_fail) as server:
        rows, _, wall, failure = _run(
            [_endpoint("flaky", server.base_url)], _requests(30), give_up_s=0.6, stop_after_failing_s=1.2, backoff_max_s=0.15
        )
    assert failure is None, failure
    by_status = {status: sum(r["status"] == status for r in rows) for status in (STATUS_OK, STATUS_ERROR)}
    assert by_status == {STATUS_OK: 20, STATUS_ERROR: 10} and len(rows) == 30
    assert wall < 20
