"""Landing JSONL → one week of ``conversations`` plus ``ingest_rejects``.

Every non-blank landed record of a week ends up in exactly one of the two outputs, and each bad
record is assigned to exactly one week, so that reprocessing any set of partitions never loses or
double-counts a line.

Other real formats (``input_format``) go through :mod:`semtel_dagster.core.ingest.adapters` first. A
record that carries no id gets its landing reference (``file:line``) as id; one that carries no
timestamp starts at the configured ``default_week`` (Monday 00:00 UTC) or, without one, in the week
of its file's modification time, so re-ingesting an unchanged folder always yields the same week.

A record dated before the first partition week is rejected into that week, one dated more than a
day ahead of the run is rejected into its file's week: no week would ever hold them otherwise. A
whole-file problem (unreadable, corrupt gzip, removed while being read) cannot say which records it
lost, so it is reported in every week the file fed before failing, else in the week of its dated path,
else in the week being run.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import polars as pl

from semtel_dagster.core.ingest.adapters import AdapterOptions, arena_answers
from semtel_dagster.core.ingest.index import FileWeeks, LandingIndex, file_stat, settings_key
from semtel_dagster.core.ingest.pieces import (
    ORDER,
    REF,
    Bounds,
    ParseSettings,
    PieceEnd,
    PieceRows,
    file_pieces,
    frame,
    outside_range,
    parse_pieces,
    records,
    workers_for,
)
from semtel_dagster.core.ingest.records import Adapter, Record, is_gzip, mtime_week, parse_json, scan, week_start_time
from semtel_dagster.core.lake import tables
from semtel_dagster.core.lake.weeks import first_week as pipeline_first_week
from semtel_dagster.core.lake.weeks import parse_week, week_start_of

__all__ = ["IngestResult", "LandingStream", "is_gzip", "landing_files", "read_file", "read_landing", "stream_landing"]

_PATH_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_FUTURE_TOLERANCE = dt.timedelta(days=1)  # producers' clocks run a little ahead
_ANY_WEEK = dt.date(1, 1, 1)  # a Monday: the lower bound where there are no partitions


@dataclass(frozen=True)
class IngestResult:
    conversations: pl.DataFrame  # tables.CONVERSATIONS
    rejects: pl.DataFrame  # tables.INGEST_REJECTS
    records_read: int  # non-blank records in the files read, every week
    files_read: int  # files opened (with an index: only those that can hold the week)


def landing_files(landing_dir: Path, input_format: str = "canonical") -> list[Path]:
    """All landing files, sorted so that "first seen" (for duplicates) is deterministic.

    ``table`` reads Parquet files and Delta table folders; ``arena_hard`` answer files are side
    input joined to the questions, not records.
    """
    if not landing_dir.is_dir():
        raise FileNotFoundError(f"landing dir {landing_dir} does not exist")
    if input_format == "table":
        deltas = sorted(p.parent for p in landing_dir.rglob("_delta_log") if p.is_dir())
        parquet = [p for p in landing_dir.rglob("*.parquet") if p.is_file() and not any(d in p.parents for d in deltas)]
        return sorted([*deltas, *parquet])
    files = sorted(p for p in landing_dir.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
    if input_format == "arena_hard":
        files = [p for p in files if not p.name.startswith("answers")]
    return files


def read_landing(landing_dir: Path, week_start: dt.date, **options) -> IngestResult:
    """Validate every landed record and return the conversations and rejects of ``week_start``: the whole
    of :func:`stream_landing`, in memory (options as there)."""
    return stream_landing(landing_dir, week_start, **options).collect()


class LandingStream:
    """One week of the landing folder, read as it is consumed.

    Iterating yields the week's conversations (``tables.CONVERSATIONS``) as frames of ``pieces.FRAME_ROWS``
    rows or of one worker's piece, so a writer can commit a week of any size while holding one frame of it. Once the frames are drained,
    ``done`` holds the rejects (few: kept whole) and the counts.
    """

    def __init__(self, frames: Callable[[Callable[[IngestResult], None]], Iterator[pl.DataFrame]]) -> None:
        """``frames(finish)``: the frames' iterator, which calls ``finish`` with the rest once drained."""
        self._result: IngestResult | None = None
        self._frames = frames(self._finish)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return self._frames

    def _finish(self, result: IngestResult) -> None:
        self._result = result

    @property
    def done(self) -> IngestResult:
        """Rejects and counts (``conversations`` empty: they were streamed); only once every frame was read."""
        if self._result is None:
            raise RuntimeError("the landing stream was not read to its end")
        return self._result

    def collect(self) -> IngestResult:
        conversations = pl.concat([tables.empty(tables.CONVERSATIONS), *self])
        return replace(self.done, conversations=conversations)


