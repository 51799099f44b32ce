"""Every bad record of the week being run shows in that week's rejects: whole-file problems, records
outside the partition range, files removed mid-ingest; gzip found by its magic bytes."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import time
import tracemalloc
from pathlib import Path

from semtel_dagster.core.ingest import landing
from semtel_dagster.core.ingest.landing import is_gzip, read_file, read_landing

W1 = dt.date(2026, 11, 16)
W2 = W1 + dt.timedelta(days=7)
OLD = dt.datetime(2026, 6, 3, tzinfo=dt.UTC).timestamp()  # a modification time far from the weeks run


def _rec(cid: str, started_at: str = "2026-11-17T10:00:00Z") -> dict:
    return {"conversation_id": cid, "started_at": started_at, "messages": [{"role": "user", "content": "hi"}]}


def _lines(*records: dict) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _landed(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))
    return path


def _refs(result) -> dict[str, str]:
    return dict(zip(result.rejects["record_ref"], result.rejects["reason"]))


def test_truncated_gzip_is_reported_in_every_week_it_fed_not_its_mtime_week(tmp_path):
    records = [_rec(f"a{i}") for i in range(200)] + [_rec(f"b{i}", "2026-11-24T10:00:00Z") for i in range(200)]
    stream = gzip.compress(_lines(*records), mtime=0)
    _landed(tmp_path / "feed.jsonl.gz", stream[: len(stream) * 3 // 4])
    for week in (W1, W2):
        reasons = [r for r in read_landing(tmp_path, week).rejects["reason"] if r.startswith("unreadable file: ")]
        assert len(reasons) == 1, week
    assert read_landing(tmp_path, dt.date(2026, 6, 1)).rejects.is_empty()  # not the mtime week


def test_wholly_unreadable_file_shows_in_the_run_week_or_its_dated_path_week(tmp_path):
    _landed(tmp_path / "undated" / "bad.jsonl.gz", b"\x1f\x8b" + b"\x00garbage" * 100)
    _landed(tmp_path / "2026-11-18" / "bad.jsonl.gz", b"\x1f\x8b" + b"\x00garbage" * 100)
    w1, w2 = read_landing(tmp_path, W1), read_landing(tmp_path, W2)
    assert set(_refs(w1)) == {"undated/bad.jsonl.gz:1", "2026-11-18/bad.jsonl.gz:1"}
    assert set(_refs(w2)) == {"undated/bad.jsonl.gz:1"}  # nothing says which week it feeds: every run sees it
    assert all(r.startswith("unreadable file: ") for r in _refs(w1).values())


def test_records_outside_the_partition_range_are_rejected_with_a_reason(tmp_path):
    _landed(
        tmp_path / "a.jsonl",
        _lines(_rec("ok"), _rec("early", "2019-03-05T10:00:00Z"), _rec("far", "9999-12-31T23:00:00Z"), _rec("ok2")),
    )
    first = dt.date(2025, 1, 6)
    in_first = _refs(read_landing(tmp_path, first, first_week=first))
    assert list(in_first) == ["a.jsonl:2"]
    assert (
        in_first["a.jsonl:2"]
        == "out of range: started_at 2019-03-05T10:00:00+00:00 is before the first partition week 2025-01-06"
    )
    home = read_landing(tmp_path, W1, first_week=first)  # the file's own week holds its future record
    assert home.conversations["conversation_id"].to_list() == ["ok", "ok2"]
    assert _refs(home) == {"a.jsonl:3": "out of range: started_at 9999-12-31T23:00:00+00:00 is in the future"}


def test_a_file_removed_after_listing_is_a_reject_not_a_crash(tmp_path, monkeypatch):
    _landed(tmp_path / "a.jsonl", _lines(_rec("a")))
    _landed(tmp_path / "b.jsonl", _lines(_rec("b")))
    listed = landing.landing_files

    def listed_then_removed(folder, input_format="canonical"):  # a producer deletes b.jsonl meanwhile
        files = listed(folder, input_format)
        (tmp_path / "b.jsonl").unlink()
        return files

    monkeypatch.setattr(landing, "landing_files", listed_then_removed)
    result = read_landing(tmp_path, W1)
    assert result.conversations["conversation_id"].to_list() == ["a"]
    assert list(_refs(result)) == ["b.jsonl:1"]
    assert _refs(result)["b.jsonl:1"].startswith("file vanished during ingest: ")


def test_gzip_is_found_by_magic_bytes_whatever_the_name(tmp_path):
    _landed(tmp_path / "named-plain.jsonl", gzip.compress(_lines(_rec("z"))))
    _landed(tmp_path / "named-gz.jsonl.gz", _lines(_rec("p")))
    assert sorted(read_landing(tmp_path, W1).conversations["conversation_id"]) == ["p", "z"]
    assert read_file(tmp_path / "named-plain.jsonl").conversations["conversation_id"].to_list() == ["z"]


def test_gzip_check_reads_two_bytes_not_the_file(tmp_path):
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as fh:
        fh.truncate(2 << 30)  # 2 GiB, sparse
    tracemalloc.start()
    started = time.monotonic()
    assert not is_gzip(big)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - started < 0.5 and peak < 1 << 20
