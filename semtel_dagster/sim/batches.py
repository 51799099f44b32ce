"""The simulator's batch API: a **stand-in** for OpenAI's ``/v1/files`` and ``/v1/batches``, for tests
and the demo only. It keeps files and batches in memory, answers items with the simulator's own labeller
(no quota, as a provider's separate batch quota), and moves batches through the documented statuses on
a configurable clock (``SimBatchConfig``): validating → in_progress → finalizing → completed, or failed
(the endpoint's enqueued-token limit exceeded: ``errors.data[0].code = token_limit_exceeded``), expired
(half the items done, the rest ``batch_expired`` error lines) or cancelling → cancelled.

Routes, under ``/<name>/v1`` or ``/v1`` (and ``/openai`` for Azure-style clients):
``POST /files`` (multipart, purpose ``batch``), ``GET /files``, ``GET /files/{id}/content``,
``POST /batches``, ``GET /batches``, ``GET /batches/{id}``, ``POST /batches/{id}/cancel``.
Batches created per endpoint are counted in ``GET /sim/batches``.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from semtel_dagster.core.llm.batch_state import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    FAILED,
    FINALIZING,
    IN_PROGRESS,
    TERMINAL,
    TOKEN_LIMIT_EXCEEDED,
    VALIDATING,
    can_move,
)

if TYPE_CHECKING:
    from semtel_dagster.sim.server import EndpointState, SimApp

PREFIXES = ("/v1", "/{endpoint}/v1", "/openai", "/{endpoint}/openai")


@dataclass
class SimFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int = field(default_factory=lambda: int(time.time()))

    def info(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
        }


@dataclass
class SimBatch:
    id: str
    endpoint: str
    input_file_id: str
    metadata: dict
    lines: list[dict]
    prompt_tokens: int
    created: float = field(default_factory=time.time)
    status: str = VALIDATING
    cancelled_at: float | None = None
    errors: list[dict] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    ended: float | None = None


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}, status=status
    )


class BatchService:
    def __init__(self, sim: SimApp) -> None:
        self.sim = sim
        self.files: dict[str, SimFile] = {}
        self.batches: dict[str, SimBatch] = {}

    def routes(self, router: web.UrlDispatcher) -> None:
        for prefix in PREFIXES:
            router.add_post(f"{prefix}/files", self.upload)
            router.add_get(f"{prefix}/files", self.list_files)
            router.add_get(prefix + "/files/{file_id}/content", self.content)
            router.add_post(f"{prefix}/batches", self.create)
            router.add_get(f"{prefix}/batches", self.list_batches)
            router.add_get(prefix + "/batches/{batch_id}", self.get)
            router.add_post(prefix + "/batches/{batch_id}/cancel", self.cancel)
        router.add_get("/sim/batches", self.summary)

    def _state(self, request: web.Request) -> EndpointState | web.Response:
        return self.sim._state_for(request)

    # ---- files
    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "batch" or not isinstance(upload, web.FileField):
            return _error(400, "a multipart 'file' with purpose 'batch' is required", "invalid_value")
        item = SimFile("file-" + uuid.uuid4().hex[:24], upload.filename, "batch", upload.file.read())
        self.files[item.id] = item
        return web.json_response(item.info())

    async def list_files(self, request: web.Request) -> web.Response:
        purpose = request.query.get("purpose")
        items = [f.info() for f in reversed(self.files.values()) if purpose in (None, f.purpose)]
        return web.json_response(_page(items, request))

    async def content(self, request: web.Request) -> web.Response:
        item = self.files.get(request.match_info["file_id"])
        if item is None:
            return _error(404, "No such file", "not_found")
        return web.Response(body=item.content, content_type="application/octet-stream")

    # ---- batches
    async def create(self, request: web.Request) -> web.Response:
        st = self._state(request)
        if isinstance(st, web.Response):
            return st
        body = await request.json()
        source = self.files.get(body.get("input_file_id", ""))
        if source is None:
            return _error(400, "input_file_id is not an uploaded file", "invalid_value")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be '24h'", "invalid_value")
        from semtel_dagster.sim.server import prompt_tokens

        lines = [json.loads(raw) for raw in source.content.splitlines() if raw.strip()]
        tokens = sum(prompt_tokens(line["body"]["messages"]) for line in lines)
        batch = SimBatch("batch_" + uuid.uuid4().hex[:24], st.cfg.name, source.id, body.get("metadata") or {}, lines, tokens)
        limit = st.cfg.batch.enqueued_token_limit
        if limit is not None and self._enqueued(st.cfg.name) + tokens > limit:
            message = (
                f"Enqueued token limit reached for {st.cfg.model} on simulated endpoint {st.cfg.name!r}. "
                f"Limit: {limit} enqueued tokens. Please try again once some in_progress batches have been completed."
            )
            batch.errors = [{"code": TOKEN_LIMIT_EXCEEDED, "message": message, "param": None, "line": None}]
            self._move(batch, FAILED)
        self.batches[batch.id] = batch
        return web.json_response(self._view(batch, st))

    async def list_batches(self, request: web.Request) -> web.Response:
        st = self._state(request)
        if isinstance(st, web.Response):
            return st
        items = [self._view(b, st) for b in reversed(self.batches.values()) if b.endpoint == st.cfg.name]
        return web.json_response(_page(items, request))

    def _batch(self, request: web.Request) -> tuple[SimBatch, EndpointState] | web.Response:
        st = self._state(request)
        if isinstance(st, web.Response):
            return st
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None or batch.endpoint != st.cfg.name:
            return _error(404, "No such batch", "not_found")
        return batch, st

    async def get(self, request: web.Request) -> web.Response:
        found = self._batch(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self._view(*found))

    async def cancel(self, request: web.Request) -> web.Response:
        found = self._batch(request)
        if isinstance(found, web.Response):
            return found
        batch, st = found
        self._advance(batch, st)
        if batch.status in TERMINAL:
            return _error(409, f"Cannot cancel a batch with status {batch.status}", "invalid_state")
        batch.cancelled_at = time.time()
        self._move(batch, CANCELLING)
        return web.json_response(self._view(batch, st))

    async def summary(self, request: web.Request) -> web.Response:
        created: dict[str, int] = {}
        items: dict[str, int] = {}
        for b in self.batches.values():
            created[b.endpoint] = created.get(b.endpoint, 0) + 1
            items[b.endpoint] = items.get(b.endpoint, 0) + len(b.lines)
        keys = [b.metadata.get("batch_key") for b in self.batches.values()]
        return web.json_response({"created": created, "items": items, "batch_keys": keys, "files": len(self.files)})

    # ---- the clock
    def _enqueued(self, endpoint: str) -> int:
        return sum(b.prompt_tokens for b in self.batches.values() if b.endpoint == endpoint and b.status not in TERMINAL)

    def _move(self, batch: SimBatch, status: str) -> None:
        if not can_move(batch.status, status):
            raise AssertionError(f"batch {batch.id}: {batch.status} -> {status} is not a documented transition")
        batch.status = status

    def _advance(self, batch: SimBatch, st: EndpointState) -> None:
        """Move ``batch`` as far as its age allows; items are answered when it reaches its end."""
        if batch.status in TERMINAL:
            return
        cfg = st.cfg.batch
        now = time.time()
        if batch.status == CANCELLING:
            if batch.cancelled_at is not None and now - batch.cancelled_at >= cfg.finalizing_s:
                self._finish(batch, st, CANCELLED, answered=0)
            return
        age = now - batch.created
        if batch.status == VALIDATING and age >= cfg.validating_s:
            self._move(batch, IN_PROGRESS)
        if batch.status == IN_PROGRESS and age >= cfg.validating_s + cfg.completion_s:
            if random.Random(f"{st.cfg.seed}:{batch.id}").random() < cfg.expire_rate:
                self._finish(batch, st, EXPIRED, answered=(len(batch.lines) + 1) // 2)
                return
            self._move(batch, FINALIZING)
        if batch.status == FINALIZING and age >= cfg.validating_s + cfg.completion_s + cfg.finalizing_s:
            self._finish(batch, st, COMPLETED, answered=len(batch.lines))

    def _finish(self, batch: SimBatch, st: EndpointState, status: str, answered: int) -> None:
        from semtel_dagster.sim.server import chat_completion, cut_answer, produce_answer, prompt_tokens

        outputs, errors = [], []
        rng = random.Random(f"{st.cfg.seed}:{batch.id}:items")
        for i, line in enumerate(batch.lines):
            item = {"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": line.get("custom_id")}
            if i >= answered:
                code = "batch_expired" if status == EXPIRED else "batch_cancelled"
                errors.append(
                    {
                        **item,
                        "response": None,
                        "error": {"code": code, "message": f"This request was not run: the batch {status}."},
                    }
                )
            elif rng.random() < st.cfg.batch.item_failure_rate:
                error = {"message": "Simulated item failure.", "type": "server_error", "param": None, "code": "server_error"}
                errors.append(
                    {
                        **item,
                        "response": {"status_code": 500, "request_id": uuid.uuid4().hex, "body": {"error": error}},
                        "error": None,
                    }
                )
            else:
                body = line["body"]
                raw = json.dumps(body).encode()
                content, finish = produce_answer(st.cfg, body, raw, self.sim.choosers[st.cfg.name])
                content, finish, n_completion = cut_answer(content, finish, int(body.get("max_tokens") or 256))
                completion = chat_completion(st.cfg.model, content, finish, prompt_tokens(body["messages"]), n_completion)
                outputs.append(
                    {**item, "response": {"status_code": 200, "request_id": uuid.uuid4().hex, "body": completion}, "error": None}
                )
        batch.completed, batch.failed = len(outputs), len(errors)
        batch.output_file_id = self._result_file(batch, "output", outputs)
        batch.error_file_id = self._result_file(batch, "error", errors)
        batch.ended = time.time()
        self._move(batch, status)

    def _result_file(self, batch: SimBatch, kind: str, lines: list[dict]) -> str | None:
        if not lines:
            return None
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        item = SimFile("file-" + uuid.uuid4().hex[:24], f"{batch.id}_{kind}.jsonl", "batch_output", content)
        self.files[item.id] = item
        return item.id

    def _view(self, batch: SimBatch, st: EndpointState) -> dict[str, Any]:
        self._advance(batch, st)
        ended = int(batch.ended) if batch.ended else None
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created),
            "completed_at": ended if batch.status == COMPLETED else None,
            "expired_at": ended if batch.status == EXPIRED else None,
            "cancelled_at": ended if batch.status == CANCELLED else None,
            "failed_at": int(batch.created) if batch.status == FAILED else None,
            "request_counts": {"total": len(batch.lines), "completed": batch.completed, "failed": batch.failed},
            "metadata": batch.metadata,
        }


def _page(items: list[dict], request: web.Request) -> dict:
    """OpenAI's list shape: newest first, ``limit`` and ``after`` (an id)."""
    after = request.query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = int(request.query.get("limit", "20"))
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
