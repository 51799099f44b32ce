"""How one endpoint is reached: the chat-completions URL of its wire format and the auth headers.

``openai`` and ``sim``: ``{base_url}/chat/completions`` with ``Authorization: Bearer <key>``; ``azure``
(classic Azure OpenAI): ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``
with an ``api-key`` header. Either may take a bearer token from a callable instead of a key
(``token_provider``: Entra ID, OAuth), fetched off the event loop, renewed before it expires and once
after a 401.

A request asks for a streamed answer where the endpoint's ``stream`` says so (see ``stream``): ``auto``
stops asking, for the rest of the run, once the server refuses ``stream`` or cuts a stream short; a
refused ``stream_options`` (usage in the stream) is dropped alone. Either refusal is sent again at once,
plainly, within the same attempt.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from semtel_dagster.core.llm.endpoints import NO_KEY, AzureEndpoint, Endpoint, EndpointsFileError
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.stream import EVENT_STREAM, Deadline, StreamCutShort, read_stream
from semtel_dagster.core.llm.structured import StructuredOutput, structured_fields
from semtel_dagster.core.llm.transport_errors import read_capped

_RENEW_BEFORE_EXPIRY_S = 300.0
CONNECT_TIMEOUT_S = 10.0  # a host that does not even accept the connection is dead, whatever the request size
_REFUSED_STATUSES = (400, 422)
_NAMES_STREAM_OPTIONS = re.compile(r"stream_options|include_usage", re.IGNORECASE)
_NAMES_STREAM = re.compile(r"\bstream(?:ing)?\b", re.IGNORECASE)


def chat_url(endpoint: Endpoint) -> str:
    if isinstance(endpoint, AzureEndpoint):
        query = urlencode({"api-version": endpoint.api_version})
        return f"{endpoint.base_url}/openai/deployments/{endpoint.deployment}/chat/completions?{query}"
    if endpoint.base_url is None:
        raise ValueError(f"endpoint {endpoint.name!r} has no base_url (a simulator the pool did not start)")
    return f"{endpoint.base_url}/chat/completions"


def chat_body(
    request: LLMRequest,
    endpoint: Endpoint,
    structured_output: StructuredOutput | None = None,
    stream: bool = False,
    stream_usage: bool = True,
) -> dict:
    """The chat-completions body of ``request`` for ``endpoint``, its schema asked for in the endpoint's
    dialect (or ``structured_output``'s), streamed (with the usage as the last event) if asked."""
    body = {
        "model": endpoint.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        **structured_fields(structured_output or endpoint.structured_output, request.response_format),
    }
    if stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def completion_body(content: bytes) -> dict:
    """A plain answer's body, checked to hold the text of a first choice."""
    body = json.loads(content)
    if not isinstance(body["choices"][0]["message"]["content"], str):
        raise TypeError("message.content is not a string")
    return body


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: a 200's completion in ``body`` (streamed or plain), an error's capped bytes in
    ``content``."""

    status: int
    headers: Mapping[str, str]
    content: bytes = b""
    body: dict | None = None
    streamed: bool = False


def error_message(content: bytes) -> str:
    """The provider's error message (redacted by the caller: it may echo the key or the request)."""
    try:
        error = json.loads(content)
        return str(error["error"]["message"] if isinstance(error.get("error"), dict) else error.get("detail", error))
    except (ValueError, KeyError, TypeError, AttributeError):
        return content[:4000].decode("utf-8", "replace")


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
    """URL, auth and streaming of one endpoint; ``secrets`` are what redaction removes from its errors."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.url = chat_url(endpoint)
        self.streams = endpoint.stream is True or (endpoint.stream == "auto" and endpoint.kind != "sim")
        self.stream_usage = True  # stream_options.include_usage, until refused
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

    async def post(
        self,
        session: aiohttp.ClientSession,
        request: LLMRequest,
        headers: dict[str, str],
        deadline: Deadline,
        structured_output: StructuredOutput | None = None,
    ) -> Answer:
        """One chat completion under ``deadline`` (streamed if this endpoint streams); a refusal of what
        streaming adds is sent again at once without it."""
        async with deadline.running():
            while True:
                streams, usage = self.streams, self.stream_usage
                body = chat_body(request, self.endpoint, structured_output, streams, usage)
                answer = await self._post(session, body, headers, deadline)
                if not self._refused_streaming(answer, streams, usage):
                    return answer
                if not self.streams:
                    deadline.unstreamed()

    async def _post(self, session: aiohttp.ClientSession, body: dict, headers: dict[str, str], deadline: Deadline) -> Answer:
        limit = self.endpoint.max_response_bytes
        async with session.post(
            self.url,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
            allow_redirects=False,  # a redirect would send the conversation wherever it points
        ) as response:
            status = response.status
            if status == 200 and response.content_type == EVENT_STREAM:
                try:
                    return Answer(status, response.headers, body=await read_stream(response, limit, deadline), streamed=True)
                except StreamCutShort:
                    if self.endpoint.stream == "auto":  # the server ends streams early under load: ask plainly
                        self.streams = False
                    raise
            content = await read_capped(response, limit, truncate=status != 200)
        if status != 200:
            return Answer(status, response.headers, content=content)
        if body.get("stream") and self.endpoint.stream == "auto":  # asked to stream, answered plainly: it does not
            self.streams = False
        return Answer(status, response.headers, body=completion_body(content))

    def _refused_streaming(self, answer: Answer, streamed: bool, usage: bool) -> bool:
        """A 400/422 to a streamed request that names ``stream_options`` (drop it) or, under ``auto``,
        ``stream`` (stop streaming). Requests in flight when it came were sent with the same fields."""
        if not streamed or answer.status not in _REFUSED_STATUSES:
            return False
        message = error_message(answer.content)
        if usage and _NAMES_STREAM_OPTIONS.search(message):
            self.stream_usage = False
            return True
        if self.endpoint.stream == "auto" and _NAMES_STREAM.search(message):
            self.streams = False
            return True
        return False
