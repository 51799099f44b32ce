"""No key, token or conversation text in any stored or logged error (semtel_dagster.core.llm.redact),
end to end against servers that echo the Authorization header and the request body."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from scripted_http import HandlerServer, completion, plain_requests

from semtel_dagster.core.llm.dispatch import Dispatcher, DispatchFailed
from semtel_dagster.core.llm.endpoints import AzureEndpoint, Endpoint
from semtel_dagster.core.llm.redact import ECHO_REMOVED, REDACTED, redact
from semtel_dagster.core.llm.requests import STATUS_ERROR, LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings

KEY = "sk-proj-SECRETSECRET0123456789abcdefXYZ"
AZURE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
CONVERSATION = "User: my account number is 4929-1111-2222 and my home address is 12 Elm Street, Springfield"

pytestmark = [pytest.mark.faults, pytest.mark.timeout(30)]


@pytest.mark.parametrize(
    "text",
    [
        f"Incorrect API key provided: {KEY}.",
        f"Incorrect API key provided: Bearer {KEY}",
        "headers: {'Authorization': 'Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig'}",
        '"api-key": "abcdef0123456789"',
        "api_key=abcdef0123456789&x=1",
        "X-Api-Key: abcdef0123456789",
    ],
)
def test_key_shapes_are_redacted(text):
    out = redact(text)
    assert REDACTED in out
    for secret in (KEY, "eyJhbGciOiJSUzI1NiJ9", "abcdef0123456789"):
        assert secret not in out


def test_the_endpoints_own_key_is_redacted_whatever_its_shape():
    out = redact(f"denied for key {AZURE_KEY} on deployment d", secrets=[AZURE_KEY])
    assert AZURE_KEY not in out and out == f"denied for key {REDACTED} on deployment d"


def test_echoed_conversation_is_cut_raw_json_or_repr():
    for echoed in (CONVERSATION, json.dumps({"content": CONVERSATION}), repr({"text": CONVERSATION})):
        out = redact(f"bad request: {echoed} (see docs)", echoes=[CONVERSATION])
        assert out.startswith("bad request:") and out.endswith(ECHO_REMOVED)
        assert "4929" not in out and "Elm Street" not in out
    # a body marker cuts even text the dispatcher was not told about
    out = redact('validation failed for body {"model": "m", "messages": [{"role": "user", "content": "hello"}]}')
    assert "hello" not in out and out.endswith(ECHO_REMOVED)


def test_plain_errors_are_kept_and_capped():
    assert redact("upstream exploded") == "upstream exploded"
    assert len(redact("x" * 10_000)) == 300


async def _echo_everything(request, call):
    page = f"<html><pre>500 Internal Error\nAuthorization: {call.headers.get('Authorization')}\napi-key: {call.headers.get('api-key')}\nbody: {json.dumps(call.body)}</pre></html>"
    return web.Response(text=page, status=500, content_type="text/html")


async def _echo_key_401(request, call):
    token = call.headers.get("Authorization", "").removeprefix("Bearer ")
    message = f"Incorrect API key provided: {token}. You can find your API key at https://platform.openai.com/account/api-keys."
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}, status=401
    )


def _requests(n: int) -> list[LLMRequest]:
    return plain_requests(n, prefix="c", text=CONVERSATION, system="Classify the topic.", prompt_tokens=40)


def _assert_clean(text: str) -> None:
    for leaked in (KEY, AZURE_KEY, "SECRETSECRET", "4929-1111", "Elm Street"):
        assert leaked not in text, text


@pytest.mark.parametrize("kind", ["openai", "azure"])
def test_stored_errors_hold_no_key_and_no_conversation(monkeypatch, kind):
    monkeypatch.setenv("ECHO_KEY", KEY if kind == "openai" else AZURE_KEY)
    extra = {"kind": "azure", "deployment": "d", "api_version": "2024-06-01"} if kind == "azure" else {}
    with HandlerServer(_echo_everything) as server:
        base = server.base_url if kind == "openai" else server.origin
        endpoint = (AzureEndpoint if kind == "azure" else Endpoint).model_validate(
            {"name": "echo", "base_url": base, "model": "m", "api_key_env": "ECHO_KEY", **extra}
        )
        rows: list[dict] = []
        settings = DispatchSettings(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02, give_up_s=2.0, breaker_open_s=0.1)
        asyncio.run(Dispatcher([endpoint], settings).run(_requests(3), rows.append))
        assert len(server.calls) >= 3
    assert len(rows) == 3
    for row in rows:
        assert row["status"] == STATUS_ERROR and "HTTP 500 from echo" in row["error"]
        _assert_clean(row["error"])


def test_key_echoed_by_a_401_stays_out_of_the_failure(monkeypatch):
    monkeypatch.setenv("ECHO_KEY", KEY)
    with HandlerServer(_echo_key_401) as server:
        endpoint = Endpoint(name="wrong-key", base_url=server.base_url, model="m", api_key_env="ECHO_KEY")
        with pytest.raises(DispatchFailed) as info:
            asyncio.run(Dispatcher([endpoint]).run(_requests(5), lambda row: None))
    message = str(info.value)
    assert "endpoint wrong-key is misconfigured: HTTP 401 from wrong-key: Incorrect API key provided: [redacted]" in message
    _assert_clean(message)
    assert len(server.calls) <= 4


def test_answers_are_not_redacted():
    async def answer(request, call):
        return web.json_response(completion(content='{"label": "Bearer of news"}'))

    with HandlerServer(answer) as server:
        rows: list[dict] = []
        asyncio.run(Dispatcher([Endpoint(name="a", base_url=server.base_url, model="m")]).run(_requests(1), rows.append))
    assert rows[0]["raw_text"] == '{"label": "Bearer of news"}' and rows[0]["error"] is None


def test_an_echoed_authorization_header_reads_as_one_redaction():
    """The endpoint's key and the header shapes together leave one clean marker, not broken brackets."""
    out = redact(f"request headers: Authorization: Bearer {KEY}; Host: api", secrets=[KEY])
    assert out == f"request headers: Authorization: {REDACTED}; Host: api"
