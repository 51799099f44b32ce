"""Delta Lake I/O on real tables in tmp_path (semtel_dagster.core.lake.delta)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from deltalake import DeltaTable

from semtel_dagster.core.lake import tables
from semtel_dagster.core.lake.delta import (
    append,
    overwrite_weeks,
    read_week_batches,
    read_weeks,
    table_exists,
    table_uri,
    week_predicate,
)

W1 = dt.date(2024, 1, 1)
W2 = dt.date(2024, 1, 8)
W3 = dt.date(2024, 1, 15)
W5 = dt.date(2024, 1, 29)
SCHEMA = tables.CONVERSATIONS_TRUNCATED


def _frame(rows):
    return pl.DataFrame(
        [
            {
                "conversation_id": cid,
                "week_start": week,
                "transcript": text,
                "tokens_before": 1,
                "tokens_after": 1,
                "strategy": "none",
                "tokenizer": "cl100k_base",
            }
            for cid, week, text in rows
        ],
        schema=SCHEMA,
    )


def _all(uri):
    return pl.read_delta(uri).sort("week_start", "conversation_id")


def test_week_predicate():
    assert week_predicate([W1]) == "week_start >= '2024-01-01' AND week_start < '2024-01-08'"
    assert week_predicate([W3, W1, W2, W2]) == "week_start >= '2024-01-01' AND week_start < '2024-01-22'"
    assert week_predicate([W5, W1]) == "week_start IN ('2024-01-01', '2024-01-29')"
    with pytest.raises(ValueError):
        week_predicate([])


def test_table_uri():
    assert table_uri("/lake/", "x") == "/lake/x"
    assert table_uri("s3://b/lake", "x") == "s3://b/lake/x"


def test_read_missing_table_is_empty(tmp_path):
    uri = str(tmp_path / "nothing")
    assert not table_exists(uri)
    out = read_weeks(uri, SCHEMA, [W1])
    assert out.height == 0 and out.schema == SCHEMA


def test_overwrite_replaces_only_given_week(tmp_path):
    uri = str(tmp_path / "t")
    overwrite_weeks(uri, _frame([("a", W1, "a1"), ("b", W1, "b1")]), SCHEMA, [W1])
    overwrite_weeks(uri, _frame([("c", W2, "c2")]), SCHEMA, [W2])
    assert table_exists(uri)
    v = overwrite_weeks(uri, _frame([("a", W1, "a1-new")]), SCHEMA, [W1])
    assert v == DeltaTable(uri).version()
    assert _all(uri).select("conversation_id", "week_start", "transcript").rows() == [
        ("a", W1, "a1-new"),
        ("c", W2, "c2"),
    ]
    assert read_weeks(uri, SCHEMA, [W2]).get_column("conversation_id").to_list() == ["c"]
    assert read_weeks(uri, SCHEMA, [W1, W2]).height == 2
    assert read_weeks(uri, SCHEMA, [W3]).height == 0
    assert read_weeks(uri, SCHEMA, [W1]).schema == SCHEMA
    assert DeltaTable(uri).metadata().partition_columns == ["week_start"]


def test_rerun_is_idempotent(tmp_path):
    uri = str(tmp_path / "t")
    frame = _frame([("a", W1, "x"), ("b", W1, "y"), ("c", W2, "z")])
    overwrite_weeks(uri, frame, SCHEMA, [W1, W2])
    first = _all(uri)
    v1 = DeltaTable(uri).version()
    overwrite_weeks(uri, frame, SCHEMA, [W1, W2])
    assert DeltaTable(uri).version() == v1 + 1
    assert _all(uri).equals(first)
    assert first.height == 3


def test_non_contiguous_weeks_leave_the_gap_alone(tmp_path):
    uri = str(tmp_path / "t")
    overwrite_weeks(uri, _frame([("a", W1, "1"), ("m", W3, "3"), ("z", W5, "5")]), SCHEMA, [W1, W3, W5])
    overwrite_weeks(uri, _frame([("a2", W1, "1b"), ("z2", W5, "5b")]), SCHEMA, [W1, W5])
    assert _all(uri).select("conversation_id", "week_start").rows() == [("a2", W1), ("m", W3), ("z2", W5)]


def test_rows_outside_the_week_raise_and_write_nothing(tmp_path):
    uri = str(tmp_path / "t")
    overwrite_weeks(uri, _frame([("a", W1, "x")]), SCHEMA, [W1])
    version = DeltaTable(uri).version()
    with pytest.raises(ValueError, match="outside"):
        overwrite_weeks(uri, _frame([("b", W1, "y"), ("c", W2, "z")]), SCHEMA, [W1])
    assert DeltaTable(uri).version() == version
    assert _all(uri).get_column("conversation_id").to_list() == ["a"]


def test_missing_columns_raise(tmp_path):
    with pytest.raises(ValueError, match="missing columns"):
        overwrite_weeks(str(tmp_path / "t"), _frame([("a", W1, "x")]).drop("tokenizer"), SCHEMA, [W1])


def test_overwrite_with_no_rows_clears_the_week(tmp_path):
    uri = str(tmp_path / "t")
    overwrite_weeks(uri, _frame([("a", W1, "x"), ("b", W2, "y")]), SCHEMA, [W1, W2])
    overwrite_weeks(uri, _frame([]), SCHEMA, [W1])
    assert _all(uri).get_column("conversation_id").to_list() == ["b"]


def test_append_adds_rows(tmp_path):
    uri = str(tmp_path / "t")
    append(uri, _frame([("a", W1, "x")]), SCHEMA)
    append(uri, _frame([("b", W1, "y"), ("c", W2, "z")]), SCHEMA)
    append(uri, _frame([("a", W1, "x")]), SCHEMA)  # append never deduplicates
    out = _all(uri)
    assert out.get_column("conversation_id").to_list() == ["a", "a", "b", "c"]
    assert out.schema == SCHEMA
    assert read_weeks(uri, SCHEMA, [W2]).get_column("conversation_id").to_list() == ["c"]


def test_nested_schema_roundtrip(tmp_path):
    uri = str(tmp_path / "responses")
    row = {
        "request_id": "r1",
        "week_start": W1,
        "conversation_ids": ["a", "b"],
        "classifiers": ["topic"],
        "prompt_name": "topic",
        "prompt_version": "v1",
        "model": "m",
        "endpoint": "e",
        "status": "ok",
        "error": None,
        "finish_reason": "stop",
        "raw_text": '{"label": "math"}',
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "latency_ms": 1.5,
        "attempts": 1,
        "rate_limited": 0,
        "created_at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    }
    frame = pl.DataFrame([row], schema=tables.LLM_RESPONSES)
    append(uri, frame, tables.LLM_RESPONSES)
    out = read_weeks(uri, tables.LLM_RESPONSES, [W1])
    assert out.equals(frame)


def test_a_week_written_as_a_stream_of_frames_is_one_commit_read_back_in_batches(tmp_path, monkeypatch):
    import semtel_dagster.core.lake.delta as delta

    uri = str(tmp_path / "t")
    overwrite_weeks(uri, _frame([("old", W1, "x"), ("b", W2, "y")]), SCHEMA, [W1, W2])
    before = DeltaTable(uri).version()
    parts = (_frame([(f"c{k}-{i}", W1, "t" * k) for i in range(50)]) for k in range(7))
    version = overwrite_weeks(uri, parts, SCHEMA, [W1])
    assert version == before + 1  # one commit for every frame
    week = delta.scan_week(uri, SCHEMA, W1, version).collect()
    assert week.height == 350 and "old" not in week.get_column("conversation_id").to_list()
    assert week.schema == SCHEMA
    monkeypatch.setattr(delta, "_BATCH_ROWS", 64)
    batches = list(delta.read_week_batches(uri, SCHEMA, W1, columns=["conversation_id", "transcript"]))
    assert len(batches) > 1 and all(b.columns == ["conversation_id", "transcript"] for b in batches)
    assert pl.concat(batches).sort("conversation_id").equals(week.select("conversation_id", "transcript").sort("conversation_id"))
    assert delta.scan_week(str(tmp_path / "none"), SCHEMA, W1).collect().equals(tables.empty(SCHEMA))


def test_a_stream_with_a_row_outside_the_week_commits_nothing(tmp_path):
    uri = str(tmp_path / "t")
    overwrite_weeks(uri, _frame([("a", W1, "x")]), SCHEMA, [W1])
    version = DeltaTable(uri).version()
    parts = iter([_frame([("b", W1, "y")]), _frame([("c", W2, "z")])])
    with pytest.raises(ValueError, match="outside"):
        overwrite_weeks(uri, parts, SCHEMA, [W1])
    assert DeltaTable(uri).version() == version
    assert _all(uri).get_column("conversation_id").to_list() == ["a"]


def test_batches_of_a_week_written_before_a_column_was_added_read_it_as_null(tmp_path):
    uri = str(tmp_path / "t")
    older = SCHEMA.to_frame().drop("tokenizer").schema  # the contract before it gained a column
    overwrite_weeks(uri, _frame([("a", W1, "x")]).drop("tokenizer"), older, [W1])
    overwrite_weeks(uri, _frame([("b", W2, "y")]), SCHEMA, [W2])  # the new contract, merged into the table
    (batch,) = read_week_batches(uri, SCHEMA, W1)
    assert batch.schema == SCHEMA
    assert batch.select("conversation_id", "tokenizer").rows() == [("a", None)]
    assert pl.concat(read_week_batches(uri, SCHEMA, W2)).equals(_frame([("b", W2, "y")]))