def stream_landing(
    landing_dir: Path,
    week_start: dt.date,
    *,
    max_record_bytes: int = 1_000_000,
    raw_chars: int = 2_000,
    input_format: str = "canonical",
    adapter_options: AdapterOptions | None = None,
    default_week: dt.date | None = None,
    first_week: dt.date | None = None,
    index_uri: str | None = None,
    parse_workers: int | None = None,
) -> LandingStream:
    """Validate every landed record; the conversations of ``week_start`` stream out, its rejects are kept.

    ``first_week`` (default: the pipeline's first partition) bounds the weeks records may fall in.
    With ``index_uri`` (the lake's ``_landing_index``) only files that can hold the week are opened
    (:mod:`semtel_dagster.core.ingest.index`); the result is the same as reading every file.
    ``parse_workers``: processes that parse a big week (default: every core once the week is big enough,
    :func:`semtel_dagster.core.ingest.pieces.workers_for`; 1 parses here).
    """
    read = partial(
        _week_frames,
        landing_dir=Path(landing_dir),
        week_start=parse_week(week_start),
        max_record_bytes=max_record_bytes,
        raw_chars=raw_chars,
        input_format=input_format,
        adapter_options=adapter_options,
        default_week=default_week,
        first_week=first_week,
        index_uri=index_uri,
        parse_workers=parse_workers,
    )
    return LandingStream(read)


def _week_frames(
    finish: Callable[[IngestResult], None],
    *,
    landing_dir: Path,
    week_start: dt.date,
    max_record_bytes: int,
    raw_chars: int,
    input_format: str,
    adapter_options: AdapterOptions | None,
    default_week: dt.date | None,
    first_week: dt.date | None,
    index_uri: str | None,
    parse_workers: int | None,
) -> Iterator[pl.DataFrame]:
    """The body of :func:`stream_landing`: yields the week's conversation frames, then ``finish``es.

    Files are parsed in pieces (:mod:`semtel_dagster.core.ingest.pieces`, by worker processes for a big
    week); here, in file order, a conversation_id seen before becomes a duplicate reject and each file's
    rejects go to their weeks.
    """
    bounds = Bounds(week_start, first_week or pipeline_first_week(), dt.datetime.now(dt.UTC) + _FUTURE_TOLERANCE)
    adapter = None
    if input_format != "canonical":
        adapter = Adapter(
            input_format,
            adapter_options or AdapterOptions(),
            week_start_time(parse_week(default_week)) if default_week else None,
            _arena_answers(landing_dir) if input_format == "arena_hard" else {},
        )
    settings = ParseSettings(bounds, max_record_bytes, raw_chars, input_format, adapter)
    index = None
    if index_uri and input_format != "table":  # table folders have no trustworthy size and mtime
        key = settings_key(
            input_format=input_format,
            adapter_options=adapter_options,
            default_week=default_week,
            first_week=bounds.first_week,
            max_record_bytes=max_record_bytes,
        )
        index = LandingIndex.load(index_uri, key)
    to_read: list[tuple[Path, str, tuple[int, int] | None]] = []
    for path in landing_files(landing_dir, input_format):
        rel = path.relative_to(landing_dir).as_posix()
        stat = file_stat(path)
        if not (index and index.can_skip(rel, stat, week_start)):
            to_read.append((path, rel, stat))
    workers = parse_workers or workers_for((stat[0] for _, _, stat in to_read if stat), input_format)
    pieces = (p for path, rel, stat in to_read for p in file_pieces(path, rel, stat[0] if stat else 0, split=workers > 1))
    stats = {rel: stat for _, rel, stat in to_read}
    first_seen: dict[str, str] = {}
    rejects: list[Record] = []
    records_read = 0
    file: _FileRead | None = None
    for event in parse_pieces(pieces, settings, workers):
        piece = event.piece
        if file is None or file.rel != piece.rel:
            file = _FileRead(piece.rel)
        if file.ended:
            continue  # the file failed in an earlier piece: as when read at once, nothing after counts
        if isinstance(event, PieceRows):
            rows = file.new_rows(event.frame, first_seen)
            if rows.height:
                yield rows.drop(REF, ORDER)
            continue
        records_read += event.records_read
        file.add(event, first_seen, settings)
        if piece.end is None or file.ended:
            rejects += file.week_rejects(piece.path, bounds)
            if index:
                index.record(piece.rel, stats[piece.rel], file.learned)
    if index:
        index.save()
    reject_rows = [
        {"week_start": week_start, "source": r.source, "record_ref": r.ref, "reason": r.reason, "raw": r.raw} for r in rejects
    ]
    rejected = frame(reject_rows, tables.INGEST_REJECTS)
    finish(IngestResult(tables.empty(tables.CONVERSATIONS), rejected, records_read, len(to_read)))


