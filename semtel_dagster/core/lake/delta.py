"""Delta Lake I/O shared by every stage and both entry points (Dagster assets, ``semtel classify``).

Weekly tables are partitioned by ``week_start`` (a Date). A stage replaces exactly the weeks it
computed with one atomic ``overwrite`` commit guarded by a predicate: delta-rs rejects rows outside
the predicate, so a bug can never clobber another week, and rerunning a week converges to the same
table. (The dagster-deltalake IO manager is avoided on purpose: with weekly partitions it overwrites
whole tables, dagster issue #34064; see docs/architecture.md.)

Concurrent writers of one week never duplicate it. A table is always created first by an empty
commit, because delta-rs retries a create that lost a race as a plain append (two first writes of a
week then leave both copies). On an existing table, two predicate overwrites of one week conflict in
Delta's own check and the later commit is refused (:class:`ConcurrentWeekWrite`, a clear failure on
object stores). On a local lake a lock per table and week makes the second writer wait instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from typing import TypeVar, cast

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from semtel_dagster.core.lake import locks, tables
from semtel_dagster.core.lake.streams import prefetched
from semtel_dagster.core.lake.weeks import WEEK

PARTITION_COLUMN = "week_start"
# Row groups of a bounded size: a reader of the week in batches (``read_week_batches``) holds one at a time.
_WRITER = WriterProperties(max_row_group_size=16_384, compression="SNAPPY")  # delta-rs's default codec
# Rows of a batch a stage works on: at its peak a token-counting worker holds about ten times its batch,
# so the 1M-conversation week's truncate needed 1.3 GB of workers at 16,384 rows and 0.8 GB at 4,096.
_BATCH_ROWS = 4_096
LOCKS_FOLDER = "_locks"
T = TypeVar("T")
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)
WEEK_LOCK_WAIT_SECONDS = 600.0  # one commit of a week; a writer stuck longer than this is a failure to report


class ConcurrentWeekWrite(RuntimeError):
    """Another writer committed the same weeks of the table while this one was writing."""


def table_uri(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def week_predicate(weeks: Iterable[dt.date]) -> str:
    """SQL predicate covering the given weeks (a contiguous range is one comparison pair)."""
    ordered = sorted(set(weeks))
    if not ordered:
        raise ValueError("at least one week is required")
    contiguous = all(b - a == WEEK for a, b in itertools.pairwise(ordered))
    if contiguous:
        return f"{PARTITION_COLUMN} >= '{ordered[0]}' AND {PARTITION_COLUMN} < '{ordered[-1] + WEEK}'"
    return f"{PARTITION_COLUMN} IN ({', '.join(repr(str(w)) for w in ordered)})"


def table_exists(uri: str, storage_options: dict | None = None) -> bool:
    try:
        DeltaTable(uri, storage_options=storage_options)
    except TableNotFoundError:
        return False
    return True


def overwrite_weeks(
    uri: str,
    frame: pl.DataFrame | Iterable[pl.DataFrame],
    schema: pl.Schema,
    weeks: Iterable[dt.date],
    storage_options: dict | None = None,
) -> int:
    """Atomically replace the given weeks of the table with ``frame``; returns the new version.

    ``frame`` may be an iterable of frames (a week too big to hold): they are conformed, checked and
    written as they come, on a producer thread while the writer encodes, in the same single commit.
    On a local lake a concurrent writer of the same weeks waits for this one (last writer wins, whole);
    elsewhere the later commit fails with :class:`ConcurrentWeekWrite`.
    """
    weeks = sorted(set(weeks))
    if isinstance(frame, pl.DataFrame):
        with week_locks(uri, weeks):
            return commit_overwrite(uri, _checked(frame, schema, weeks), schema, weeks, storage_options)
    failed: list[BaseException] = []
    parts = (_checked(part, schema, weeks).to_arrow().to_batches() for part in frame)
    batches = prefetched(_noting(itertools.chain.from_iterable(parts), failed))
    data = pa.RecordBatchReader.from_batches(tables.empty(schema).to_arrow().schema, batches)
    with week_locks(uri, weeks):
        try:
            return commit_overwrite(uri, data, schema, weeks, storage_options)
        except Exception:
            if failed:  # the stream's own error, not the writer's wrapping of it
                raise failed[0] from None
            raise


def _noting(items: Iterator[T], failed: list[BaseException]) -> Iterator[T]:
    try:
        yield from items
    except BaseException as exc:
        failed.append(exc)
        raise


def _checked(frame: pl.DataFrame, schema: pl.Schema, weeks: list[dt.date]) -> pl.DataFrame:
    data = tables.conform(frame, schema)
    outside = data.filter(~pl.col(PARTITION_COLUMN).is_in(weeks)).height
    if outside:
        raise ValueError(f"{outside} rows fall outside the weeks being written {weeks}")
    return data


def week_locks(uri: str, weeks: list[dt.date]) -> contextlib.AbstractContextManager:
    """One lock per table and week beside the tables (``<lake>/_locks/<table>/<week>.lock``), taken in
    week order so two multi-week writers cannot deadlock; nothing to take on object stores."""
    if not locks.is_local(uri):
        return contextlib.nullcontext()
    table = locks.local_path(uri)
    folder = table.parent / LOCKS_FOLDER / table.name
    stack = contextlib.ExitStack()
    for week in weeks:
        stack.enter_context(
            locks.exclusive(
                folder / f"{week}.lock", wait_seconds=WEEK_LOCK_WAIT_SECONDS, purpose=f"writing {table.name} week {week}"
            )
        )
    return stack


def commit_overwrite(
    uri: str,
    data: pl.DataFrame | pa.RecordBatchReader,
    schema: pl.Schema,
    weeks: list[dt.date],
    storage_options: dict | None = None,
) -> int:
    """The predicate overwrite itself, on a table created first so that Delta's conflict check applies."""
    ensure_table(uri, schema, storage_options)
    try:
        write_deltalake(
            uri,
            data,  # streamed through the Arrow C interface: no copy of the week into an Arrow table first
            writer_properties=_WRITER,
            mode="overwrite",
            predicate=week_predicate(weeks),
            partition_by=[PARTITION_COLUMN],
            storage_options=storage_options,
            schema_mode="merge",  # a column added to a contract (additive) extends tables written before it
        )
    except CommitFailedError as exc:
        raise ConcurrentWeekWrite(
            f"{uri}: another run wrote week(s) {', '.join(map(str, weeks))} at the same time; this write was refused "
            f"so the week holds one run's rows, not both. Run the week again once the other run has finished. ({exc})"
        ) from exc
    return DeltaTable(uri, storage_options=storage_options).version()


