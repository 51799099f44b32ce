"""Batch API files without I/O: request lines in the OpenAI Batch format, files cut within the provider's
limits, and the lines of output and error files read back.

An input line is ``{"custom_id", "method": "POST", "url", "body"}`` where ``custom_id`` is the request's
``llm_responses`` id and ``body`` the chat-completions body an online call would send (never streamed).
An output or error line is ``{"id", "custom_id", "response": {"status_code", "request_id", "body"} | null,
"error": {"code", "message"} | null}``, in any order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from semtel_dagster.core.llm.endpoints import AzureEndpoint, BatchOptions, Endpoint
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.transport import chat_body

OPENAI_BATCH_URL = "/v1/chat/completions"
AZURE_BATCH_URL = "/chat/completions"  # Azure names the deployment in the body's model


@dataclass(frozen=True)
class BatchLine:
    request_id: str
    line: bytes  # one JSON object and its newline
    prompt_tokens: int  # estimated locally, counted against the enqueued-token limit


@dataclass(frozen=True)
class BatchFile:
    request_ids: tuple[str, ...]
    content: bytes
    prompt_tokens: int


@dataclass(frozen=True)
class BatchResult:
    """One item of an output or error file: ``body`` is the completion of a 200, else ``error`` says why."""

    request_id: str
    body: dict | None
    error: str | None


class BatchLimitError(ValueError):
    """One request alone exceeds a limit of the batch API: no file can hold it."""


def batch_line(request: LLMRequest, endpoint: Endpoint) -> BatchLine:
    """The input line of ``request`` for ``endpoint``'s batch API."""
    body = chat_body(request, endpoint)
    url = OPENAI_BATCH_URL
    if isinstance(endpoint, AzureEndpoint):
        body["model"], url = endpoint.deployment, AZURE_BATCH_URL
    line = {"custom_id": request.request_id, "method": "POST", "url": url, "body": body}
    return BatchLine(request.request_id, (json.dumps(line, ensure_ascii=False) + "\n").encode(), request.prompt_tokens)


def split_lines(lines: Iterable[BatchLine], limits: BatchOptions) -> Iterator[BatchFile]:
    """Files of consecutive lines, each within ``limits`` (requests, bytes, enqueued tokens), in order."""
    ids: list[str] = []
    chunks: list[bytes] = []
    size = tokens = 0
    for item in lines:
        check_fits(item, limits)
        if ids and not joins(item, len(ids), size, tokens, limits):
            yield BatchFile(tuple(ids), b"".join(chunks), tokens)
            ids, chunks, size, tokens = [], [], 0, 0
        ids.append(item.request_id)
        chunks.append(item.line)
        size += len(item.line)
        tokens += item.prompt_tokens
    if ids:
        yield BatchFile(tuple(ids), b"".join(chunks), tokens)


def joins(item: BatchLine, count: int, size: int, tokens: int, limits: BatchOptions) -> bool:
    """Whether ``item`` may join a file of ``count`` lines, ``size`` bytes and ``tokens`` prompt tokens."""
    return (
        count < limits.max_requests
        and size + len(item.line) <= limits.max_bytes
        and (limits.max_enqueued_tokens is None or tokens + item.prompt_tokens <= limits.max_enqueued_tokens)
    )


def check_fits(item: BatchLine, limits: BatchOptions) -> None:
    if len(item.line) > limits.max_bytes:
        raise BatchLimitError(f"request {item.request_id}: {len(item.line)} bytes exceed the batch file limit {limits.max_bytes}")
    if limits.max_enqueued_tokens is not None and item.prompt_tokens > limits.max_enqueued_tokens:
        raise BatchLimitError(
            f"request {item.request_id}: {item.prompt_tokens} prompt tokens exceed the enqueued-token limit "
            f"{limits.max_enqueued_tokens}"
        )


def batch_key(week: dt.date | None, endpoint: str, request_ids: Iterable[str], submission: int = 1) -> str:
    """Deterministic local key of a batch, known before anything is uploaded (the uploaded file is named
    after it, the batch carries it in its metadata, so an interrupted step is found again).
    ``submission`` tells a resubmission of the same items from the batch that failed them."""
    key = json.dumps([str(week), endpoint, sorted(request_ids), submission])
    return "semtel-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def file_name(key: str) -> str:
    return f"{key}.jsonl"


def parse_results(content: bytes) -> Iterator[BatchResult]:
    """Items of an output or error file; a line that is no JSON object with a ``custom_id`` is skipped
    (its request stays unanswered and is asked again)."""
    for raw in content.splitlines():
        try:
            item = json.loads(raw)
            request_id = item["custom_id"]
        except (ValueError, TypeError, KeyError):
            continue
        if not isinstance(request_id, str):
            continue
        yield _result(request_id, item.get("response"), item.get("error"))


def _result(request_id: str, response: object, error: object) -> BatchResult:
    if isinstance(error, dict):
        return BatchResult(request_id, None, f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip())
    if not isinstance(response, dict):
        return BatchResult(request_id, None, "batch item without a response")
    status, body = response.get("status_code"), response.get("body")
    if status == 200 and isinstance(body, dict):
        try:
            if isinstance(body["choices"][0]["message"]["content"], str):
                return BatchResult(request_id, body, None)
        except (KeyError, IndexError, TypeError):
            pass
        return BatchResult(request_id, None, "batch item answered without message content")
    message = body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    return BatchResult(request_id, None, f"HTTP {status}: {message or 'no message'}")
