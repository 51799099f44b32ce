"""Optional engagement fields: carried through ingest when landed, null when not, synthetic in the sample."""

import datetime as dt
import json

import polars as pl

from semtel_dagster.core.ingest.adapters import adapt
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.lake import tables
from semtel_dagster.sim.sample import generate_week

WEEK = dt.date(2026, 11, 16)


def test_ingest_carries_engagement_fields_and_leaves_absent_ones_null(tmp_path):
    base = {"started_at": "2026-11-17T10:00:00Z", "messages": [{"role": "user", "content": "hi"}]}
    records = [
        {**base, "conversation_id": "a", "rating": 4, "thumbs_up": False, "session_seconds": 93.5, "returned_next_week": True},
        {**base, "conversation_id": "b"},
    ]
    (tmp_path / "w.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = read_landing(tmp_path, WEEK, first_week=WEEK)
    assert result.conversations.schema == tables.CONVERSATIONS
    rows = {r["conversation_id"]: r for r in result.conversations.iter_rows(named=True)}
    assert (rows["a"]["rating"], rows["a"]["thumbs_up"], rows["a"]["session_seconds"], rows["a"]["returned_next_week"]) == (
        4.0,
        False,
        93.5,
        True,
    )
    assert all(rows["b"][name] is None for name in tables.ENGAGEMENT)


def test_adapters_and_table_mapping_carry_engagement():
    record = {"messages": [{"role": "user", "content": "hi"}], "id": "x", "rating": 2}
    assert adapt("openai", record)[0]["rating"] == 2
    row = {"q": "hi", "stars": 5}
    from semtel_dagster.core.ingest.adapters import AdapterOptions

    assert adapt("table", row, AdapterOptions(column_mapping={"user": "q", "rating": "stars"}))[0]["rating"] == 5


def test_frames_built_without_engagement_conform_with_nulls():
    frame = pl.DataFrame({"conversation_id": ["a"], "week_start": [WEEK]})
    conformed = tables.conform(frame, tables.schema({"conversation_id": pl.String, "week_start": pl.Date, **tables.ENGAGEMENT}))
    assert conformed.row(0) == ("a", WEEK, None, None, None, None)


def test_sample_engagement_changes_nothing_else_and_follows_satisfaction():
    plain = generate_week(WEEK, n=300, seed=3)
    engaged = generate_week(WEEK, n=300, seed=3, engagement=True)
    assert plain.truth == engaged.truth
    assert len(plain.records) == len(engaged.records)
    pairs = [(json.loads(a), json.loads(b)) for a, b in zip(plain.records, engaged.records) if b"-bad-" not in a]
    assert all(a["messages"] == b["messages"] and a["started_at"] == b["started_at"] for a, b in pairs)
    with_fields = [b for _, b in pairs if "session_seconds" in b]
    assert len(with_fields) == 300
    truth = {t["conversation_id"]: int(t["satisfaction"]) for t in engaged.truth}
    rated = [(truth[r["conversation_id"]], r["rating"]) for r in with_fields if "rating" in r]
    assert 0.2 < len(rated) / 300 < 0.6  # feedback from a minority only
    high = [x for s, x in rated if s >= 4]
    low = [x for s, x in rated if s <= 2]
    assert sum(high) / len(high) > sum(low) / len(low)  # weakly tied to satisfaction
