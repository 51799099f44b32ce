"""A week's requests through the providers' batch APIs: half price, answered within 24 hours.

Requests are written as JSONL files within each endpoint's limits (``batch_files``), uploaded, made
into batches and polled until they end; each finished batch's answers become ``llm_responses`` rows,
the same rows an online call writes, so parsing, gates and resume do not know the difference.

Idempotent by the ``llm_batches`` ledger: a batch's intent row (its deterministic key and request ids)
is appended before its file is uploaded, then its file id, then its batch id, then each status seen.
A rerun resumes every batch the ledger holds unfinished (an upload or a creation interrupted before
its id was recorded is found by the file's name or the batch's metadata), so nothing is submitted
twice; requests of unfinished batches are never put into a new one. Items a batch failed or left
unanswered (expired, cancelled) go into a new batch, up to ``max_submissions``, or online
(``on_failure: online``). The budget is reserved and charged at batch prices.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pickle
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import aiohttp
import polars as pl

from semtel_dagster.core.classify.plan import WALL_SEQUENTIAL, dispatch_streaming, merge_stats
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm import batch_state as bs
from semtel_dagster.core.llm.batch_api import BatchApi, BatchApiError
from semtel_dagster.core.llm.batch_files import BatchFile, BatchLine, batch_key, batch_line, check_fits, joins, parse_results
from semtel_dagster.core.llm.budget import Budget
from semtel_dagster.core.llm.dispatch import Dispatcher, answer_row, usage_of
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.progress import BatchProgress
from semtel_dagster.core.llm.redact import redact
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.stats import DispatchStats, EndpointStats

WriteRows = Callable[[list[dict]], None]
MAX_POLL_FAILURES = 10


class Ledger(Protocol):
    """The week's rows of ``llm_batches``: read once, appended to at every step."""

    def load(self) -> pl.DataFrame: ...

    def append(self, rows: list[dict]) -> None: ...


@dataclass(frozen=True)
class DeltaLedger:
    """The week's rows of the ``llm_batches`` Delta table (``tables.LLM_BATCHES``)."""

    uri: str
    week: dt.date

    def load(self) -> pl.DataFrame:
        return delta.read_weeks(self.uri, tables.LLM_BATCHES, [self.week])

    def append(self, rows: list[dict]) -> None:
        delta.append(self.uri, pl.DataFrame(rows, schema=tables.LLM_BATCHES), tables.LLM_BATCHES)


@dataclass(frozen=True)
class BatchRun:
    """Where a week's batches go: ``endpoints`` in batch mode; ``online`` answers what batches failed
    under ``on_failure: online`` (the batch endpoints themselves, called online, when empty)."""

    endpoints: list[Endpoint]
    settings: DispatchSettings
    ledger: Ledger
    online: tuple[Endpoint, ...] = ()
    log: Callable[[str], None] = print


def batch_settings(settings: DispatchSettings) -> DispatchSettings:
    """The dispatch settings with every model priced at its batch rate (budgets and cost)."""
    return replace(settings, prices={model: price.batch_price() for model, price in settings.prices.items()})


class _Spool:
    """The run's requests on local disk (by id), so a week's messages are not held in memory and a
    failed item can be sent again, in a batch or online."""

    def __init__(self, folder: str) -> None:
        self._file = (Path(folder) / "requests.pickle").open("w+b")
        self._index: dict[str, tuple[int, int]] = {}

    def put(self, request: LLMRequest) -> None:
        data = pickle.dumps(request)
        self._file.seek(0, 2)
        self._index[request.request_id] = (self._file.tell(), len(data))
        self._file.write(data)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._index

    def __getitem__(self, request_id: str) -> LLMRequest:
        offset, size = self._index[request_id]
        self._file.seek(offset)
        return pickle.loads(self._file.read(size))

    def close(self) -> None:
        self._file.close()


