import datetime as dt
import gzip
import json
import os
from pathlib import Path

import pytest

from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.lake import tables
from semtel_dagster.sim.sample import write_week

W1 = dt.date(2026, 11, 16)
W2 = W1 + dt.timedelta(days=7)


def _rec(cid: str, started_at: str = "2026-11-17T10:00:00Z", **extra) -> dict:
    return {
        "conversation_id": cid,
        "started_at": started_at,
        "messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}],
        **extra,
    }


def _write(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = [x if isinstance(x, bytes) else (json.dumps(x) if isinstance(x, dict) else x).encode() for x in lines]
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def _reasons(result) -> dict[str, str]:
    return dict(zip(result.rejects["record_ref"], result.rejects["reason"]))


def test_each_malformed_kind_is_rejected_with_its_reason(tmp_path):
    _write(
        tmp_path / "a.jsonl",
        [
            _rec("ok"),  # 1
            '{"conversation_id": "x", "started_at": ',  # 2 broken json
            "[1, 2]",  # 3 not an object
            {k: v for k, v in _rec("m").items() if k != "messages"},  # 4 missing messages
            _rec("e", messages=[]),  # 5 empty messages
            _rec("b", messages=[{"role": "user", "content": "  "}]),  # 6 blank content
            _rec("u", messages=[{"role": "assistant", "content": "hi"}]),  # 7 no user message
            b'{"conversation_id": "caf\xe9"}',  # 8 invalid utf-8
            _rec("big", messages=[{"role": "user", "content": "x" * 500}]),  # 9 oversized
            _rec("d", started_at="last tuesday"),  # 10 bad started_at
            _rec("  "),  # 11 blank id
            _rec("r", messages=[{"role": "bot", "content": "hi"}]),  # 12 bad role
            "",  # 13 blank: not a record
            "   ",  # 14 blank: not a record
            json.dumps(_rec("s", messages=[{"role": "user", "content": "\ud800"}])),  # 15 lone surrogate
        ],
    )
    result = read_landing(tmp_path, W1, max_record_bytes=400, raw_chars=50)
    reasons = _reasons(result)
    assert result.conversations["conversation_id"].to_list() == ["ok"]
    assert result.records_read == 13 and result.files_read == 1
    assert reasons["a.jsonl:2"].startswith("malformed json: ")
    assert reasons["a.jsonl:3"] == "not a json object: got list"
    assert reasons["a.jsonl:4"] == "invalid record: messages: Field required"
    assert reasons["a.jsonl:5"] == "invalid record: messages: at least one message with content is required"
    assert reasons["a.jsonl:6"] == "invalid record: messages: at least one message with content is required"
    assert reasons["a.jsonl:7"] == "invalid record: messages: at least one user message is required"
    assert reasons["a.jsonl:8"].startswith("invalid utf-8: ")
    assert reasons["a.jsonl:9"].startswith("oversized: ") and reasons["a.jsonl:9"].endswith(" bytes > 400")
    assert reasons["a.jsonl:10"].startswith("invalid record: started_at: ")
    assert reasons["a.jsonl:11"] == "invalid record: conversation_id: must not be blank"
    assert reasons["a.jsonl:12"].startswith("invalid record: messages.0.role: ")
    assert reasons["a.jsonl:15"].startswith("invalid utf-8: ")
    assert len(reasons) == 12
    assert result.rejects.schema == tables.INGEST_REJECTS
    assert all(len(raw) <= 50 for raw in result.rejects["raw"])
    assert "\ufffd" in result.rejects.filter(record_ref="a.jsonl:8")["raw"][0]


def test_int_past_pythons_digit_limit_is_malformed_json(tmp_path):
    _write(tmp_path / "2026-11-17.jsonl", ['{"n": ' + "1" * 5000 + "}"])
    assert read_landing(tmp_path, W1).rejects["reason"][0].startswith("malformed json: Exceeds the limit")


def test_valid_records_are_normalised(tmp_path):
    _write(
        tmp_path / "sub" / "f.jsonl",
        [
            _rec("  a  ", started_at="2026-11-17T10:00:00", extra_field=1),
            _rec("b", started_at="2026-11-17T12:00:00+02:00", source="app"),
        ],
    )
    df = read_landing(tmp_path, W1).conversations
    assert df.schema == tables.CONVERSATIONS
    a, b = df.to_dicts()
    utc = dt.UTC
    assert a["conversation_id"] == "a" and a["source"] == "sub/f.jsonl"
    assert a["started_at"] == dt.datetime(2026, 11, 17, 10, tzinfo=utc)
    assert b["started_at"] == dt.datetime(2026, 11, 17, 10, tzinfo=utc) and b["source"] == "app"
    assert a["n_turns"] == 2 and a["n_chars"] == len("hi there") + len("hello")
    assert a["messages"][0] == {"role": "user", "content": "hi there"}
    assert a["week_start"] == W1


def test_week_assignment_across_two_weeks_in_one_file(tmp_path):
    _write(
        tmp_path / "mixed.jsonl",
        [
            _rec("w1", started_at="2026-11-22T23:59:59Z"),
            _rec("w2", started_at="2026-11-22T23:30:00-02:00"),  # 2026-11-23 01:30 UTC
            _rec("w2b", started_at="2026-11-25T08:00:00Z"),
        ],
    )
    assert read_landing(tmp_path, W1).conversations["conversation_id"].to_list() == ["w1"]
    assert read_landing(tmp_path, W2).conversations["conversation_id"].to_list() == ["w2", "w2b"]


def test_rejects_land_in_exactly_one_week(tmp_path):
    w2 = "2026-11-24T10:00:00Z"
    _write(
        tmp_path / "home.jsonl",
        [
            _rec("a", started_at=w2),
            _rec("b", started_at=w2),
            _rec("c", started_at="2026-11-17T10:00:00Z"),
            "{broken",  # undated: the file's home week (W2)
            _rec("bad", started_at="2026-11-18T00:00:00Z", messages=[]),  # own started_at: W1
        ],
    )
    _write(tmp_path / "2026-11-18" / "only-bad.jsonl", ["{nope"])  # week from the path: W1
    undated = _write(tmp_path / "nodate" / "only-bad.jsonl", ["{nope"])  # week from mtime: W2
    mtime = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC).timestamp()
    os.utime(undated, (mtime, mtime))

    refs = {week: set(read_landing(tmp_path, week).rejects["record_ref"]) for week in (W1, W2)}
    assert refs[W1] == {"home.jsonl:5", "2026-11-18/only-bad.jsonl:1"}
    assert refs[W2] == {"home.jsonl:4", "nodate/only-bad.jsonl:1"}


