"""One landed line (or table row) → a validated conversation, or a reject with its reason.

Nothing here raises on bad content: every non-blank record comes out as a :class:`Record`, and a file
that fails part-way (corrupt gzip, removed while being read) ends with one whole-file reject.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl
from pydantic import TypeAdapter, ValidationError

from semtel_dagster.core.ingest.adapters import AdapterError, AdapterOptions, adapt
from semtel_dagster.core.ingest.conversation import Conversation, UtcDatetime
from semtel_dagster.core.lake.weeks import week_start_of

_STARTED_AT = TypeAdapter(UtcDatetime)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_CHUNK = 1 << 20
_MAX_REASON_ERRORS = 3
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Record:
    """One non-blank landed record: a valid conversation, or a reject reason."""

    ref: str
    source: str
    raw: str
    conversation: Conversation | None = None
    reason: str = ""
    week: dt.date | None = None  # of a reject; None: the record does not say, use the file's week
    whole_file: bool = False  # the file failed here: the records it lost could be of any week it feeds
    order: int = 0  # position among the records of its piece (``pieces``): rejects merge back in file order
    duplicate_id: str | None = None  # a repeated conversation_id, whose reason names the first seen once known


@dataclass(frozen=True)
class Adapter:
    """How records of a non-canonical format become canonical ones."""

    input_format: str
    options: AdapterOptions
    default_start: dt.datetime | None
    answers: dict[str, str]


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


def scan(
    path: Path,
    rel: str,
    limit: int,
    raw_chars: int,
    adapter: Adapter | None = None,
    start: int = 0,
    end: int | None = None,
    first_line: int = 1,
) -> Iterator[Record]:
    """Every non-blank line of one file, parsed and validated; never raises on bad content.

    ``start``/``end`` (byte offsets at line ends, of a plain file) and ``first_line`` read one piece of it.
    A corrupt gzip stream, or a file that cannot be opened or was removed, ends the file with one
    whole-file reject instead of failing the partition.
    """
    line_no = first_line - 1
    try:
        with _open(path) as fh:
            if start:
                fh.seek(start)
            for line_no, data, size in _split(fh, limit, None if end is None else end - start, first_line):
                ref = f"{rel}:{line_no}"
                raw = data.decode("utf-8", errors="replace")[:raw_chars]
                if size > limit:
                    yield Record(ref, rel, raw, reason=f"oversized: {size} bytes > {limit}")
                    continue
                parsed = parse_json(data)
                if isinstance(parsed, str):
                    yield Record(ref, rel, raw, reason=parsed)
                    continue
                if adapter is not None:
                    yield from _adapted(parsed, ref, rel, raw, adapter, path)
                    continue
                yield _validated(parsed, ref, _source(parsed, rel), raw)
    except FileNotFoundError as exc:
        yield Record(f"{rel}:{line_no + 1}", rel, "", reason=f"file vanished during ingest: {exc}", whole_file=True)
    except (OSError, EOFError, zlib.error) as exc:
        yield Record(f"{rel}:{line_no + 1}", rel, "", reason=f"unreadable file: {exc}", whole_file=True)


def _adapted(record: dict, ref: str, rel: str, raw: str, adapter: Adapter, path: Path) -> Iterator[Record]:
    """The canonical records of one input record (several for OpenAssistant paths), validated."""
    try:
        canonical = adapt(adapter.input_format, record, adapter.options, adapter.answers)
    except AdapterError as exc:
        yield Record(ref, rel, raw, reason=f"invalid record: {exc}")
        return
    for k, rec in enumerate(canonical):
        sub_ref = ref if len(canonical) == 1 else f"{ref}#{k}"
        rec.setdefault("conversation_id", sub_ref)
        if started := adapter.default_start or _mtime_start(path):
            rec.setdefault("started_at", started)
        yield _validated(rec, sub_ref, _source(rec, rel), raw)


def _validated(record: dict, ref: str, source: str, raw: str) -> Record:
    """A canonical record as a conversation, or as a reject naming the invalid fields."""
    try:
        return Record(ref, source, raw, conversation=Conversation.model_validate(record))
    except ValidationError as exc:
        return Record(ref, source, raw, reason=_reason(exc), week=_record_week(record))


def scan_table(path: Path, rel: str, raw_chars: int, adapter: Adapter) -> Iterator[Record]:
    """Rows of one Parquet file or Delta table through the column mapping; refs are ``file:row``."""
    try:
        frame = pl.read_delta(str(path)) if path.is_dir() else pl.read_parquet(path)
    except Exception as exc:  # any unreadable table is one reject, never a failed partition
        yield Record(f"{rel}:1", rel, "", reason=f"unreadable file: {exc}", whole_file=True)
        return
    for row_no, row in enumerate(frame.iter_rows(named=True), start=1):
        raw = json.dumps(row, default=str, ensure_ascii=False)[:raw_chars]
        yield from _adapted(row, f"{rel}:{row_no}", rel, raw, adapter, path)


def week_start_time(week: dt.date) -> dt.datetime:
    return dt.datetime.combine(week, dt.time(), dt.UTC)


def _mtime_start(path: Path) -> dt.datetime | None:
    week = mtime_week(path)
    return week_start_time(week) if week else None  # removed meanwhile: the record is rejected as undated


def mtime_week(path: Path) -> dt.date | None:
    """The week the file was last written; None once it has been removed."""
    try:
        return week_start_of(dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC))
    except FileNotFoundError:
        return None


def _split(fh: BinaryIO, limit: int, length: int | None = None, first_line: int = 1) -> Iterator[tuple[int, bytes, int]]:
    """Non-blank lines as ``(line_no, data, size)``; an oversized line is cut to its first bytes.

    Reading at most ``limit`` plus a chunk at once keeps a multi-GB line from filling memory. ``length``:
    bytes to read (a piece ending at a line end), else to the end of the file.
    """
    line_no, consumed = first_line - 1, 0
    while (length is None or consumed < length) and (head := fh.readline(limit + 2)):
        line_no += 1
        size, piece = len(head), head
        while not piece.endswith(b"\n"):
            piece = fh.readline(_CHUNK)
            if not piece:
                break
            size += len(piece)
        consumed += size
        size -= len(piece) - len(piece.rstrip(b"\r\n"))
        if line_no == 1 and head.startswith(b"\xef\xbb\xbf"):
            head, size = head[3:], size - 3
        if size > limit or head.strip():
            yield line_no, head.rstrip(b"\r\n"), size


def parse_json(data: bytes) -> dict | str:
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
