"""A week's landing files parsed in pieces: here, a frame at a time, or by worker processes on every core.

Parsing (JSON, validation, rows) is Python and holds the GIL, so a big week is parsed by processes: a
plain file over ``PIECE_BYTES`` is cut at line ends into pieces of about that size, and each piece is
parsed by a worker into the run week's rows and the piece's rejects. Pieces come back in file order,
so what the reader makes of them (first-seen duplicates, the weeks of rejects) is what reading the
files one record at a time makes. Small weeks, other formats and big gzip files are parsed here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from semtel_dagster.core.ingest.conversation import Conversation
from semtel_dagster.core.ingest.index import FileWeeks
from semtel_dagster.core.ingest.records import Adapter, Record, is_gzip, scan, scan_table
from semtel_dagster.core.lake import tables
from semtel_dagster.core.lake.streams import CORES, process_pool
from semtel_dagster.core.lake.weeks import week_start_of

PIECE_BYTES = 32 << 20  # a worker's piece: about 12,000 conversations of a few KB
PARALLEL_BYTES = 128 << 20  # below this, the week is parsed here: starting workers costs more than it saves
FRAME_ROWS = 20_000  # conversations held as Python objects at once (a frame holds them in a fraction)
REF, ORDER = "_ref", "_order"  # columns a piece's rows carry for the reader's duplicate check
ROWS = pl.Schema([*tables.CONVERSATIONS.items(), (REF, pl.String()), (ORDER, pl.Int64())])
_SCAN_BLOCK = 8 << 20
_CORES = CORES  # read through this module, so tests can pretend to more


@dataclass(frozen=True)
class Bounds:
    """What one read knows about weeks: the run's, the first partition's, and the latest valid start."""

    run_week: dt.date
    first_week: dt.date
    latest_start: dt.datetime


def outside_range(started_at: dt.datetime, week: dt.date, bounds: Bounds) -> str:
    """Why a valid record belongs to no week the pipeline runs ("" if it does)."""
    if week < bounds.first_week:
        return f"out of range: started_at {started_at.isoformat()} is before the first partition week {bounds.first_week}"
    if started_at > bounds.latest_start:
        return f"out of range: started_at {started_at.isoformat()} is in the future"
    return ""


@dataclass(frozen=True)
class ParseSettings:
    """What parsing a piece needs (sent to the workers with every piece)."""

    bounds: Bounds
    max_record_bytes: int
    raw_chars: int
    input_format: str
    adapter: Adapter | None


@dataclass(frozen=True)
class Piece:
    """A landing file, or a byte range of a plain one that starts and ends at line ends."""

    path: Path
    rel: str
    size: int  # of the whole file
    start: int = 0
    end: int | None = None  # None: to the end of the file (the file's last piece)
    first_line: int = 1


@dataclass(frozen=True)
class PieceRows:
    """Valid records of the run week, in file order: ``tables.CONVERSATIONS`` plus ``REF`` and ``ORDER``;
    an id repeated within the piece is a reject of the piece instead (``Record.duplicate_id``)."""

    piece: Piece
    frame: pl.DataFrame


@dataclass(frozen=True)
class PieceEnd:
    """The rest of a piece once its rows are out: rejects in record order, the weeks its records fall in."""

    piece: Piece
    pending: list[Record]
    weeks: Counter[dt.date]
    learned: FileWeeks
    records_read: int


def parse_pieces(pieces: Iterable[Piece], settings: ParseSettings, workers: int) -> Iterator[PieceRows | PieceEnd]:
    """Every piece's rows then its end, in the order of ``pieces``; ``workers`` > 1 parses pieces in that
    many processes, a few pieces ahead of the reader (a gzip file too big to hold is parsed here)."""
    if workers <= 1:
        for piece in pieces:
            yield from piece_events(piece, settings)
        return
    pool = process_pool(workers)
    ahead: deque[Future[list[PieceRows | PieceEnd]]] = deque()
    try:
        for piece in pieces:
            if piece.end is None and piece.start == 0 and piece.size > PIECE_BYTES:
                while ahead:
                    yield from ahead.popleft().result()
                yield from piece_events(piece, settings)
                continue
            ahead.append(pool.submit(_parsed, piece, settings))
            if len(ahead) > workers:
                yield from ahead.popleft().result()
        while ahead:
            yield from ahead.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def workers_for(sizes: Iterable[int], input_format: str) -> int:
    """Processes for a week of files of these sizes: every core for a big canonical week, else none.

    Measured on two cores (``benchmarks/scale``): 2 workers read a week of 1M conversations in 89 s
    against 113 s parsing in the reader's process; at 100k (245 MB) they break even (9.8 s, 9.9 s).
    """
    return _CORES if input_format == "canonical" and _CORES > 1 and sum(sizes) >= PARALLEL_BYTES else 1


def file_pieces(path: Path, rel: str, size: int, split: bool) -> Iterator[Piece]:
    """The file whole, or (``split``, plain and over ``PIECE_BYTES``) in pieces, found as they are read."""
    if not split or size <= PIECE_BYTES or is_gzip(path):
        yield Piece(path, rel, size)
        return
    for start, end, first_line in _ranges(path, PIECE_BYTES):
        yield Piece(path, rel, size, start, end, first_line)


def _ranges(path: Path, piece_bytes: int) -> Iterator[tuple[int, int | None, int]]:
    """(start, end, first line number) of pieces of at least ``piece_bytes``, each ending after a newline."""
    start, first_line, newlines, pos, target = 0, 1, 0, 0, piece_bytes
    with open(path, "rb") as fh:
        while block := fh.read(_SCAN_BLOCK):
            at = 0
            while pos + len(block) > target and (cut := block.find(b"\n", max(target - pos, at))) >= 0:
                newlines += block.count(b"\n", at, cut + 1)
                end, at = pos + cut + 1, cut + 1
                yield start, end, first_line
                start, first_line, target = end, newlines + 1, end + piece_bytes
            newlines += block.count(b"\n", at)
            pos += len(block)
    yield start, None, first_line


def records(piece: Piece, settings: ParseSettings) -> Iterator[Record]:
    if settings.input_format == "table":
        assert settings.adapter is not None  # every format but canonical has one
        return scan_table(piece.path, piece.rel, settings.raw_chars, settings.adapter)
    return scan(
        piece.path,
        piece.rel,
        settings.max_record_bytes,
        settings.raw_chars,
        settings.adapter,
        piece.start,
        piece.end,
        piece.first_line,
    )


def piece_events(piece: Piece, settings: ParseSettings) -> Iterator[PieceRows | PieceEnd]:
    """One piece parsed here: its rows a frame of ``FRAME_ROWS`` at a time, then its end."""
    bounds = settings.bounds
    rows: list[dict] = []
    pending: list[Record] = []
    weeks: Counter[dt.date] = Counter()
    learned = FileWeeks()
    seen: set[str] = set()
    order = 0
    for order, rec in enumerate(records(piece, settings), start=1):
        conv = rec.conversation
        if conv is None:
            pending.append(replace(rec, order=order))
            continue
        week = week_start_of(conv.started_at)
        learned.saw(conv.started_at)
        learned.weeks.add(week)  # a record in the future falls in its own week once that week is run
        if outside := outside_range(conv.started_at, week, bounds):
            pending.append(replace(rec, conversation=None, reason=outside, week=week, order=order))
            continue
        weeks[week] += 1
        if week != bounds.run_week:
            continue
        if conv.conversation_id in seen:
            pending.append(replace(rec, conversation=None, week=week, order=order, duplicate_id=conv.conversation_id))
            continue
        seen.add(conv.conversation_id)
        rows.append({**_row(conv, week, rec.source), REF: rec.ref, ORDER: order})
        if len(rows) == FRAME_ROWS:
            yield PieceRows(piece, frame(rows, ROWS))
            rows.clear()
    if rows:
        yield PieceRows(piece, frame(rows, ROWS))
    yield PieceEnd(piece, pending, weeks, learned, order)


def _parsed(piece: Piece, settings: ParseSettings) -> list[PieceRows | PieceEnd]:
    """A worker's parse of one piece, its rows as one frame."""
    events = list(piece_events(piece, settings))
    parts = [event.frame for event in events if isinstance(event, PieceRows)]
    return [PieceRows(piece, pl.concat(parts)), events[-1]] if parts else events


def _row(conv: Conversation, week: dt.date, source: str) -> dict:
    return {
        "conversation_id": conv.conversation_id,
        "week_start": week,
        "source": conv.source.strip() if conv.source and conv.source.strip() else source,
        "started_at": conv.started_at,
        "messages": [{"role": m.role, "content": m.content} for m in conv.messages],
        "n_turns": len(conv.messages),
        "n_chars": sum(len(m.content) for m in conv.messages),
        **{name: getattr(conv, name) for name in tables.ENGAGEMENT},
    }


def frame(rows: list[dict], schema: pl.Schema) -> pl.DataFrame:
    return tables.conform(pl.DataFrame(rows, schema=schema, orient="row"), schema)