def ensure_table(uri: str, schema: pl.Schema, storage_options: dict | None = None) -> None:
    """Create the table by an empty commit if it does not exist yet (concurrent creators all succeed)."""
    if table_exists(uri, storage_options):
        return
    try:
        write_deltalake(
            uri,
            tables.empty(schema).to_arrow(),
            mode="ignore",
            partition_by=[PARTITION_COLUMN],
            storage_options=storage_options,
        )
    except CommitFailedError:
        if not table_exists(uri, storage_options):  # lost the race to a creator that committed version 0
            raise


def append(uri: str, frame: pl.DataFrame, schema: pl.Schema, storage_options: dict | None = None) -> None:
    """A small commit of new rows (used to stream LLM responses while a run is in flight)."""
    ensure_table(uri, schema, storage_options)
    write_deltalake(
        uri,
        tables.conform(frame, schema).to_arrow(),
        mode="append",
        partition_by=[PARTITION_COLUMN],
        storage_options=storage_options,
        schema_mode="merge",
    )


def read_all(uri: str, schema: pl.Schema, storage_options: dict | None = None) -> pl.DataFrame:
    """Every row of a small unpartitioned table (e.g. the landing index), cast to ``schema``."""
    return tables.conform(pl.read_delta(uri, storage_options=storage_options), schema)


def read_weeks(
    uri: str,
    schema: pl.Schema,
    weeks: Iterable[dt.date],
    storage_options: dict | None = None,
) -> pl.DataFrame:
    """Rows of the given weeks; an absent table reads as empty (nothing materialized yet)."""
    weeks = list(weeks)
    if not table_exists(uri, storage_options):
        return tables.empty(schema)
    frame = pl.scan_delta(uri, storage_options=storage_options).filter(pl.col(PARTITION_COLUMN).is_in(weeks)).collect()
    added = [pl.lit(None, dtype).alias(name) for name, dtype in schema.items() if name not in frame.columns]
    return tables.conform(frame.with_columns(added) if added else frame, schema)  # columns newer than the table read as null


def scan_week(
    uri: str, schema: pl.Schema, week: dt.date, version: int | None = None, storage_options: dict | None = None
) -> pl.LazyFrame:
    """The committed week as a lazy frame (``version``: as of that commit), read where it is used: what a
    week too big to hold is described by. Columns newer than the table read as null."""
    if not table_exists(uri, storage_options):
        return tables.empty(schema).lazy()
    frame = pl.scan_delta(uri, version=version, storage_options=storage_options).filter(pl.col(PARTITION_COLUMN) == week)
    return _as_contract(frame, frame.collect_schema().names(), schema)


def _as_contract(frame: FrameT, names: list[str], schema: pl.Schema) -> FrameT:
    """``frame`` (holding columns ``names``) with ``schema``'s columns in order and type; those newer than
    the table read as null."""
    added = [pl.lit(None, dtype).alias(name) for name, dtype in schema.items() if name not in names]
    return frame.with_columns(added).select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def week_rows(uri: str, week: dt.date, storage_options: dict | None = None) -> int:
    """Rows of the committed week, from the Parquet footers (no column is read)."""
    if not table_exists(uri, storage_options):
        return 0
    frame = pl.scan_delta(uri, storage_options=storage_options).filter(pl.col(PARTITION_COLUMN) == week)
    return frame.select(pl.len()).collect().item()


def read_week_batches(
    uri: str, schema: pl.Schema, week: dt.date, columns: list[str] | None = None, storage_options: dict | None = None
) -> Iterator[pl.DataFrame]:
    """The week in frames of at most ``_BATCH_ROWS`` rows (``columns`` only, default all of ``schema``), read
    as they are asked for: a row-local stage over a week of any size holds a few batches of input.

    Each Parquet file of the week is read a row group at a time. (Polars' ``collect_batches`` runs its
    query ahead of a slow consumer: the 1M-conversation week stood 1.4 GB in its queue.)"""
    wanted = schema.to_frame().select(columns or list(schema)).schema
    if not table_exists(uri, storage_options):
        return
    dataset = DeltaTable(uri, storage_options=storage_options).to_pyarrow_dataset(
        partitions=[(PARTITION_COLUMN, "=", week.isoformat())]
    )
    stored = [name for name in wanted if name in dataset.schema.names and name != PARTITION_COLUMN]
    for fragment in dataset.get_fragments():
        with dataset.filesystem.open_input_file(fragment.path) as source:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=_BATCH_ROWS, columns=stored):
                # a file written before a column joined the table lacks it: the batch holds what the file has
                frame = cast(pl.DataFrame, pl.from_arrow(batch)).with_columns(pl.lit(week).alias(PARTITION_COLUMN))
                yield _as_contract(frame, frame.columns, wanted)
