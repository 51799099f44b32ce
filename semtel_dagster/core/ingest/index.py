"""The landing index: which weeks each landing file feeds, so a week's ingest opens only its files.

One small Delta table in the lake (``_landing_index``), one row per landing file: its size and
modification time when it was read, the reading settings, the weeks its records and rejects fall in
(or ``every_week`` when a whole-file problem gives it no week of its own), and its first and last
``started_at``. A file whose size, mtime and settings match its row is opened only for those weeks;
a new or changed file is read once and its row refreshed. Rows are only ever added or replaced, never
pruned, so readers of part of the folder (the Spark engine's per-file tasks) cannot drop each other's
rows; a removed file is simply never listed again. The index is a cache: losing it costs one full read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from deltalake import write_deltalake
from deltalake.exceptions import CommitFailedError

from semtel_dagster.core.lake import delta, locks, tables

INDEX_TABLE = "_landing_index"
SCHEMA = tables.schema(
    {
        "path": pl.String,
        "size": pl.Int64,
        "mtime_ns": pl.Int64,
        "settings": pl.String,
        "weeks": pl.List(pl.Date),
        "every_week": pl.Boolean,
        "min_started_at": pl.Datetime("us", "UTC"),
        "max_started_at": pl.Datetime("us", "UTC"),
    }
)
_LOCK_WAIT_SECONDS = 120.0


def settings_key(**settings) -> str:
    """A digest of every reading setting that changes which week a record or reject falls in."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class FileWeeks:
    """What one read of a file learned about its weeks (becomes its index row)."""

    weeks: set[dt.date] = field(default_factory=set)
    every_week: bool = False
    min_started_at: dt.datetime | None = None
    max_started_at: dt.datetime | None = None

    def saw(self, started_at: dt.datetime) -> None:
        self.min_started_at = min(self.min_started_at or started_at, started_at)
        self.max_started_at = max(self.max_started_at or started_at, started_at)


@dataclass
class LandingIndex:
    """The stored rows of one landing folder, and the rows this read adds."""

    uri: str
    settings: str
    known: dict[str, dict]  # path -> stored row
    fresh: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, uri: str, settings: str) -> LandingIndex:
        stored = delta.read_all(uri, SCHEMA) if delta.table_exists(uri) else pl.DataFrame(schema=SCHEMA)
        return cls(uri, settings, {row["path"]: row for row in stored.iter_rows(named=True)})

    def can_skip(self, rel: str, stat: tuple[int, int] | None, week: dt.date) -> bool:
        """True when the file is unchanged since it was indexed and feeds neither ``week`` nor every week."""
        row = self.known.get(rel)
        if row is None or stat is None or (row["size"], row["mtime_ns"], row["settings"]) != (*stat, self.settings):
            return False
        return not row["every_week"] and week not in row["weeks"]

    def record(self, rel: str, stat: tuple[int, int] | None, learned: FileWeeks) -> None:
        if stat is None:  # removed while being read: nothing stable to index
            return
        row = {
            "path": rel,
            "size": stat[0],
            "mtime_ns": stat[1],
            "settings": self.settings,
            "weeks": sorted(learned.weeks),
            "every_week": learned.every_week,
            "min_started_at": learned.min_started_at,
            "max_started_at": learned.max_started_at,
        }
        if self.known.get(rel) != row:
            self.fresh[rel] = row

    def save(self) -> None:
        """Merge this read's rows into the stored index (re-read under the lock, so concurrent readers
        of other files keep theirs); a refused commit on an object store only costs a later re-read."""
        if not self.fresh:
            return
        guard = (
            locks.exclusive(
                locks.local_path(self.uri).parent / delta.LOCKS_FOLDER / f"{INDEX_TABLE}.lock",
                wait_seconds=_LOCK_WAIT_SECONDS,
                purpose="updating the landing index",
            )
            if locks.is_local(self.uri)
            else contextlib.nullcontext()
        )
        with guard:
            current = delta.read_all(self.uri, SCHEMA) if delta.table_exists(self.uri) else pl.DataFrame(schema=SCHEMA)
            merged = pl.concat(
                [current.filter(~pl.col("path").is_in(list(self.fresh))), pl.DataFrame(list(self.fresh.values()), schema=SCHEMA)]
            ).sort("path")
            try:
                write_deltalake(self.uri, merged.to_arrow(), mode="overwrite", schema_mode="overwrite")
            except CommitFailedError:
                return
        self.known.update(self.fresh)
        self.fresh = {}


def file_stat(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a landing file; None once it has been removed."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns
