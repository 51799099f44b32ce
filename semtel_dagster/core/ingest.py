"""Landing JSONL → one week of ``conversations`` plus ``ingest_rejects``.

Every non-blank landed record of a week ends up in exactly one of the two outputs, and each bad
record is assigned to exactly one week, so that reprocessing any set of partitions never loses or
double-counts a line.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import polars as pl
from pydantic import TypeAdapter, ValidationError

from semtel_dagster.core import tables
from semtel_dagster.core.conversation import Conversation, UtcDatetime
from semtel_dagster.core.weeks import parse_week, week_start_of

_STARTED_AT = TypeAdapter(UtcDatetime)
_PATH_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CHUNK = 1 << 20
_MAX_REASON_ERRORS = 3


@dataclass(frozen=True)
class IngestResult:
    conversations: pl.DataFrame  # tables.CONVERSATIONS
    rejects: pl.DataFrame  # tables.INGEST_REJECTS
    records_read: int  # non-blank records in all landing files, every week
    files_read: int


@dataclass(frozen=True)
class _Record:
    """One non-blank landed line: a valid conversation, or a reject reason."""

    ref: str
    source: str
    raw: str
    conversation: Conversation | None = None
    reason: str = ""
    week: dt.date | None = None  # of a reject; None: the record does not say, use the file's week


def landing_files(landing_dir: Path) -> list[Path]:
    """All landing files, sorted so that "first seen" (for duplicates) is deterministic."""
    if not landing_dir.is_dir():
        raise FileNotFoundError(f"landing dir {landing_dir} does not exist")
    return sorted(
        p for p in landing_dir.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))
    )


def read_landing(
    landing_dir: Path,
    week_start: dt.date,
    *,
    max_record_bytes: int = 1_000_000,
    raw_chars: int = 2_000,
) -> IngestResult:
    """Validate every landed record and return the conversations and rejects of ``week_start``."""
    week_start = parse_week(week_start)
    landing_dir = Path(landing_dir)
    rows: list[dict] = []
    rejects: list[_Record] = []
    first_seen: dict[str, str] = {}
    records_read = 0
    files = landing_files(landing_dir)
    for path in files:
        rel = path.relative_to(landing_dir).as_posix()
        weeks: Counter[dt.date] = Counter()
        pending: list[_Record] = []
        for rec in _scan(path, rel, max_record_bytes, raw_chars):
            records_read += 1
            conv = rec.conversation
            if conv is None:
                pending.append(rec)
                continue
            week = week_start_of(conv.started_at)
            weeks[week] += 1
            if week != week_start:
                continue
            if conv.conversation_id in first_seen:
                reason = f"duplicate conversation_id (first seen at {first_seen[conv.conversation_id]})"
                pending.append(replace(rec, conversation=None, reason=reason, week=week))
                continue
            first_seen[conv.conversation_id] = rec.ref
            rows.append(_row(conv, week, rec.source))
        if pending:
            fallback = _home_week(weeks) or _path_week(rel) or _mtime_week(path)
            rejects.extend(r for r in pending if (r.week or fallback) == week_start)
    reject_rows = [
        {"week_start": week_start, "source": r.source, "record_ref": r.ref, "reason": r.reason, "raw": r.raw}
        for r in rejects
    ]
    return IngestResult(
        conversations=_frame(rows, tables.CONVERSATIONS),
        rejects=_frame(reject_rows, tables.INGEST_REJECTS),
        records_read=records_read,
        files_read=len(files),
    )


def _scan(path: Path, rel: str, limit: int, raw_chars: int) -> Iterator[_Record]:
    """Every non-blank line of one file, parsed and validated; never raises on bad content.

    A corrupt gzip stream ends the file with one extra reject instead of failing the partition.
    """
    line_no = 0
    try:
        with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as fh:
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
                source = _source(parsed, rel)
                try:
                    conv = Conversation.model_validate(parsed)
                except ValidationError as exc:
                    yield _Record(ref, source, raw, reason=_reason(exc), week=_record_week(parsed))
                    continue
                yield _Record(ref, source, raw, conversation=conv)
    except (OSError, EOFError, zlib.error) as exc:
        yield _Record(f"{rel}:{line_no + 1}", rel, "", reason=f"unreadable file: {exc}")


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


def _mtime_week(path: Path) -> dt.date:
    return week_start_of(dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc))


def _row(conv: Conversation, week: dt.date, source: str) -> dict:
    return {
        "conversation_id": conv.conversation_id,
        "week_start": week,
        "source": conv.source.strip() if conv.source and conv.source.strip() else source,
        "started_at": conv.started_at,
        "messages": [{"role": m.role, "content": m.content} for m in conv.messages],
        "n_turns": len(conv.messages),
        "n_chars": sum(len(m.content) for m in conv.messages),
    }


def _frame(rows: list[dict], schema: pl.Schema) -> pl.DataFrame:
    return tables.conform(pl.DataFrame(rows, schema=schema, orient="row"), schema)
