"""Transports per endpoint kind (semtel_dagster.core.llm.transport): OpenAI-compatible, classic Azure
OpenAI, bearer tokens from a callable; checked on the wire by a scripted server."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import pytest
from aiohttp import web
from scripted_http import HandlerServer, completion, plain_requests

from semtel_dagster.core.llm.dispatch import Dispatcher, DispatchFailed
from semtel_dagster.core.llm.endpoints import AzureEndpoint, EndpointsFileError, SimEndpoint, parse_endpoints
from semtel_dagster.core.llm.requests import STATUS_OK, LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.transport import Transport, chat_url

pytestmark = pytest.mark.timeout(30)

_TOKENS = itertools.count(1)


def next_token():
    """A token provider as ``token_provider: test_transport:next_token`` names it: a new token per call."""
    return SimpleNamespace(token=f"token-{next(_TOKENS)}", expires_on=4102444800)


def broken_provider():
    raise RuntimeError("no credentials")


def _requests(n: int) -> list[LLMRequest]:
    return plain_requests(n, prefix="c")


def _run(endpoints, n=3):
    """Dispatch with short backoffs: what is retried and how often is the same, in less time."""
    rows: list[dict] = []
    asyncio.run(Dispatcher(endpoints, DispatchSettings(backoff_base_s=0.01, backoff_max_s=0.05)).run(_requests(n), rows.append))
    return rows


def _one(data: dict):
    (endpoint,) = parse_endpoints({"endpoints": [data]}).endpoints
    return endpoint


def test_azure_wiring_path_query_and_api_key_header(monkeypatch):
    monkeypatch.setenv("AZ_KEY", "azure-key-0123456789")

    async def azure_only(request, call):
        if (
            call.method == "POST"
            and call.path == "/openai/deployments/gpt4o-mini-prod/chat/completions"
            and call.query == {"api-version": "2024-10-21"}
            and call.headers.get("api-key") == "azure-key-0123456789"
            and "Authorization" not in call.headers
        ):
            return web.json_response(completion())
        return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)

    with HandlerServer(azure_only) as server:
        endpoint = _one(
            {
                "kind": "azure",
                "name": "az",
                "base_url": server.origin,
                "model": "gpt-4o-mini",
                "deployment": "gpt4o-mini-prod",
                "api_version": "2024-10-21",
                "api_key_env": "AZ_KEY",
            }
        )
        assert isinstance(endpoint, AzureEndpoint)
        rows = _run([endpoint])
    assert [r["status"] for r in rows] == [STATUS_OK] * 3


def test_azure_wrong_path_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("AZ_KEY", "k" * 20)

    async def not_found(request, call):
        return web.json_response(
            {"error": {"code": "DeploymentNotFound", "message": "The API deployment does not exist"}}, status=404
        )

    with HandlerServer(not_found) as server:
        endpoint = _one(
            {
                "kind": "azure",
                "name": "az",
                "base_url": server.origin,
                "model": "m",
                "deployment": "nope",
                "api_version": "v1",
                "api_key_env": "AZ_KEY",
            }
        )
        with pytest.raises(
            DispatchFailed, match="endpoint az is misconfigured: HTTP 404 from az: The API deployment does not exist"
        ):
            _run([endpoint], n=10)
        assert len(server.calls) <= 4


def test_bearer_token_from_a_callable_is_renewed_once_after_a_401():
    accepted: set[str] = set()

    async def second_token_only(request, call):
        token = call.headers.get("Authorization", "").removeprefix("Bearer ")
        if not accepted:
            accepted.add(f"token-{int(token.split('-')[1]) + 1}")  # the current token has just expired
        if token in accepted:
            return web.json_response(completion())
        return web.json_response({"error": {"message": "token expired", "type": "invalid_request_error"}}, status=401)

    with HandlerServer(second_token_only) as server:
        endpoint = _one(
            {"name": "entra", "base_url": server.base_url, "model": "m", "token_provider": "test_transport:next_token"}
        )
        rows = _run([endpoint], n=6)
        calls = server.calls
    assert [r["status"] for r in rows] == [STATUS_OK] * 6
    assert sum(r["attempts"] for r in rows) <= 6 + 4  # the first round trip's 401s, each retried once
    assert len({c.headers["Authorization"] for c in calls}) == 2  # one renewal, not one per request


def test_a_token_refused_right_after_renewal_is_a_configuration_error():
    async def refuse(request, call):
        return web.json_response({"error": {"message": "audience is wrong"}}, status=401)

    with HandlerServer(refuse) as server:
        endpoint = _one(
            {"name": "entra", "base_url": server.base_url, "model": "m", "token_provider": "test_transport:next_token"}
        )
        with pytest.raises(DispatchFailed, match="endpoint entra is misconfigured: HTTP 401 from entra: audience is wrong"):
            _run([endpoint], n=20)
        assert len(server.calls) <= 12


def test_failing_token_provider_fails_attempts_not_the_process():
    with HandlerServer(lambda request, call: None) as server:
        endpoint = _one(
            {"name": "entra", "base_url": server.base_url, "model": "m", "token_provider": "test_transport:broken_provider"}
        )
        rows: list[dict] = []
        settings = DispatchSettings(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02)
        asyncio.run(Dispatcher([endpoint], settings).run(_requests(2), rows.append))
        assert server.calls == []
    assert len(rows) == 2 and all("TokenUnavailable" in r["error"] and "no credentials" in r["error"] for r in rows)


def test_unloadable_token_provider_names_the_endpoint():
    endpoint = _one({"name": "entra", "base_url": "http://h/v1", "model": "m", "token_provider": "no_such_module:f"})
    with pytest.raises(EndpointsFileError, match="endpoint 'entra': token_provider 'no_such_module:f' cannot be loaded"):
        Transport(endpoint)


def test_urls_per_kind():
    assert (
        chat_url(_one({"name": "a", "base_url": "https://api.openai.com/v1", "model": "m"}))
        == "https://api.openai.com/v1/chat/completions"
    )
    azure = _one(
        {
            "kind": "azure",
            "name": "z",
            "base_url": "https://r.openai.azure.com/",
            "model": "m",
            "deployment": "d",
            "api_version": "2024-10-21",
            "api_key_env": "K",
        }
    )
    assert chat_url(azure) == "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"
    sim = _one({"kind": "sim", "name": "s"})
    assert isinstance(sim, SimEndpoint) and sim.base_url is None
    with pytest.raises(ValueError, match="no base_url"):
        chat_url(sim)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"kind": "bedrock"}, "endpoints.0.kind: unknown kind; expected one of openai, azure, sim"),
        ({"kind": "azure", "api_key_env": "K"}, "endpoints.0.deployment: Field required"),
        ({"kind": "azure", "deployment": "d", "api_version": "v"}, "kind azure needs api_key_env or token_provider"),
        ({"api_key_env": "K", "token_provider": "m:f"}, "set api_key_env or token_provider, not both"),
        ({"token_provider": "not a callable path"}, "endpoints.0.token_provider"),
    ],
)
def test_kind_errors_name_the_field(data, message):
    with pytest.raises(EndpointsFileError) as info:
        parse_endpoints({"endpoints": [{"name": "a", "base_url": "http://h/v1", "model": "m", **data}]})
    assert message in str(info.value)