@dataclass
class _FileRead:
    """One file's pieces so far: its rejects in record order and what it taught about its weeks."""

    rel: str
    pending: list[Record] = field(default_factory=list)
    repeats: dict[str, str] = field(default_factory=dict)  # ref -> first seen ref, of the current piece's rows
    weeks: Counter[dt.date] = field(default_factory=Counter)
    learned: FileWeeks = field(default_factory=FileWeeks)
    ended: bool = False

    def new_rows(self, rows: pl.DataFrame, first_seen: dict[str, str]) -> pl.DataFrame:
        """The rows whose conversation_id was not seen in an earlier piece; the others become rejects."""
        refs = rows.get_column(REF).to_list()
        for cid, ref in zip(rows.get_column("conversation_id").to_list(), refs):
            if (first := first_seen.setdefault(cid, ref)) != ref:
                self.repeats[ref] = first
        return rows.filter(~pl.col(REF).is_in(list(self.repeats))) if self.repeats else rows

    def add(self, end: PieceEnd, first_seen: dict[str, str], settings: ParseSettings) -> None:
        """A piece's end: its rejects merged in record order with the duplicates its rows held."""
        pending = [
            replace(r, reason=f"duplicate conversation_id (first seen at {first_seen[r.duplicate_id]})") if r.duplicate_id else r
            for r in end.pending
        ]
        if self.repeats:  # their raw text, read again (rare: a record landed twice)
            reason = "duplicate conversation_id (first seen at {})"
            pending += [
                replace(r, conversation=None, reason=reason.format(self.repeats[r.ref]), week=settings.bounds.run_week, order=k)
                for k, r in enumerate(records(end.piece, settings), start=1)
                if r.ref in self.repeats and r.conversation is not None
            ]
            self.repeats = {}
        self.pending += sorted(pending, key=lambda r: r.order)
        self.weeks.update(end.weeks)
        self.learned.weeks |= end.learned.weeks
        for started in (end.learned.min_started_at, end.learned.max_started_at):
            if started is not None:
                self.learned.saw(started)
        self.ended = any(r.whole_file for r in end.pending)

    def week_rejects(self, path: Path, bounds: Bounds) -> list[Record]:
        """The file's rejects that the run week shows; records in ``learned`` the weeks they show in."""
        fallback = _fallback_week(self.weeks, self.rel, path, bounds)
        shown = []
        for r in self.pending:
            targets = _reject_weeks(r, self.weeks, self.rel, fallback, bounds)
            if r.whole_file and not self.weeks and _path_week(self.rel) is None:
                self.learned.every_week = True  # its reject shows in whichever week is run
            else:
                self.learned.weeks |= targets
            if bounds.run_week in targets:
                shown.append(r)
        self.ended = True
        return shown


