"""Delta tables from Spark, two implementations of one contract (read a week, replace a week atomically).

``delta-rs`` (default, works on any Spark, no jars): executors write Parquet files straight into the
table folder, the driver commits them with one delta-rs transaction that removes the week's old files
and adds the new ones (``mode="overwrite"`` + ``partition_filters``), so readers see the old week or the
new one, never a mix; files of a failed job are never referenced. Reads go through the files the Delta
log lists, never ``spark.read.parquet(folder)`` (which would include removed files).

``native``: ``format("delta")`` with ``replaceWhere``, for clusters that ship Delta (Databricks, EMR with
delta-spark, Sail).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from functools import partial

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.transaction import AddAction, RemoveAction
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from semtel_dagster.core.lake import delta, tables

PARTITION = delta.PARTITION_COLUMN
_FILES = "path string, size long, rows long"


def spark_schema(schema: pl.Schema) -> StructType:
    return from_arrow_schema(tables.empty(schema).to_arrow().schema)


def to_spark_arrow(frame: pl.DataFrame, struct: StructType) -> pa.Table:
    """Polars output cast to the Arrow types Spark expects back from a Python task (no large types)."""
    return frame.select(struct.fieldNames()).to_arrow().cast(to_arrow_schema(struct, timezone="UTC"))


def arrow_frame(table: pa.Table) -> pl.DataFrame:
    """``pl.from_arrow`` of a whole table, typed as the frame it always is (it returns a Series only for an array)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def collect_frame(batches: Iterator[pa.RecordBatch]) -> pl.DataFrame | None:
    """All batches of a task as one Polars frame; None for an empty partition."""
    collected = list(batches)
    return arrow_frame(pa.Table.from_batches(collected)) if collected else None


def read_week(spark: SparkSession, uri: str, schema: pl.Schema, week: dt.date, writer: str = "delta-rs") -> DataFrame:
    struct = spark_schema(schema)
    if not delta.table_exists(uri):
        return spark.createDataFrame([], struct)
    if writer == "native":
        return spark.read.format("delta").load(uri).where(F.col(PARTITION) == F.lit(week)).select(*struct.fieldNames())
    files = DeltaTable(uri).file_uris(partition_filters=[(PARTITION, "=", week.isoformat())])
    if not files:
        return spark.createDataFrame([], struct)
    data = StructType([f for f in struct.fields if f.name != PARTITION])
    return spark.read.schema(data).parquet(*files).withColumn(PARTITION, F.lit(week)).select(*struct.fieldNames())


def overwrite_week(df: DataFrame, uri: str, schema: pl.Schema, week: dt.date, writer: str = "delta-rs") -> int:
    """Replace ``week`` of the table with ``df``; returns the new Delta version."""
    if writer == "native":
        struct = spark_schema(schema)
        out = df.select([F.col(f.name).cast(f.dataType) for f in struct.fields])
        builder = out.write.format("delta").mode("overwrite").partitionBy(PARTITION)
        if delta.table_exists(uri):  # a new table has no other weeks to protect
            builder = builder.option("replaceWhere", f"{PARTITION} = '{week.isoformat()}'")
        builder.save(uri)
        return DeltaTable(uri).version()
    delta.ensure_table(uri, schema)
    written = df.mapInArrow(partial(_write_parquet, uri=uri, schema=schema, week=week), _FILES).collect()
    with delta.week_locks(uri, [week]):  # as every writer of the lake: concurrent runs of a week never add up
        return commit_week(uri, week, [(r.path, r.size, r.rows) for r in written])


def commit_week(uri: str, week: dt.date, files: list[tuple[str, int, int]]) -> int:
    """One atomic commit: the week's current files out, ``files`` (paths relative to the table) in."""
    table = DeltaTable(uri)
    now = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        AddAction(path, size, {PARTITION: week.isoformat()}, now, True, json.dumps({"numRecords": rows}))
        for path, size, rows in files
    ]
    table.create_write_transaction(
        actions,
        mode="overwrite",
        schema=table.schema(),
        partition_by=[PARTITION],
        partition_filters=[(PARTITION, "=", week.isoformat())],
    )
    return DeltaTable(uri).version()


def _write_parquet(batches: Iterator[pa.RecordBatch], *, uri: str, schema: pl.Schema, week: dt.date):
    """Executor side: this task's rows as one Parquet file in the week's folder (not yet visible)."""
    frame = collect_frame(batches)
    if frame is None or frame.height == 0:
        return
    data = tables.conform(frame, schema)
    outside = data.filter(pl.col(PARTITION) != week).height
    if outside:
        raise ValueError(f"{outside} rows fall outside the week being written ({week})")
    relative = f"{PARTITION}={week.isoformat()}/part-{uuid.uuid4().hex}.snappy.parquet"
    fs, base = pafs.FileSystem.from_uri(uri)
    path = f"{base.rstrip('/')}/{relative}"
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(data.drop(PARTITION).to_arrow(), path, filesystem=fs, compression="snappy")
    size = fs.get_file_info(path).size
    yield pa.RecordBatch.from_pylist([{"path": relative, "size": size, "rows": data.height}])
