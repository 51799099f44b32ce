"""The provider's Files and Batches API for one endpoint, over the endpoint's own transport (URL root and
auth headers: Bearer, Azure ``api-key`` and ``api-version``, or a token provider). Errors are redacted.

``openai`` / ``sim``: ``{base_url}/files``, ``{base_url}/batches``; ``azure``:
``{base_url}/openai/files?api-version=...``, ``{base_url}/openai/batches?api-version=...``.
"""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp

from semtel_dagster.core.llm.batch_files import file_name
from semtel_dagster.core.llm.endpoints import AzureEndpoint, Endpoint
from semtel_dagster.core.llm.redact import redact
from semtel_dagster.core.llm.transport import Transport, error_message

_LIST_PAGES = 20  # pages of 100 looked through for a file or batch an interrupted run created
_TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=10)


class BatchApiError(RuntimeError):
    """The batch API refused a call; the message (redacted) says which and why."""


class BatchApi:
    def __init__(self, endpoint: Endpoint, session: aiohttp.ClientSession) -> None:
        self.endpoint = endpoint
        self.transport = Transport(endpoint)
        self.session = session

    def _url(self, path: str, **query: str) -> str:
        if isinstance(self.endpoint, AzureEndpoint):
            root, query = f"{self.endpoint.base_url}/openai", {**query, "api-version": self.endpoint.api_version}
        else:
            root = self.transport.url.removesuffix("/chat/completions")
        return f"{root}/{path}" + (f"?{urlencode(query)}" if query else "")

    async def _call(self, method: str, path: str, *, query: dict | None = None, **kwargs) -> aiohttp.ClientResponse:
        headers = await self.transport.auth.headers()
        response = await self.session.request(
            method, self._url(path, **(query or {})), headers=headers, timeout=_TIMEOUT, allow_redirects=False, **kwargs
        )
        if response.status >= 300:
            content = await response.read()
            response.release()
            message = redact(error_message(content), self.transport.secrets())
            raise BatchApiError(
                f"endpoint {self.endpoint.name!r}: {method} {path.split('/')[0]} -> HTTP {response.status}: {message}"
            )
        return response

    async def _json(self, method: str, path: str, **kwargs) -> dict:
        response = await self._call(method, path, **kwargs)
        async with response:
            return await response.json(content_type=None)

    async def upload(self, key: str, content: bytes) -> str:
        """``POST /files`` (purpose ``batch``), the file named after the batch key; returns its id."""
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename=file_name(key), content_type="application/jsonl")
        return str((await self._json("POST", "files", data=form))["id"])

    async def find_file(self, key: str) -> str | None:
        """The id of a batch file an interrupted run uploaded under ``key``, if any."""
        async for item in self._listed("files", purpose="batch"):
            if item.get("filename") == file_name(key):
                return str(item["id"])
        return None

    async def create(self, key: str, input_file_id: str) -> dict:
        """``POST /batches`` over the uploaded file, ``completion_window: 24h``, the key in its metadata."""
        url = "/chat/completions" if isinstance(self.endpoint, AzureEndpoint) else "/v1/chat/completions"
        body = {"input_file_id": input_file_id, "endpoint": url, "completion_window": "24h", "metadata": {"batch_key": key}}
        return await self._json("POST", "batches", json=body)

    async def find_batch(self, key: str, input_file_id: str) -> dict | None:
        """A batch an interrupted run created under ``key`` (its metadata) from ``input_file_id``, if any."""
        async for item in self._listed("batches"):
            if (item.get("metadata") or {}).get("batch_key") == key and item.get("input_file_id") == input_file_id:
                return item
        return None

    async def get(self, batch_id: str) -> dict:
        return await self._json("GET", f"batches/{batch_id}")

    async def content(self, file_id: str) -> bytes:
        response = await self._call("GET", f"files/{file_id}/content")
        async with response:
            return await response.read()

    async def _listed(self, path: str, **query: str):
        after: str | None = None
        for _ in range(_LIST_PAGES):
            page = await self._json("GET", path, query={**query, "limit": "100", **({"after": after} if after else {})})
            items = page.get("data") or []
            for item in items:
                yield item
            if not page.get("has_more") or not items:
                return
            after = str(items[-1]["id"])
