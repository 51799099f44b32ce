"""The life of a provider batch, as pure data: the provider's statuses and their order, the local steps
around them, and a batch's current state folded from the ``llm_batches`` ledger.

Local steps: ``planned`` (intent row, before upload) → ``uploaded`` (input file id known) → the
provider's statuses (``validating`` → ``in_progress`` → ``finalizing`` → ``completed``; ``failed``,
``expired``, ``cancelling`` → ``cancelled``) → ``collected`` (its answers are in ``llm_responses``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

PLANNED = "planned"
UPLOADED = "uploaded"
COLLECTED = "collected"

VALIDATING = "validating"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"
CANCELLING = "cancelling"
CANCELLED = "cancelled"

PROVIDER_STATUSES = (VALIDATING, IN_PROGRESS, FINALIZING, COMPLETED, FAILED, EXPIRED, CANCELLING, CANCELLED)
TERMINAL = frozenset({COMPLETED, FAILED, EXPIRED, CANCELLED})
# Where a provider batch may go next (OpenAI's documented lifecycle).
TRANSITIONS: dict[str, frozenset[str]] = {
    VALIDATING: frozenset({IN_PROGRESS, FAILED, CANCELLING}),
    IN_PROGRESS: frozenset({FINALIZING, EXPIRED, CANCELLING}),
    FINALIZING: frozenset({COMPLETED, EXPIRED}),
    CANCELLING: frozenset({CANCELLED}),
}
TOKEN_LIMIT_EXCEEDED = "token_limit_exceeded"  # a batch refused for the model's enqueued tokens: nothing ran


def can_move(status: str, to: str) -> bool:
    """Whether the provider may report ``to`` after ``status`` (a poll may skip intermediate statuses)."""
    if status == to:
        return True
    seen: set[str] = set()
    frontier = {status}
    while frontier:
        step = set().union(*(TRANSITIONS.get(s, frozenset()) for s in frontier)) - seen
        if to in step:
            return True
        seen |= step
        frontier = step
    return False


def next_step(status: str) -> str:
    """What a run does with a batch in ``status``: upload, create, poll, collect or nothing."""
    if status == PLANNED:
        return "upload"
    if status == UPLOADED:
        return "create"
    if status in TERMINAL:
        return "collect"
    if status == COLLECTED:
        return "done"
    if status in PROVIDER_STATUSES:
        return "poll"
    raise ValueError(f"unknown batch status {status!r}")


@dataclass(frozen=True)
class BatchRecord:
    """A batch's latest ledger row."""

    batch_key: str
    week_start: dt.date | None
    endpoint: str
    model: str
    request_ids: tuple[str, ...]
    prompt_tokens: int
    bytes: int
    status: str
    input_file_id: str | None = None
    batch_id: str | None = None
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: str | None = None

    def row(self) -> dict:
        return {**vars(self), "request_ids": list(self.request_ids), "updated_at": dt.datetime.now(dt.UTC)}


def latest_records(ledger: pl.DataFrame) -> list[BatchRecord]:
    """Each batch's current state: its newest ledger row (rows are appended, never rewritten)."""
    if not ledger.height:
        return []
    latest = ledger.with_row_index("_order").sort("updated_at", "_order").unique("batch_key", keep="last", maintain_order=True)
    fields = BatchRecord.__dataclass_fields__
    records = []
    for row in latest.sort("batch_key").iter_rows(named=True):
        values: dict = {k: v for k, v in row.items() if k in fields}
        records.append(BatchRecord(**{**values, "request_ids": tuple(values["request_ids"] or ())}))
    return records
