"""Streamed chat completions (``"stream": true``): server-sent events assembled into the body a plain
answer has, read under deadlines that start when the server starts the work.

A streaming server sends its first event when it starts generating (llama-cpp-python, vLLM, OpenAI,
Azure): the time before it is the queue's, the time after it the work's. ``Deadline`` gives the queue a
generous limit of its own, the work its usual one counted from the first event, and each gap between
events a stall limit (a server that started, then hung). An ``error`` event or a stream that ends
before a finish reason is a broken answer, retried like a dropped connection; llama-cpp-python ends a
stream early that way whenever another request is waiting (unless started with
``--interrupt_requests False``).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from semtel_dagster.core.llm.transport_errors import ResponseTooLarge

EVENT_STREAM = "text/event-stream"
_DONE = b"[DONE]"

# what ran out when an attempt timed out
PLAIN = "total"  # a plain request: the whole of it (the server's queue included)
QUEUE = "queue"  # streamed: the server had not started (no first event)
WORK = "work"  # streamed: started, not finished in the work's time
STALL = "stall"  # streamed: started, then no event for the stall limit


class StreamBroken(ValueError):
    """The stream broke: an ``error`` event, or data that is no completion chunk."""


class StreamCutShort(StreamBroken):
    """The stream ended before the answer did (no finish reason)."""


@dataclass(frozen=True)
class Limits:
    """An attempt's time limits. Plain: ``total_s`` for the whole request. Streamed: ``queue_s`` until the
    first event, ``work_s`` from it to the end, and at most ``stall_s`` between events."""

    total_s: float
    queue_s: float
    work_s: float
    stall_s: float


class Deadline:
    """One asyncio timeout whose deadline moves with the answer; ``phase`` says which limit is the one
    running (after a timeout: the one that ran out)."""

    def __init__(self, limits: Limits, streamed: bool) -> None:
        self.limits = limits
        self.phase = QUEUE if streamed else PLAIN
        self._timer: asyncio.Timeout | None = None
        self._work_ends = math.inf
        self.first_event_at: float | None = None  # time.monotonic() of the first event

    @property
    def seconds(self) -> float:
        """The limit of the current phase."""
        return {PLAIN: self.limits.total_s, QUEUE: self.limits.queue_s, WORK: self.limits.work_s}.get(
            self.phase, self.limits.stall_s
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with asyncio.timeout(self.seconds) as timer:
            self._timer = timer
            yield

    def unstreamed(self) -> None:
        """From now on a plain request's limit (the server refused to stream)."""
        self.phase = PLAIN
        if self._timer is not None:
            self._timer.reschedule(asyncio.get_running_loop().time() + self.limits.total_s)

    def event(self) -> None:
        """An event arrived: the first starts the work's clock, each one moves the stall limit on."""
        if self.phase == PLAIN or self._timer is None:
            return
        now = asyncio.get_running_loop().time()
        if self.phase == QUEUE:
            self._work_ends = now + self.limits.work_s
            self.first_event_at = time.monotonic()
        stall_ends = now + self.limits.stall_s
        self.phase = STALL if stall_ends < self._work_ends else WORK
        self._timer.reschedule(min(stall_ends, self._work_ends))

    def timed_out(self, name: str) -> str:
        """What ran out, for the error row (``timed out`` marks a timeout: its prompt may be billed)."""
        if self.phase == QUEUE:
            return f"timed out after {self.seconds:.1f}s on {name} before the answer started (queue)"
        if self.phase == WORK:
            return f"timed out {self.seconds:.1f}s into the answer on {name} (work)"
        if self.phase == STALL:
            return f"timed out on {name}: no event for {self.seconds:.1f}s (stall)"
        return f"timed out after {self.seconds:.1f}s on {name}"


class Assembly:
    """A completion built from its chunks: choice 0's content deltas, the last finish reason, the usage
    object (sent last, when ``stream_options.include_usage`` is honoured)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.head: dict = {}

    def add(self, chunk: object) -> None:
        if not isinstance(chunk, dict):
            raise StreamBroken("stream event is not a JSON object")
        if "error" in chunk or chunk.get("object") == "error":
            raise StreamBroken(f"error event: {_error_text(chunk)}")
        if not self.head:
            self.head = {key: chunk[key] for key in ("id", "model", "created") if key in chunk}
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():  # Azure's content-filter events and the usage event have none
            if choice.get("index", 0) != 0:
                continue
            content = (choice.get("delta") or {}).get("content")
            if content is not None:
                if not isinstance(content, str):
                    raise TypeError("delta.content is not a string")
                self.parts.append(content)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def completion(self) -> dict:
        """The body a plain answer would have had; only once the answer has finished."""
        if self.finish_reason is None:
            raise StreamCutShort("stream ended before the answer finished (no finish_reason)")
        message = {"role": "assistant", "content": "".join(self.parts)}
        body = {
            **self.head,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage is not None:
            body["usage"] = self.usage
        return body


async def read_stream(response: aiohttp.ClientResponse, limit: int, deadline: Deadline) -> dict:
    """The completion of an event stream, read no further than ``limit`` bytes. Each ``data:`` line is one
    event (comments such as keep-alive pings are no progress); ``[DONE]`` or the end of the body ends it."""
    assembly = Assembly()
    size = 0
    event = b""
    async for line in response.content:
        size += len(line)
        if size > limit:
            raise ResponseTooLarge(f"stream exceeds max_response_bytes ({limit:,})")
        field, _, value = line.rstrip(b"\r\n").partition(b":")
        value = value.removeprefix(b" ")
        if field == b"event":
            event = value
        elif not field and not value:
            event = b""  # a blank line ends an event
        elif field == b"data":
            deadline.event()
            if value == _DONE:
                break
            chunk = json.loads(value)
            if event == b"error":
                raise StreamBroken(f"error event: {_error_text(chunk)}")
            assembly.add(chunk)
    return assembly.completion()


def _error_text(chunk: object) -> str:
    error = chunk.get("error", chunk) if isinstance(chunk, dict) else chunk
    return str(error.get("message", error) if isinstance(error, dict) else error)[:2000]
