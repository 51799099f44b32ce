"""A big week parsed in pieces by worker processes reads the same as one record at a time."""

import datetime as dt
import gzip
import json

import pytest

from semtel_dagster.core.ingest import pieces
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.sim.sample import write_week

WEEK = dt.date(2026, 11, 16)


@pytest.fixture
def landing(tmp_path):
    """Generated weeks (with their malformed lines), a file landed again in part (ids repeated across files and
    within one), a gzip file, and a file with a byte-order mark, blank lines and an oversized record."""
    folder = tmp_path / "landing"
    write_week(folder, tmp_path / "truth", WEEK, n=500, seed=3)
    write_week(folder, tmp_path / "truth", WEEK - dt.timedelta(days=7), n=150, seed=4)
    lines = (folder / f"sample-{WEEK}.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "z-relanded.jsonl").write_bytes(b"".join(lines[::7]) + lines[3] + lines[3])
    with gzip.open(folder / "y.jsonl.gz", "wb") as fh:
        fh.write(b"".join(lines[5:60]))
    record = json.loads(lines[10])
    record["conversation_id"] = "oversized"
    record["messages"][0]["content"] = "x" * 70_000
    odd = [b"\xef\xbb\xbf" + lines[11], b"\n", b"   \n", json.dumps(record).encode() + b"\n", lines[12], lines[13].rstrip(b"\n")]
    (folder / "x-odd.jsonl").write_bytes(b"".join(odd))
    return folder


def test_pieces_cover_the_file_at_line_ends_with_their_line_numbers(tmp_path):
    data = b"".join(f'{{"n": {i}, "pad": "{"p" * (i % 97)}"}}\n'.encode() for i in range(3000)) + b'{"last": true}'
    path = tmp_path / "a.jsonl"
    path.write_bytes(data)
    ranges = list(pieces._ranges(path, 4096))
    assert len(ranges) > 20 and ranges[0][0] == 0 and ranges[-1][1] is None
    ends = [end for _, end, _ in ranges[:-1]]
    assert [start for start, _, _ in ranges[1:]] == ends  # contiguous
    assert all(data[end - 1 : end] == b"\n" for end in ends)
    assert all(first == data[:start].count(b"\n") + 1 for start, _, first in ranges)


def test_parsing_in_worker_processes_gives_the_same_week(landing, monkeypatch):
    options = {"max_record_bytes": 50_000, "first_week": WEEK - dt.timedelta(days=7)}
    monkeypatch.setattr(pieces, "FRAME_ROWS", 64)  # several frames per file, here too
    serial = read_landing(landing, WEEK, **options)
    assert serial.rejects.filter(serial.rejects["reason"].str.starts_with("duplicate")).height > 60

    monkeypatch.setattr(pieces, "PIECE_BYTES", 60_000)  # a few dozen conversations per piece
    monkeypatch.setattr(pieces, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(pieces, "_CORES", 2)
    assert pieces.workers_for([1], "canonical") == 2
    main = landing / f"sample-{WEEK}.jsonl"
    assert len(list(pieces.file_pieces(main, main.name, main.stat().st_size, split=True))) > 10
    parallel = read_landing(landing, WEEK, **options)

    assert parallel.conversations.equals(serial.conversations)
    assert parallel.rejects.equals(serial.rejects)
    assert (parallel.records_read, parallel.files_read) == (serial.records_read, serial.files_read)
    assert serial.conversations.height > 400 and serial.rejects.height > 70
