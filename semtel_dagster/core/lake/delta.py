"""Delta Lake I/O shared by every stage and both entry points (Dagster assets, ``semtel classify``).

Weekly tables are partitioned by ``week_start`` (a Date). A stage replaces exactly the weeks it
computed with one atomic ``overwrite`` commit guarded by a predicate: delta-rs rejects rows outside
the predicate, so a bug can never clobber another week, and rerunning a week converges to the same
table. (The dagster-deltalake IO manager is avoided on purpose: with weekly partitions it overwrites
whole tables, dagster issue #34064; see docs/architecture.md.)
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable

import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from semtel_dagster.core.lake import tables
from semtel_dagster.core.lake.weeks import WEEK

PARTITION_COLUMN = "week_start"


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
    frame: pl.DataFrame,
    schema: pl.Schema,
    weeks: Iterable[dt.date],
    storage_options: dict | None = None,
) -> int:
    """Atomically replace the given weeks of the table with ``frame``; returns the new version."""
    weeks = list(weeks)
    data = tables.conform(frame, schema)
    outside = data.filter(~pl.col(PARTITION_COLUMN).is_in(weeks)).height
    if outside:
        raise ValueError(f"{outside} rows fall outside the weeks being written {sorted(weeks)}")
    write_deltalake(
        uri,
        data.to_arrow(),
        mode="overwrite",
        predicate=week_predicate(weeks),
        partition_by=[PARTITION_COLUMN],
        storage_options=storage_options,
        schema_mode="merge",  # a column added to a contract (additive) extends tables written before it
    )
    return DeltaTable(uri, storage_options=storage_options).version()


def append(uri: str, frame: pl.DataFrame, schema: pl.Schema, storage_options: dict | None = None) -> None:
    """A small commit of new rows (used to stream LLM responses while a run is in flight)."""
    write_deltalake(
        uri,
        tables.conform(frame, schema).to_arrow(),
        mode="append",
        partition_by=[PARTITION_COLUMN],
        storage_options=storage_options,
        schema_mode="merge",
    )


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
