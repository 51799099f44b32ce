"""The landing index: a week's ingest opens only the files that can hold it, with the same result."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from semtel_dagster.core.ingest.index import INDEX_TABLE
from semtel_dagster.core.ingest.landing import read_landing

WEEKS = [dt.date(2026, 10, 5) + dt.timedelta(days=7 * k) for k in range(6)]


def _rec(cid: str, week: dt.date) -> dict:
    return {
        "conversation_id": cid,
        "started_at": f"{week + dt.timedelta(days=2)}T10:00:00Z",
        "messages": [{"role": "user", "content": cid}],
    }


def _landing(root: Path) -> Path:
    for k, week in enumerate(WEEKS):
        lines = [json.dumps(_rec(f"w{k}-{i}", week)) for i in range(30)] + ["{broken"]
        (root / f"day-{k}.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (root / f"day-{k}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "spans.jsonl").write_text("\n".join(json.dumps(_rec(f"s{k}", w)) for k, w in enumerate(WEEKS[:2])) + "\n")
    (root / "junk.jsonl.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 64)  # no week of its own: every week
    return root


def _same(a, b) -> bool:
    return a.conversations.equals(b.conversations) and a.rejects.sort("record_ref").equals(b.rejects.sort("record_ref"))


def test_indexed_reads_match_full_reads_and_open_only_the_weeks_files(tmp_path):
    landing, index = _landing(tmp_path / "landing"), str(tmp_path / "lake" / INDEX_TABLE)
    first = read_landing(landing, WEEKS[0], index_uri=index)  # builds the index: every file read once
    assert first.files_read == 8 and _same(first, read_landing(landing, WEEKS[0]))
    version = DeltaTable(index).version()
    for week in WEEKS:
        indexed, full = read_landing(landing, week, index_uri=index), read_landing(landing, week)
        assert _same(indexed, full), week
        assert indexed.files_read == (3 if week in WEEKS[:2] else 2)  # its day file, junk, and spans for weeks 0-1
    assert DeltaTable(index).version() == version  # nothing changed: nothing rewritten
    rows = pl.read_delta(index).sort("path")
    assert rows.filter(pl.col("path") == "junk.jsonl.gz")["every_week"].item()
    assert rows.filter(pl.col("path") == "spans.jsonl")["weeks"].to_list() == [WEEKS[:2]]


def test_changed_and_new_files_are_read_again(tmp_path):
    landing, index = _landing(tmp_path / "landing"), str(tmp_path / "lake" / INDEX_TABLE)
    read_landing(landing, WEEKS[0], index_uri=index)
    changed = landing / "day-5.jsonl"
    changed.write_text(changed.read_text() + json.dumps(_rec("moved", WEEKS[3])) + "\n")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    (landing / "late.jsonl.gz").write_bytes(gzip.compress((json.dumps(_rec("late", WEEKS[3])) + "\n").encode()))
    result = read_landing(landing, WEEKS[3], index_uri=index)
    assert {"moved", "late"} <= set(result.conversations["conversation_id"])
    assert _same(result, read_landing(landing, WEEKS[3]))
    assert read_landing(landing, WEEKS[3], index_uri=index).files_read == 4  # day-3, day-5, late, junk