class _Submitter:
    def __init__(self, run: BatchRun, write: WriteRows, spool: _Spool, session: aiohttp.ClientSession) -> None:
        self.run = run
        self.write = write
        self.spool = spool
        self.apis = {e.name: BatchApi(e, session) for e in run.endpoints}
        self.endpoints = {e.name: e for e in run.endpoints}
        self.settings = batch_settings(run.settings)
        self.budget = Budget(self.settings, {e.model for e in run.endpoints})
        self.stats = DispatchStats(endpoints={e.name: EndpointStats() for e in run.endpoints})
        self.open: dict[str, bs.BatchRecord] = {}
        self.resubmit: deque[str] = deque()
        self.online: list[str] = []
        self.submitted: Counter[str] = Counter()  # batches each request went through (this run and earlier ones)
        self.refused: Counter[str] = Counter()  # ... of which refused whole for the enqueued-token limit (no try)
        self.poll_failures: Counter[str] = Counter()
        self.answered = self.failed = 0
        self._held: LLMRequest | None = None
        self._stopped = False  # the budget is spent
        self._crowded: set[str] = set()  # batches submitted while others of their endpoint were unfinished
        self._turn = 0

    # ------------------------------------------------------------------ ledger

    def _record(self, record: bs.BatchRecord) -> bs.BatchRecord:
        """Append the batch's new state before anything else happens with it."""
        self.run.ledger.append([record.row()])
        self.open[record.batch_key] = record
        return record

    # ------------------------------------------------------------------ building files

    def _pull(self, fresh: Iterator[LLMRequest]) -> LLMRequest | None:
        """The next request to put into a batch: items to resubmit first, then the plan's."""
        if self._held is not None:
            request, self._held = self._held, None
            return request
        if self.resubmit:
            return self.spool[self.resubmit.popleft()]
        return next(fresh, None)

    def _next_file(self, endpoint: Endpoint, fresh: Iterator[LLMRequest]) -> BatchFile | None:
        """The next file for ``endpoint`` within its limits, each request reserved against the budget."""
        limits = endpoint.batch
        lines: list[BatchLine] = []
        size = tokens = 0
        while not self._stopped and (request := self._pull(fresh)) is not None:
            line = batch_line(request, endpoint)
            check_fits(line, limits)
            if lines and not joins(line, len(lines), size, tokens, limits):
                self._held = request
                break
            if not self.budget.reserve(request):  # stopped: the rest gets no row, a rerun asks again
                self._stopped = True
                break
            lines.append(line)
            size += len(line.line)
            tokens += line.prompt_tokens
        if not lines:
            return None
        return BatchFile(tuple(line.request_id for line in lines), b"".join(line.line for line in lines), tokens)

    def _enqueued(self, endpoint: Endpoint) -> int:
        return sum(r.prompt_tokens for r in self.open.values() if r.endpoint == endpoint.name and r.status not in bs.TERMINAL)

    def _room(self, endpoint: Endpoint, tokens: int) -> bool:
        limit = endpoint.batch.max_enqueued_tokens
        return limit is None or self._enqueued(endpoint) + tokens <= limit or self._enqueued(endpoint) == 0

    # ------------------------------------------------------------------ the steps

    async def _submit(self, endpoint: Endpoint, file: BatchFile) -> None:
        submission = 1 + max(self.submitted[rid] for rid in file.request_ids)
        key = batch_key(self._week(file), endpoint.name, file.request_ids, submission)
        record = bs.BatchRecord(
            key,
            self._week(file),
            endpoint.name,
            endpoint.model,
            file.request_ids,
            file.prompt_tokens,
            len(file.content),
            bs.PLANNED,
        )
        if self._enqueued(endpoint):  # refused for the enqueued-token limit, it may wait for room
            self._crowded.add(key)
        self.submitted.update(file.request_ids)
        await self._advance(self._record(record), file.content)

    async def _advance(self, record: bs.BatchRecord, content: bytes | None = None) -> None:
        """Upload and create a batch not yet created (a resumed one looks for what it already did)."""
        api = self.apis[record.endpoint]
        if record.status == bs.PLANNED:
            file_id = await api.find_file(record.batch_key) if content is None else None
            if file_id is None:
                file_id = await api.upload(record.batch_key, content if content is not None else self._content(record))
            record = self._record(replace(record, input_file_id=file_id, status=bs.UPLOADED))
        if record.status == bs.UPLOADED:
            assert record.input_file_id is not None  # recorded with the uploaded status
            found = await api.find_batch(record.batch_key, record.input_file_id) if content is None else None
            batch = found or await api.create(record.batch_key, record.input_file_id)
            self._record(replace(record, batch_id=str(batch["id"]), status=str(batch["status"])))

    def _content(self, record: bs.BatchRecord) -> bytes:
        endpoint = self.endpoints[record.endpoint]
        return b"".join(batch_line(self.spool[rid], endpoint).line for rid in record.request_ids if rid in self.spool)

    def _week(self, file: BatchFile):
        return self.spool[file.request_ids[0]].week_start

    async def _poll(self, record: bs.BatchRecord) -> None:
        assert record.batch_id is not None
        batch = await self.apis[record.endpoint].get(record.batch_id)
        counts = batch.get("request_counts") or {}
        seen = replace(
            record,
            status=str(batch["status"]),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            output_file_id=batch.get("output_file_id"),
            error_file_id=batch.get("error_file_id"),
            error=_batch_error(batch),
        )
        if seen != record:
            record = self._record(seen)
        if record.status in bs.TERMINAL:
            await self._collect(record, batch)

    async def _poll_tolerant(self, record: bs.BatchRecord) -> None:
        """A poll that fails (the provider down for a while, within a batch's 24 hours) is tried at the
        next round; ``MAX_POLL_FAILURES`` in a row stop the run (the ledger keeps the batch for a rerun)."""
        try:
            await self._poll(record)
        except (BatchApiError, aiohttp.ClientError, TimeoutError) as exc:
            self.poll_failures[record.batch_key] += 1
            if self.poll_failures[record.batch_key] >= MAX_POLL_FAILURES:
                raise
            self.run.log(f"batch {record.batch_key} on {record.endpoint}: looking again next round ({type(exc).__name__}: {exc})")
        else:
            self.poll_failures.pop(record.batch_key, None)

    async def _collect(self, record: bs.BatchRecord, batch: dict) -> None:
        """Write a finished batch's answers; failed and unanswered items go on (new batch, online or error)."""
        api = self.apis[record.endpoint]
        endpoint = self.endpoints[record.endpoint]
        results = {}
        for file_id in (record.output_file_id, record.error_file_id):
            if file_id:
                results.update({r.request_id: r for r in parse_results(await api.content(file_id))})
        latency = _latency_ms(batch)
        stats = self.stats.endpoints[endpoint.name]
        rows, failures = [], []
        for rid in record.request_ids:
            if rid not in self.spool:  # a request the current plan no longer needs (prompt changed)
                continue
            request, result = self.spool[rid], results.get(rid)
            if result is not None and result.body is not None:
                usage = usage_of(request, result.body)
                self.budget.settle(request, endpoint.model, *usage)
                rows.append(
                    answer_row(request, endpoint, result.body, None, attempts=self._tries(rid), latency_ms=latency, usage=usage)
                )
                self._count(stats, usage)
            else:
                self.budget.settle(request, "", 0, 0)
                failures.append((rid, (result.error if result is not None else None) or record.error or f"batch {record.status}"))
        refused = record.status == bs.FAILED and (record.error or "").startswith(bs.TOKEN_LIMIT_EXCEEDED)
        requeue = refused and record.batch_key in self._crowded
        rows += self._failed(failures, endpoint, requeue)
        if rows:
            await asyncio.to_thread(self.write, rows)
        self.run.ledger.append([replace(record, status=bs.COLLECTED).row()])
        del self.open[record.batch_key]

    def _tries(self, request_id: str) -> int:
        return self.submitted[request_id] - self.refused[request_id]

    def _count(self, stats: EndpointStats, usage: tuple[int, int, int | None]) -> None:
        self.answered += 1
        self.stats.ok += 1
        self.stats.prompt_tokens += usage[0]
        self.stats.completion_tokens += usage[1]
        stats.ok += 1
        stats.prompt_tokens += usage[0]
        stats.completion_tokens += usage[1]

    def _failed(self, failures: list[tuple[str, str]], endpoint: Endpoint, requeue: bool) -> list[dict]:
        """Items a batch did not answer: in a new batch, online, or (out of submissions) an error row.
        A batch refused for the enqueued-token limit ran nothing: its items wait for room, uncounted."""
        rows = []
        secrets = self.apis[endpoint.name].transport.secrets()
        for rid, error in failures:
            if requeue:
                self.refused[rid] += 1
                self.resubmit.append(rid)
            elif endpoint.batch.on_failure == "online":
                self.online.append(rid)
            elif self._tries(rid) < endpoint.batch.max_submissions:
                self.resubmit.append(rid)
            else:
                request = self.spool[rid]
                message = f"batch item failed {self._tries(rid)} times: {error}"
                texts = [str(m.get("content", "")) for m in request.messages]
                rows.append(answer_row(request, None, None, redact(message, secrets, texts), attempts=self._tries(rid)))
                self.failed += 1
                self.stats.errors += 1
                self.stats.endpoints[endpoint.name].errors += 1
        return rows

    # ------------------------------------------------------------------ the loop

    async def run_week(self, requests: Iterable[LLMRequest], progress: BatchProgress) -> None:
        order = []
        for request in requests:  # on local disk first: a resumed batch may need any of them
            self.spool.put(request)
            order.append(request.request_id)
        progress.total = len(order)
        for record in bs.latest_records(self.run.ledger.load()):
            self.submitted.update(record.request_ids)  # earlier runs' batches count: keys stay unique
            if record.status != bs.COLLECTED and record.endpoint in self.endpoints:
                self.open[record.batch_key] = record
        in_flight = {rid for record in self.open.values() for rid in record.request_ids}
        for record in [r for r in self.open.values() if r.status in (bs.PLANNED, bs.UPLOADED)]:
            await self._advance(record)
        pending = (self.spool[rid] for rid in order if rid not in in_flight)
        while True:
            await self._submit_what_fits(pending)
            if not self.open:
                break
            for record in list(self.open.values()):
                await self._poll_tolerant(record)
            progress(Counter(r.status for r in self.open.values()), self.answered, self.failed)
            if self.open:
                await asyncio.sleep(min(self.endpoints[r.endpoint].batch.poll_s for r in self.open.values()))
        progress({}, self.answered, self.failed, force=True)

    async def _submit_what_fits(self, pending: Iterator[LLMRequest]) -> None:
        """New batches, round robin over the batch endpoints, while each has enqueued-token room."""
        blocked: set[str] = set()
        endpoints = list(self.endpoints.values())
        while len(blocked) < len(endpoints):
            endpoint = endpoints[self._turn % len(endpoints)]
            self._turn += 1
            if endpoint.name in blocked:
                continue
            file = self._next_file(endpoint, pending)
            if file is None:
                return
            if not self._room(endpoint, file.prompt_tokens):
                self._unreserve(file)
                blocked.add(endpoint.name)
                continue
            await self._submit(endpoint, file)

    def _unreserve(self, file: BatchFile) -> None:
        """Give a file that must wait back to the queue (its requests are built again later)."""
        for rid in file.request_ids:
            self.budget.settle(self.spool[rid], "", 0, 0)
        if self._held is not None:
            self.resubmit.appendleft(self._held.request_id)
            self._held = None
        self.resubmit.extendleft(reversed(file.request_ids))


