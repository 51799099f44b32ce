"""A real aiohttp server on loopback whose every answer is a handler of the test's choosing: the faults
real providers show (500s, HTML pages, stalls, closed connections, echoed secrets, redirects) without
changing the simulator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from semtel_dagster.core.llm.requests import LLMRequest, request_id


@dataclass
class Call:
    method: str
    path: str
    query: dict
    headers: dict
    body: dict | None
    at: float = field(default_factory=time.monotonic)


def completion(content: str = '{"label": "math"}', model: str = "m", **extra) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
        **extra,
    }


class HandlerServer:
    """Serves every path with ``handler(request, call) -> web.StreamResponse``; records each ``Call``."""

    def __init__(self, handler):
        self.handler = handler
        self.calls: list[Call] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        call = Call(request.method, request.path, dict(request.query), dict(request.headers), body)
        self.calls.append(call)
        return await self.handler(request, call)

    def _serve(self):
        async def main():
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        asyncio.run(main())

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# Handlers for the faults real providers show.


async def ok(request, call):
    return web.json_response(completion())


async def always_500(request, call):
    return web.json_response({"error": {"message": "upstream exploded", "type": "server_error"}}, status=500)


async def html_200(request, call):
    return web.Response(text="<html><body>Gateway maintenance</body></html>", content_type="text/html")


async def empty_200(request, call):
    return web.Response(body=b"", content_type="application/json")


async def no_choices(request, call):
    return web.json_response({"id": "x", "object": "chat.completion", "choices": []})


async def stall(request, call):
    await asyncio.sleep(30)
    return web.json_response(completion())


async def mid_body_close(request, call):
    response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "5000"})
    await response.prepare(request)
    await response.write(b'{"id": "x", "choices": [')
    request.transport.close()
    return response


async def huge(request, call):
    return web.json_response(completion(content='{"label": "' + "x" * (2 * 1024 * 1024) + '"}'))


async def huge_chunked(request, call):
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(64):
        await response.write(b"x" * 32 * 1024)
    return response


# Streamed answers (``"stream": true``), as OpenAI-compatible servers send them.

USAGE = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}


def chunk(content: str | None = None, finish_reason: str | None = None, usage: dict | None = None) -> dict:
    """One ``chat.completion.chunk``: a content delta (the role alone when None), or only the usage."""
    delta = {"content": content} if content is not None else {"role": "assistant"}
    choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": choices,
        "usage": usage,
    }


def answer_chunks(content: str = '{"label": "math"}', usage: bool = True) -> list[dict]:
    """The events of one answer: role, content in three parts, finish reason, then the usage if asked."""
    third = max(1, len(content) // 3)
    parts = [content[:third], content[third : 2 * third], content[2 * third :]]
    tail = [chunk(usage=USAGE)] if usage else []
    return [chunk(), *(chunk(part) for part in parts), chunk(finish_reason="stop"), *tail]


async def open_stream(request) -> web.StreamResponse:
    """Headers at once, as vLLM and llama-cpp-python send them before the work starts."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    return response


async def send_event(response: web.StreamResponse, data: dict | str) -> None:
    payload = json.dumps(data) if isinstance(data, dict) else data
    await response.write(f"data: {payload}\r\n\r\n".encode())


def streaming(queued_s: float = 0.0, gap_s: float = 0.0, content: str = '{"label": "math"}'):
    """A server that streams: silent for ``queued_s`` (queued behind others), then the answer with
    ``gap_s`` between events, the usage when ``stream_options.include_usage`` asks for it; a plain
    request gets a plain answer."""

    async def handler(request, call):
        if not call.body.get("stream"):
            await asyncio.sleep(queued_s)
            return web.json_response(completion(content))
        response = await open_stream(request)
        await asyncio.sleep(queued_s)
        usage = bool((call.body.get("stream_options") or {}).get("include_usage"))
        for data in answer_chunks(content, usage):
            await send_event(response, data)
            await asyncio.sleep(gap_s)
        await send_event(response, "[DONE]")
        return response

    return handler


def plain_requests(
    n: int, *, prefix: str = "p", text: str = "question", week=None, system: str | None = None, prompt_tokens: int = 10
) -> list[LLMRequest]:
    """``n`` one-conversation ``topic`` requests with no response format: the dispatcher's unit of work,
    for tests that exercise transport and failure handling rather than prompts."""
    head = [{"role": "system", "content": system}] if system else []
    return [
        LLMRequest(
            request_id=request_id([f"{prefix}{i}"], ["topic"], "v"),
            week_start=week,
            conversation_ids=(f"{prefix}{i}",),
            classifiers=("topic",),
            prompt_name="topic",
            prompt_version="v",
            messages=[*head, {"role": "user", "content": f"{text} {i}"}],
            response_format=None,
            max_tokens=8,
            temperature=0.0,
            prompt_tokens=prompt_tokens,
        )
        for i in range(n)
    ]
