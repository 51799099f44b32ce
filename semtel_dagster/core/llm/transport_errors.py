"""What a failed HTTP answer means: retry it, fail the request, or stop: the endpoint is misconfigured.

A 4xx other than 408/409/429, a redirect, and a 5xx whose body is a request-validation error (as
llama-cpp-python answers a ``response_format`` it does not know) say the request as configured will
never succeed: retrying it six times per request only hides the message. A few 4xx concern one
request only (its prompt is too long, a content filter refused it): that request fails alone.
"""

from __future__ import annotations

import re

import aiohttp

# the dispatcher's outcome kinds
RETRY = "retry"
REQUEST = "fatal"  # this request fails, the endpoint is fine
CONFIG = "config"  # the endpoint as configured refuses every request

_VALIDATION = re.compile(
    r"validation errors? for|errors\.pydantic\.dev|\bInput should be\b|invalid_request_error|\"loc\"\s*:|"
    r"unrecognized request argument|extra inputs are not permitted|\bfield required\b",
    re.IGNORECASE,
)
_REQUEST_ONLY = re.compile(
    r"context_length_exceeded|maximum context length|too many tokens|content_filter|content management policy|"
    r"ResponsibleAIPolicyViolation",
    re.IGNORECASE,
)


def failure_kind(status: int, message: str) -> str:
    """RETRY, REQUEST or CONFIG for a non-200, non-429 answer with this (error) message."""
    if status in (408, 409) or (status >= 500 and not _VALIDATION.search(message)):
        return RETRY
    if status in (400, 413, 422) and _REQUEST_ONLY.search(message):
        return REQUEST
    return CONFIG


class ResponseTooLarge(ValueError):
    """The answer passed the endpoint's ``max_response_bytes``: read no further, treated as broken."""


async def read_capped(response: aiohttp.ClientResponse, limit: int, truncate: bool = False) -> bytes:
    """The body, read no further than ``limit`` bytes: past it ``ResponseTooLarge`` (or, with
    ``truncate``, the first ``limit`` bytes: enough of an error page to say what it is)."""
    if response.content_length is not None and response.content_length > limit and not truncate:
        raise ResponseTooLarge(f"answer of {response.content_length:,} bytes exceeds max_response_bytes ({limit:,})")
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if truncate:
                return b"".join(chunks)[:limit]
            raise ResponseTooLarge(f"answer exceeds max_response_bytes ({limit:,})")
    return b"".join(chunks)