def _batch_error(batch: dict) -> str | None:
    errors = (batch.get("errors") or {}).get("data") or []
    if not errors:
        return None
    first = errors[0]
    return f"{first.get('code') or 'error'}: {first.get('message') or ''}"[:300]


def _latency_ms(batch: dict) -> float | None:
    created, ended = batch.get("created_at"), batch.get("completed_at") or batch.get("expired_at") or batch.get("failed_at")
    return (float(ended) - float(created)) * 1000.0 if created and ended else None


async def submit_batches(requests: Iterable[LLMRequest], run: BatchRun, write: WriteRows) -> DispatchStats:
    """Answer ``requests`` through ``run``'s batch endpoints (see the module docstring); returns totals."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="semtel-batch-") as folder:
        spool = _Spool(folder)
        async with aiohttp.ClientSession(json_serialize=json.dumps) as session:
            submitter = _Submitter(run, write, spool, session)
            try:
                await submitter.run_week(requests, BatchProgress(0, run.log))
                stats = submitter.stats
                if submitter.online:
                    online = await _online(submitter, run)
                    stats = _add(stats, online)
            finally:
                spool.close()
    stats.requests = stats.ok + stats.errors
    stats.wall_seconds = time.monotonic() - started
    stats.budget_exhausted = int(submitter.budget.exhausted)
    stats.budget_spent_tokens = submitter.budget.spent_tokens
    stats.budget_spent_cost = submitter.budget.spent_cost
    return stats


async def _online(submitter: _Submitter, run: BatchRun) -> DispatchStats:
    requests = [submitter.spool[rid] for rid in submitter.online]
    run.log(f"{len(requests)} batch items failed: sending them online")
    dispatcher = Dispatcher(list(run.online or run.endpoints), run.settings)
    return await dispatch_streaming(dispatcher, requests, submitter.write)


def _add(a: DispatchStats, b: DispatchStats) -> DispatchStats:
    merged = merge_stats([a.as_dict(), b.as_dict()], WALL_SEQUENTIAL)
    endpoints = {name: EndpointStats(**counters) for name, counters in merged.pop("endpoints").items()}
    return DispatchStats(**merged, endpoints=endpoints)