def _reject_weeks(rec: Record, weeks: Counter[dt.date], rel: str, fallback: dt.date, bounds: Bounds) -> set[dt.date]:
    """The weeks whose ``ingest_rejects`` show this reject (one, except for a whole-file problem)."""
    if rec.whole_file:
        return set(weeks) or {max(_path_week(rel) or bounds.run_week, bounds.first_week)}
    if rec.week is None or rec.week > bounds.latest_start.date():
        return {fallback}
    return {max(rec.week, bounds.first_week)}


def _arena_answers(landing_dir: Path) -> dict[str, str]:
    records = []
    for path in sorted(landing_dir.rglob("answers*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parsed = parse_json(line.encode("utf-8")) if line.strip() else None
            if isinstance(parsed, dict):
                records.append(parsed)
    return arena_answers(records)


def _fallback_week(weeks: Counter[dt.date], rel: str, path: Path, bounds: Bounds) -> dt.date:
    """The week of a file's undated rejects: its home week, its path's, its mtime's, else the run's."""
    return max(_home_week(weeks) or _path_week(rel) or mtime_week(path) or bounds.run_week, bounds.first_week)


def _home_week(weeks: Counter[dt.date]) -> dt.date | None:
    """The file's most common week; ties go to the earliest week so the choice is stable."""
    if not weeks:
        return None
    top = max(weeks.values())
    return min(w for w, c in weeks.items() if c == top)


def _path_week(rel: str) -> dt.date | None:
    """The week of the last valid ``YYYY-MM-DD`` in the path (landing folders are often dated)."""
    for match in reversed(list(_PATH_DATE.finditer(rel))):
        try:
            return week_start_of(dt.date(*map(int, match.groups())))
        except ValueError:
            continue
    return None


def read_file(path: Path, *, max_record_bytes: int = 1_000_000, raw_chars: int = 2_000) -> IngestResult:
    """Every week of one canonical conversations file (``semtel classify``), validated as ``read_landing`` does.

    A first pass finds the weeks the file touches; each is then read by ``read_landing`` from a folder
    holding only this file, so week assignment, duplicates and reject reasons are the pipeline's own.
    There are no partitions here, so no week is too early.
    """
    path = Path(path).resolve()
    gz = is_gzip(path)
    name = path.name if path.name.endswith(".jsonl.gz" if gz else ".jsonl") else ("input.jsonl.gz" if gz else "input.jsonl")
    now = dt.datetime.now(dt.UTC)
    bounds = Bounds(week_start_of(now), _ANY_WEEK, now + _FUTURE_TOLERANCE)
    weeks: Counter[dt.date] = Counter()
    reject_weeks: set[dt.date] = set()
    for rec in scan(path, name, max_record_bytes, raw_chars):
        if rec.conversation is not None and not outside_range(rec.conversation.started_at, _ANY_WEEK, bounds):
            weeks[week_start_of(rec.conversation.started_at)] += 1
        elif rec.week is not None and rec.week <= bounds.latest_start.date():
            reject_weeks.add(rec.week)
    reject_weeks.add(_fallback_week(weeks, name, path, bounds))
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / name).symlink_to(path)
        parts = [
            read_landing(Path(folder), week, max_record_bytes=max_record_bytes, raw_chars=raw_chars, first_week=_ANY_WEEK)
            for week in sorted(set(weeks) | reject_weeks)
        ]
    conversations = pl.concat([p.conversations for p in parts])
    rejects = pl.concat([p.rejects for p in parts]).unique(["record_ref", "reason"], keep="first", maintain_order=True)
    return IngestResult(conversations, rejects, records_read=parts[0].records_read, files_read=1)
