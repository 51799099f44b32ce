"""How one endpoint is reached: the chat-completions URL of its wire format and the auth headers.

``openai`` and ``sim``: ``{base_url}/chat/completions`` with ``Authorization: Bearer <key>``; ``azure``
(classic Azure OpenAI): ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``
with an ``api-key`` header. Either may take a bearer token from a callable instead of a key
(``token_provider``: Entra ID, OAuth), fetched off the event loop, renewed before it expires and once
after a 401.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from urllib.parse import urlencode

from semtel_dagster.core.llm.endpoints import NO_KEY, AzureEndpoint, Endpoint, EndpointsFileError
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.structured import StructuredOutput, structured_fields

_RENEW_BEFORE_EXPIRY_S = 300.0


def chat_url(endpoint: Endpoint) -> str:
    if isinstance(endpoint, AzureEndpoint):
        query = urlencode({"api-version": endpoint.api_version})
        return f"{endpoint.base_url}/openai/deployments/{endpoint.deployment}/chat/completions?{query}"
    if endpoint.base_url is None:
        raise ValueError(f"endpoint {endpoint.name!r} has no base_url (a simulator the pool did not start)")
    return f"{endpoint.base_url}/chat/completions"


def chat_body(request: LLMRequest, endpoint: Endpoint, structured_output: StructuredOutput | None = None) -> dict:
    """The chat-completions body of ``request`` for ``endpoint``, its schema asked for in the endpoint's
    dialect (or ``structured_output``'s)."""
    return {
        "model": endpoint.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        **structured_fields(structured_output or endpoint.structured_output, request.response_format),
    }


def load_token_provider(endpoint: Endpoint) -> Callable[[], object]:
    """The callable named by ``token_provider`` ('package.module:function')."""
    if endpoint.token_provider is None:
        raise EndpointsFileError(f"endpoint {endpoint.name!r} has no token_provider")
    module_name, _, attr = endpoint.token_provider.partition(":")
    try:
        provider = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EndpointsFileError(
            f"endpoint {endpoint.name!r}: token_provider {endpoint.token_provider!r} cannot be loaded ({type(exc).__name__})"
        ) from None
    if not callable(provider):
        raise EndpointsFileError(f"endpoint {endpoint.name!r}: token_provider {endpoint.token_provider!r} is not callable")
    return provider


class TokenUnavailable(ValueError):
    """The token provider failed or returned nothing: the attempt fails and is retried."""


class KeyAuth:
    """A fixed key in a header (``Authorization: Bearer`` or Azure's ``api-key``)."""

    def __init__(self, header: str, prefix: str, key: str) -> None:
        self._headers = {header: prefix + key}
        self._secrets = [key] if key != NO_KEY else []

    async def headers(self) -> dict[str, str]:
        return self._headers

    def refused(self, sent: dict[str, str]) -> bool:
        """A 401: a fixed key will not get better."""
        return False

    def secrets(self) -> list[str]:
        return self._secrets


class TokenAuth:
    """A bearer token from a callable returning a string, or an object with ``token`` (and optionally
    ``expires_on``, epoch seconds) such as azure-identity's ``AccessToken``."""

    def __init__(self, provider: Callable[[], object]) -> None:
        self._provider = provider
        self._token: str | None = None
        self._expires_on = float("inf")
        self._refused = False  # the current token was fetched because the previous one got a 401
        self._stale = False
        self._lock = asyncio.Lock()
        self._seen: list[str] = []

    async def headers(self) -> dict[str, str]:
        if self._token is None or time.time() > self._expires_on - _RENEW_BEFORE_EXPIRY_S:
            async with self._lock:
                if self._token is None or time.time() > self._expires_on - _RENEW_BEFORE_EXPIRY_S:
                    try:
                        value = await asyncio.to_thread(self._provider)
                    except Exception as exc:  # whatever the provider raises is a failed attempt, not a crash
                        raise TokenUnavailable(f"token_provider failed: {type(exc).__name__}: {exc}") from None
                    token = getattr(value, "token", value)
                    if not isinstance(token, str) or not token:
                        raise TokenUnavailable("token_provider returned no token")
                    self._token, self._expires_on = token, float(getattr(value, "expires_on", float("inf")))
                    self._refused, self._stale = self._stale, False
                    self._seen = [*self._seen[-3:], token]
        return {"Authorization": f"Bearer {self._token}"}

    def refused(self, sent: dict[str, str]) -> bool:
        """A 401: True when a fresh token may succeed (it is fetched before the next attempt); False when
        a token fetched right after a 401 was refused too."""
        if sent.get("Authorization") != f"Bearer {self._token}":
            return True  # already replaced by a concurrent request
        if self._refused:
            return False
        self._token, self._stale = None, True
        return True

    def secrets(self) -> list[str]:
        return list(self._seen)


class Transport:
    """URL and auth of one endpoint; ``secrets`` are what redaction removes from its errors."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.url = chat_url(endpoint)
        if endpoint.token_provider is not None:
            self.auth: KeyAuth | TokenAuth = TokenAuth(load_token_provider(endpoint))
        elif isinstance(endpoint, AzureEndpoint):
            self.auth = KeyAuth("api-key", "", endpoint.api_key())
        else:
            self.auth = KeyAuth("Authorization", "Bearer ", endpoint.api_key())

    async def headers(self) -> dict[str, str]:
        return {**await self.auth.headers(), "Content-Type": "application/json"}

    def refused(self, sent: dict[str, str]) -> bool:
        return self.auth.refused(sent)

    def secrets(self) -> list[str]:
        return self.auth.secrets()
