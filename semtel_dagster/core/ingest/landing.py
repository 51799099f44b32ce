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
import gzip
import json
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import polars as pl
from pydantic import TypeAdapter, ValidationError

from semtel_dagster.core.ingest.adapters import AdapterError, AdapterOptions, adapt, arena_answers
from semtel_dagster.core.ingest.conversation import Conversation, UtcDatetime
from semtel_dagster.core.ingest.index import FileWeeks, LandingIndex, file_stat, settings_key
from semtel_dagster.core.lake import tables
from semtel_dagster.core.lake.weeks import first_week as pipeline_first_week
from semtel_dagster.core.lake.weeks import parse_week, week_start_of

_STARTED_AT = TypeAdapter(UtcDatetime)
_PATH_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CHUNK = 1 << 20
_FRAME_ROWS = 20_000  # conversations held as Python objects at once (a frame holds them in a fraction)
_MAX_REASON_ERRORS = 3
_GZIP_MAGIC = b"\x1f\x8b"
_FUTURE_TOLERANCE = dt.timedelta(days=1)  # producers' clocks run a little ahead
_ANY_WEEK = dt.date(1, 1, 1)  # a Monday: the lower bound where there are no partitions


@dataclass(frozen=True)
class IngestResult:
    conversations: pl.DataFrame  # tables.CONVERSATIONS
    rejects: pl.DataFrame  # tables.INGEST_REJECTS
    records_read: int  # non-blank records in the files read, every week
    files_read: int  # files opened (with an index: only those that can hold the week)


@dataclass(frozen=True)
class _Record:
    """One non-blank landed line: a valid conversation, or a reject reason."""

    ref: str
    source: str
    raw: str
    conversation: Conversation | None = None
    reason: str = ""
    week: dt.date | None = None  # of a reject; None: the record does not say, use the file's week
    whole_file: bool = False  # the file failed here: the records it lost could be of any week it feeds


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


@dataclass(frozen=True)
class _Adapter:
    """How records of a non-canonical format become canonical ones."""

    input_format: str
    options: AdapterOptions
    default_start: dt.datetime | None
    answers: dict[str, str]


def read_landing(
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
) -> IngestResult:
    """Validate every landed record and return the conversations and rejects of ``week_start``.

    ``first_week`` (default: the pipeline's first partition) bounds the weeks records may fall in.
    With ``index_uri`` (the lake's ``_landing_index``) only files that can hold the week are opened
    (:mod:`semtel_dagster.core.ingest.index`); the result is the same as reading every file.
    """
    week_start = parse_week(week_start)
    bounds = _Bounds(week_start, first_week or pipeline_first_week(), dt.datetime.now(dt.UTC) + _FUTURE_TOLERANCE)
    landing_dir = Path(landing_dir)
    rows: list[dict] = []
    parts: list[pl.DataFrame] = []  # the week's conversations so far, as frames of _FRAME_ROWS rows
    rejects: list[_Record] = []
    first_seen: dict[str, str] = {}
    records_read = 0
    files = landing_files(landing_dir, input_format)
    adapter = None
    if input_format != "canonical":
        adapter = _Adapter(
            input_format,
            adapter_options or AdapterOptions(),
            _week_start_time(parse_week(default_week)) if default_week else None,
            _arena_answers(landing_dir) if input_format == "arena_hard" else {},
        )
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
    files_read = 0
    for path in files:
        rel = path.relative_to(landing_dir).as_posix()
        stat = file_stat(path) if index else None
        if index and index.can_skip(rel, stat, week_start):
            continue
        files_read += 1
        learned = FileWeeks()
        weeks: Counter[dt.date] = Counter()
        pending: list[_Record] = []
        if input_format == "table":
            assert adapter is not None  # every format but canonical has one
            scan = _scan_table(path, rel, raw_chars, adapter)
        else:
            scan = _scan(path, rel, max_record_bytes, raw_chars, adapter)
        for rec in scan:
            records_read += 1
            conv = rec.conversation
            if conv is None:
                pending.append(rec)
                continue
            week = week_start_of(conv.started_at)
            learned.saw(conv.started_at)
            learned.weeks.add(week)  # a record in the future falls in its own week once that week is run
            if outside := _outside_range(conv.started_at, week, bounds):
                pending.append(replace(rec, conversation=None, reason=outside, week=week))
                continue
            weeks[week] += 1
            if week != week_start:
                continue
            if conv.conversation_id in first_seen:
                reason = f"duplicate conversation_id (first seen at {first_seen[conv.conversation_id]})"
                pending.append(replace(rec, conversation=None, reason=reason, week=week))
                continue
            first_seen[conv.conversation_id] = rec.ref
            rows.append(_row(conv, week, rec.source))
            if len(rows) == _FRAME_ROWS:
                parts.append(_frame(rows, tables.CONVERSATIONS))
                rows.clear()
        if pending:
            fallback = _fallback_week(weeks, rel, path, bounds)
            for r in pending:
                targets = _reject_weeks(r, weeks, rel, fallback, bounds)
                if r.whole_file and not weeks and _path_week(rel) is None:
                    learned.every_week = True  # its reject shows in whichever week is run
                else:
                    learned.weeks |= targets
                if week_start in targets:
                    rejects.append(r)
        if index:
            index.record(rel, stat, learned)
    if index:
        index.save()
    reject_rows = [
        {"week_start": week_start, "source": r.source, "record_ref": r.ref, "reason": r.reason, "raw": r.raw} for r in rejects
    ]
    return IngestResult(
        conversations=pl.concat([*parts, _frame(rows, tables.CONVERSATIONS)]),
        rejects=_frame(reject_rows, tables.INGEST_REJECTS),
        records_read=records_read,
        files_read=files_read,
    )


