"""The batch lifecycle as data: documented transitions, what a run does next, state folded from the ledger."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm import batch_state as bs


def test_documented_transitions_only():
    assert bs.can_move(bs.VALIDATING, bs.IN_PROGRESS) and bs.can_move(bs.VALIDATING, bs.COMPLETED)  # a poll may skip
    assert bs.can_move(bs.IN_PROGRESS, bs.EXPIRED) and bs.can_move(bs.CANCELLING, bs.CANCELLED)
    assert not bs.can_move(bs.COMPLETED, bs.IN_PROGRESS) and not bs.can_move(bs.FAILED, bs.COMPLETED)
    assert not bs.can_move(bs.FINALIZING, bs.CANCELLED) and bs.can_move(bs.VALIDATING, bs.EXPIRED)


@pytest.mark.parametrize(
    ("status", "step"),
    [
        (bs.PLANNED, "upload"),
        (bs.UPLOADED, "create"),
        (bs.VALIDATING, "poll"),
        (bs.IN_PROGRESS, "poll"),
        (bs.FINALIZING, "poll"),
        (bs.CANCELLING, "poll"),
        (bs.COMPLETED, "collect"),
        (bs.EXPIRED, "collect"),
        (bs.FAILED, "collect"),
        (bs.CANCELLED, "collect"),
        (bs.COLLECTED, "done"),
    ],
)
def test_next_step(status, step):
    assert bs.next_step(status) == step


def test_unknown_status_is_an_error():
    with pytest.raises(ValueError, match="unknown batch status"):
        bs.next_step("paused")


def test_latest_row_per_batch_is_its_state():
    week = dt.date(2026, 11, 16)
    record = bs.BatchRecord("k1", week, "a", "m", ("r1", "r2"), 10, 100, bs.PLANNED)
    other = bs.BatchRecord("k2", week, "a", "m", ("r3",), 5, 50, bs.PLANNED)
    rows = [record.row(), other.row()]
    rows.append(bs.BatchRecord(**{**vars(record), "status": bs.UPLOADED, "input_file_id": "file-1"}).row())
    rows.append(bs.BatchRecord(**{**vars(record), "status": bs.IN_PROGRESS, "input_file_id": "file-1", "batch_id": "b1"}).row())
    ledger = pl.DataFrame(rows, schema=tables.LLM_BATCHES)
    latest = {r.batch_key: r for r in bs.latest_records(ledger)}
    assert latest["k1"].status == bs.IN_PROGRESS and latest["k1"].batch_id == "b1" and latest["k1"].request_ids == ("r1", "r2")
    assert latest["k2"].status == bs.PLANNED
    assert bs.latest_records(tables.empty(tables.LLM_BATCHES)) == []