def test_duplicate_ids_keep_the_first_by_path_and_line(tmp_path):
    _write(tmp_path / "a.jsonl", [_rec("x"), _rec("y"), _rec("x")])
    _write(tmp_path / "b.jsonl", [_rec("x"), _rec("y", started_at="2026-11-24T10:00:00Z")])
    result = read_landing(tmp_path, W1)
    assert result.conversations["conversation_id"].to_list() == ["x", "y"]
    assert _reasons(result) == {
        "a.jsonl:3": "duplicate conversation_id (first seen at a.jsonl:1)",
        "b.jsonl:1": "duplicate conversation_id (first seen at a.jsonl:1)",
    }
    assert read_landing(tmp_path, W2).conversations["conversation_id"].to_list() == ["y"]


def test_gzip_files_and_corrupt_gzip(tmp_path):
    (tmp_path / "ok.jsonl.gz").write_bytes(gzip.compress(json.dumps(_rec("gz")).encode() + b"\n"))
    broken = gzip.compress(b"\n".join(json.dumps(_rec(f"t{i}")).encode() for i in range(50)))
    (tmp_path / "2026-11-17").mkdir()
    (tmp_path / "2026-11-17" / "trunc.jsonl.gz").write_bytes(broken[: len(broken) // 2])
    (tmp_path / "ignored.txt").write_text("not landing data")
    result = read_landing(tmp_path, W1)
    assert result.files_read == 2
    assert "gz" in result.conversations["conversation_id"].to_list()
    assert any(r.startswith("unreadable file: ") for r in result.rejects["reason"])


def test_week_start_must_be_a_monday(tmp_path):
    with pytest.raises(ValueError, match="Monday"):
        read_landing(tmp_path, W1 + dt.timedelta(days=1))


def test_conservation_on_a_generated_week(tmp_path):
    landing, truth = write_week(tmp_path / "landing", tmp_path / "truth", W1, n=400, seed=3)
    lines = [line for line in landing.read_bytes().split(b"\n") if line.strip()]
    result = read_landing(tmp_path / "landing", W1)
    assert result.records_read == len(lines)
    assert result.conversations.height + result.rejects.height == len(lines)
    ids = result.conversations["conversation_id"]
    assert ids.n_unique() == ids.len()
    truth_ids = {json.loads(t)["conversation_id"] for t in truth.read_text().splitlines()}
    assert set(ids) == truth_ids
    assert result.rejects.height == 6
    prefixes = {r.split(":")[0] for r in result.rejects["reason"]}
    assert prefixes == {"oversized", "invalid utf-8", "malformed json", "invalid record"}
    other = read_landing(tmp_path / "landing", W2)
    assert other.conversations.height == 0 and other.rejects.height == 0