def _outside_range(started_at: dt.datetime, week: dt.date, bounds: _Bounds) -> str:
    """Why a valid record belongs to no week the pipeline runs ("" if it does)."""
    if week < bounds.first_week:
        return f"out of range: started_at {started_at.isoformat()} is before the first partition week {bounds.first_week}"
    if started_at > bounds.latest_start:
        return f"out of range: started_at {started_at.isoformat()} is in the future"
    return ""


@dataclass(frozen=True)
class _Bounds:
    """What one read knows about weeks: the run's, the first partition's, and the latest valid start."""

    run_week: dt.date
    first_week: dt.date
    latest_start: dt.datetime


def _reject_weeks(rec: _Record, weeks: Counter[dt.date], rel: str, fallback: dt.date, bounds: _Bounds) -> set[dt.date]:
    """The weeks whose ``ingest_rejects`` show this reject (one, except for a whole-file problem)."""
    if rec.whole_file:
        return set(weeks) or {max(_path_week(rel) or bounds.run_week, bounds.first_week)}
    if rec.week is None or rec.week > bounds.latest_start.date():
        return {fallback}
    return {max(rec.week, bounds.first_week)}


def is_gzip(path: Path) -> bool:
    """Gzip by its magic bytes, whatever the name says (two bytes read, never the file)."""
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _open(path: Path) -> BinaryIO:
    raw = open(path, "rb")  # noqa: SIM115 - returned open; the caller's ``with`` closes it
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    raw.seek(0)
    return raw


def _scan(path: Path, rel: str, limit: int, raw_chars: int, adapter: _Adapter | None = None) -> Iterator[_Record]:
    """Every non-blank line of one file, parsed and validated; never raises on bad content.

    A corrupt gzip stream, or a file that cannot be opened or was removed, ends the file with one
    whole-file reject instead of failing the partition.
    """
    line_no = 0
    try:
        with _open(path) as fh:
            for line_no, data, size in _split(fh, limit):
                ref = f"{rel}:{line_no}"
                raw = data.decode("utf-8", errors="replace")[:raw_chars]
                if size > limit:
                    yield _Record(ref, rel, raw, reason=f"oversized: {size} bytes > {limit}")
                    continue
                parsed = _parse(data)
                if isinstance(parsed, str):
                    yield _Record(ref, rel, raw, reason=parsed)
                    continue
                if adapter is not None:
                    yield from _adapted(parsed, ref, rel, raw, adapter, path)
                    continue
                yield _validated(parsed, ref, _source(parsed, rel), raw)
    except FileNotFoundError as exc:
        yield _Record(f"{rel}:{line_no + 1}", rel, "", reason=f"file vanished during ingest: {exc}", whole_file=True)
    except (OSError, EOFError, zlib.error) as exc:
        yield _Record(f"{rel}:{line_no + 1}", rel, "", reason=f"unreadable file: {exc}", whole_file=True)


def _adapted(record: dict, ref: str, rel: str, raw: str, adapter: _Adapter, path: Path) -> Iterator[_Record]:
    """The canonical records of one input record (several for OpenAssistant paths), validated."""
    try:
        canonical = adapt(adapter.input_format, record, adapter.options, adapter.answers)
    except AdapterError as exc:
        yield _Record(ref, rel, raw, reason=f"invalid record: {exc}")
        return
    for k, rec in enumerate(canonical):
        sub_ref = ref if len(canonical) == 1 else f"{ref}#{k}"
        rec.setdefault("conversation_id", sub_ref)
        if started := adapter.default_start or _mtime_start(path):
            rec.setdefault("started_at", started)
        yield _validated(rec, sub_ref, _source(rec, rel), raw)


def _validated(record: dict, ref: str, source: str, raw: str) -> _Record:
    """A canonical record as a conversation, or as a reject naming the invalid fields."""
    try:
        return _Record(ref, source, raw, conversation=Conversation.model_validate(record))
    except ValidationError as exc:
        return _Record(ref, source, raw, reason=_reason(exc), week=_record_week(record))


def _scan_table(path: Path, rel: str, raw_chars: int, adapter: _Adapter) -> Iterator[_Record]:
    """Rows of one Parquet file or Delta table through the column mapping; refs are ``file:row``."""
    try:
        frame = pl.read_delta(str(path)) if path.is_dir() else pl.read_parquet(path)
    except Exception as exc:  # any unreadable table is one reject, never a failed partition
        yield _Record(f"{rel}:1", rel, "", reason=f"unreadable file: {exc}", whole_file=True)
        return
    for row_no, row in enumerate(frame.iter_rows(named=True), start=1):
        raw = json.dumps(row, default=str, ensure_ascii=False)[:raw_chars]
        yield from _adapted(row, f"{rel}:{row_no}", rel, raw, adapter, path)


def _arena_answers(landing_dir: Path) -> dict[str, str]:
    records = []
    for path in sorted(landing_dir.rglob("answers*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            parsed = _parse(line.encode("utf-8")) if line.strip() else None
            if isinstance(parsed, dict):
                records.append(parsed)
    return arena_answers(records)


def _week_start_time(week: dt.date) -> dt.datetime:
    return dt.datetime.combine(week, dt.time(), dt.UTC)


def _mtime_start(path: Path) -> dt.datetime | None:
    week = _mtime_week(path)
    return _week_start_time(week) if week else None  # removed meanwhile: the record is rejected as undated


def _split(fh: BinaryIO, limit: int) -> Iterator[tuple[int, bytes, int]]:
    """Non-blank lines as ``(line_no, data, size)``; an oversized line is cut to its first bytes.

    Reading at most ``limit`` plus a chunk at once keeps a multi-GB line from filling memory.
    """
    line_no = 0
    while head := fh.readline(limit + 2):
        line_no += 1
        size, piece = len(head), head
        while not piece.endswith(b"\n"):
            piece = fh.readline(_CHUNK)
            if not piece:
                break
            size += len(piece)
        size -= len(piece) - len(piece.rstrip(b"\r\n"))
        if line_no == 1 and head.startswith(b"\xef\xbb\xbf"):
            head, size = head[3:], size - 3
        if size > limit or head.strip():
            yield line_no, head.rstrip(b"\r\n"), size


def _parse(data: bytes) -> dict | str:
    """The record as a JSON object, or the reject reason."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid utf-8: {exc.reason} at byte {exc.start}"
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        return f"malformed json: {exc}"
    except RecursionError:
        return "malformed json: nested too deeply"
    if not isinstance(value, dict):
        return f"not a json object: got {type(value).__name__}"
    if _SURROGATE_ESCAPE.search(text):  # a lone "\ud800" decodes fine but cannot be stored as UTF-8
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"invalid utf-8: {exc.reason} in an escaped string"
    return value


def _reason(exc: ValidationError) -> str:
    """A short, stable reason: field path plus message, for at most a few errors."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:_MAX_REASON_ERRORS]:
        field = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{field}: {err['msg'].removeprefix('Value error, ')}")
    more = f" (+{len(errors) - _MAX_REASON_ERRORS} more)" if len(errors) > _MAX_REASON_ERRORS else ""
    return "invalid record: " + "; ".join(parts) + more


def _source(record: dict, rel: str) -> str:
    source = record.get("source")
    return source.strip() if isinstance(source, str) and source.strip() else rel


def _record_week(record: dict) -> dt.date | None:
    try:
        return week_start_of(_STARTED_AT.validate_python(record.get("started_at")))
    except ValidationError:
        return None


def _fallback_week(weeks: Counter[dt.date], rel: str, path: Path, bounds: _Bounds) -> dt.date:
    """The week of a file's undated rejects: its home week, its path's, its mtime's, else the run's."""
    return max(_home_week(weeks) or _path_week(rel) or _mtime_week(path) or bounds.run_week, bounds.first_week)


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


def _mtime_week(path: Path) -> dt.date | None:
    """The week the file was last written; None once it has been removed."""
    try:
        return week_start_of(dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC))
    except FileNotFoundError:
        return None


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


def _frame(rows: list[dict], schema: pl.Schema) -> pl.DataFrame:
    return tables.conform(pl.DataFrame(rows, schema=schema, orient="row"), schema)


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
    bounds = _Bounds(week_start_of(now), _ANY_WEEK, now + _FUTURE_TOLERANCE)
    weeks: Counter[dt.date] = Counter()
    reject_weeks: set[dt.date] = set()
    for rec in _scan(path, name, max_record_bytes, raw_chars):
        if rec.conversation is not None and not _outside_range(rec.conversation.started_at, _ANY_WEEK, bounds):
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
