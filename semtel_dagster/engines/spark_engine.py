"""The distributed engine: the Polars engine's ``core`` functions run per Spark partition.

Per-partition stages (ingest per landing file, truncate, hashing, classify, parse) are ``mapInArrow``
tasks calling the same function the Polars engine calls; global steps are Spark shuffles: duplicate ids
across landing files, exact-duplicate clusters (group by text hash) and the weekly group-bys. Tables are
written by executors and committed once by the driver (``spark_delta``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import polars as pl
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from semtel_dagster.core import delta, tables
from semtel_dagster.core.classify import answered_request_ids, latest_per_request, run_dispatch
from semtel_dagster.core.dedupe import METHOD_EXACT, text_hash
from semtel_dagster.core.dispatch import Dispatcher, DispatchSettings
from semtel_dagster.core.endpoints import Endpoint
from semtel_dagster.core.ingest import landing_files
from semtel_dagster.engines import Classified, Parser, Planner, Reader, Stage, Written, append_responses
from semtel_dagster.engines.quota import merge_stats, share_endpoints
from semtel_dagster.engines.spark_delta import collect_frame, overwrite_week, read_week, spark_schema, to_spark_arrow

_INGESTED = pl.Schema({**tables.CONVERSATIONS, **tables.INGEST_REJECTS, "table": pl.String, "unit": pl.Int64})
_PARSED = pl.Schema({**tables.CLASSIFICATIONS, **tables.CLASSIFICATION_REJECTS, "table": pl.String})
_KEYED = pl.Schema({**tables.CONVERSATION_CLUSTERS, **tables.LLM_RESPONSES, "kind": pl.String})
_HASHED = "conversation_id string, week_start date, text_hash string"
_TASK_STATS = "needed long, resumed long, sent long, stats string"


class SparkEngine:
    name = "spark"

    def __init__(self, spark: SparkSession, lake_root: str, *, writer: str = "delta-rs", tasks: int | None = None):
        self.spark = spark
        self.lake_root = lake_root if "://" in lake_root else str(Path(lake_root).resolve())
        self.writer = writer
        self.tasks = tasks or _parallelism(spark)

    def uri(self, table: str) -> str:
        return delta.table_uri(self.lake_root, table)

    def read(self, table: str, week: dt.date) -> DataFrame:
        return read_week(self.spark, self.uri(table), tables.TABLES[table], week, self.writer)

    def write(self, table: str, df: DataFrame, week: dt.date) -> Written:
        """Commit the week, then read it back with Polars for the asset's metadata."""
        uri, schema = self.uri(table), tables.TABLES[table]
        version = overwrite_week(df, uri, schema, week, self.writer)
        return Written(table, version, delta.read_weeks(uri, schema, [week]))

    def ingest(self, week: dt.date, landing_dir: str, read: Reader) -> tuple[Written, Written, int]:
        """One task per landing file; ids seen in several files are settled by re-reading just those files
        together, in landing order, so "first seen wins" gives the answer a single pass would."""
        root = Path(landing_dir).resolve()
        units = [p.relative_to(root).as_posix() for p in _units(root, read)]
        side = _side_files(root, units)
        task = partial(_ingest_units, landing_dir=str(root), side=side, read=read)
        struct = spark_schema(_INGESTED)
        per_file = self.spark.createDataFrame(
            [(i, [rel]) for i, rel in enumerate(units)], "unit long, rels array<string>"
        ).repartition(max(1, min(len(units), self.tasks * 4)))
        scanned = per_file.mapInArrow(task, struct).persist()
        try:
            spanning = (
                scanned.where(F.col("table") == "conversations")
                .groupBy("conversation_id")
                .agg(F.collect_set("unit").alias("units"))
                .where(F.size("units") > 1)
                .select(F.explode("units").alias("unit"))
                .distinct()
                .collect()
            )
            conflicted = sorted(r.unit for r in spanning)
            result = scanned
            if conflicted:
                rerun = self.spark.createDataFrame([(-1, [units[i] for i in conflicted])], "unit long, rels array<string>")
                result = scanned.where(~F.col("unit").isin(conflicted)).unionByName(rerun.mapInArrow(task, struct))
            conversations = self.write("conversations", result.where(F.col("table") == "conversations"), week)
            rejects = self.write("ingest_rejects", result.where(F.col("table") == "ingest_rejects"), week)
        finally:
            scanned.unpersist()
        return conversations, rejects, len(units)

    def map_week(self, source: str, target: str, week: dt.date, stage: Stage) -> Written:
        task = partial(_map_stage, stage=stage, source=tables.TABLES[source], target=spark_schema(tables.TABLES[target]))
        return self.write(target, self.read(source, week).mapInArrow(task, spark_schema(tables.TABLES[target])), week)

    def cluster_exact(self, week: dt.date) -> Written:
        """Hash per partition (core ``text_hash``), then one group-by on the hash: only ids move."""
        hashed = self.read("conversations_truncated", week).select("conversation_id", "week_start", "transcript")
        hashed = hashed.mapInArrow(_hash_partition, _HASHED)
        keys = ["week_start", "text_hash"]
        clusters = hashed.groupBy(*keys).agg(
            F.min("conversation_id").alias("representative_id"), F.count(F.lit(1)).cast("long").alias("cluster_size")
        )
        out = hashed.join(clusters, keys).select(
            "conversation_id",
            "week_start",
            "representative_id",
            (F.col("conversation_id") == F.col("representative_id")).alias("is_representative"),
            "cluster_size",
            F.lit(METHOD_EXACT).alias("method"),
            F.lit(1.0).alias("similarity"),
            "text_hash",
        )
        return self.write("conversation_clusters", out, week)

    def classify(
        self,
        week: dt.date,
        plan: Planner,
        endpoints: list[Endpoint],
        settings: DispatchSettings,
        *,
        flush_rows: int,
        flush_seconds: float,
        log: Callable[[str], None],
    ) -> Classified:
        """One async dispatcher per task, each with a static share of every endpoint's quota; each task
        streams its answers into ``llm_responses``; the driver compacts the week once at the end."""
        uri = self.uri("llm_responses")
        answered = answered_request_ids(delta.read_weeks(uri, tables.LLM_RESPONSES, [week]), {e.model for e in endpoints})
        if not delta.table_exists(uri):  # created once here, so concurrent task appends never race to create it
            delta.overwrite_weeks(uri, tables.empty(tables.LLM_RESPONSES), tables.LLM_RESPONSES, [week])
        truncated = self.read("conversations_truncated", week).select("conversation_id", "transcript", "tokens_after")
        reps = (
            self.read("conversation_clusters", week)
            .where(F.col("is_representative"))
            .join(truncated, "conversation_id")
            .repartition(self.tasks)
        )
        task = partial(
            _classify_partition,
            plan=plan,
            answered=answered,
            endpoints=share_endpoints(endpoints, self.tasks),
            settings=settings,
            uri=uri,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
        )
        log(f"week {week}: dispatching on {self.tasks} Spark tasks, each with 1/{self.tasks} of every endpoint's quota")
        per_task = reps.mapInArrow(task, _TASK_STATS).collect()
        needed, resumed, sent = (sum(getattr(r, k) for r in per_task) for k in ("needed", "resumed", "sent"))
        log(f"week {week}: {needed} requests needed, {resumed} already answered, {sent} sent")
        stats = merge_stats([json.loads(r.stats) for r in per_task])
        latest = partial(_map_stage, stage=latest_per_request, source=tables.LLM_RESPONSES, target=spark_schema(tables.LLM_RESPONSES))
        compacted = self.read("llm_responses", week).repartition(self.tasks, "request_id").mapInArrow(
            latest, spark_schema(tables.LLM_RESPONSES)
        )
        return Classified(self.write("llm_responses", compacted, week), needed, resumed, sent, stats)

    def parse(self, week: dt.date, parse: Parser) -> tuple[Written, Written]:
        """Clusters and answers keyed by representative and co-located by one shuffle; each task parses
        its representatives' answers and fans labels out to their duplicates."""
        if getattr(parse, "keywords", {}).get("strategy", "single") != "single":
            raise NotImplementedError("batched answers span representatives of several tasks; Spark parses 'single' only")
        struct = spark_schema(_KEYED)
        members = self.read("conversation_clusters", week).withColumn("kind", F.lit("member"))
        answers = (
            self.read("llm_responses", week)
            .withColumn("representative_id", F.explode("conversation_ids"))
            .withColumn("kind", F.lit("response"))
        )
        keyed = members.unionByName(answers, allowMissingColumns=True).select(
            [F.col(f.name).cast(f.dataType) for f in struct.fields]
        )
        parsed = keyed.repartition(self.tasks * 2, "representative_id").mapInArrow(
            partial(_parse_partition, parse=parse), spark_schema(_PARSED)
        ).persist()
        try:
            return (
                self.write("classifications", parsed.where(F.col("table") == "classifications"), week),
                self.write("classification_rejects", parsed.where(F.col("table") == "classification_rejects"), week),
            )
        finally:
            parsed.unpersist()

    def aggregate(self, week: dt.date) -> Written:
        """Spark group-bys; the result is small, so it is committed from the driver with delta-rs."""
        keys = ["week_start", "classifier"]
        counts = self.read("classifications", week).groupBy(*keys, "label").agg(
            F.count(F.lit(1)).cast("long").alias("conversations")
        )
        insights = (
            counts.withColumn("labeled_conversations", F.sum("conversations").over(Window.partitionBy(*keys)))
            .withColumn("share", F.col("conversations") / F.col("labeled_conversations"))
            .orderBy("week_start", "classifier", F.desc("conversations"), "label")
        )
        frame = pl.from_arrow(insights.toArrow())
        uri = self.uri("weekly_insights")
        version = delta.overwrite_weeks(uri, frame, tables.WEEKLY_INSIGHTS, [week])
        return Written("weekly_insights", version, delta.read_weeks(uri, tables.WEEKLY_INSIGHTS, [week]))


def _parallelism(spark: SparkSession) -> int:
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # Spark Connect has no SparkContext
        return int(spark.conf.get("spark.default.parallelism", "2"))


def _units(root: Path, read: Reader) -> list[Path]:
    """The landing files (or table folders) ingest reads, in landing order."""
    options = getattr(read, "keywords", {})
    return landing_files(root, options["input_format"]) if "input_format" in options else landing_files(root)


def _side_files(root: Path, units: list[str]) -> list[str]:
    """Files that are not units (e.g. answer files joined to questions): every task sees them."""
    inside = [root / u for u in units]
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not any(p == u or u in p.parents for u in inside)
    )


def _mirror(root: Path, rels: list[str], tree: Path) -> None:
    """Symlinks ``rels`` into ``tree`` at the same relative paths (folders as real folders)."""
    for rel in rels:
        src = root / rel
        for path in [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]:
            link = tree / path.relative_to(root)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, link)


def _ingest_units(batches, *, landing_dir: str, side: list[str], read: Reader):
    """Executor side: the ingest reader over a view of the landing folder holding only these units, so
    record refs, landing order and each file's week are exactly those of a full read."""
    struct = spark_schema(_INGESTED)
    root = Path(landing_dir)
    for batch in batches:
        for unit, rels in zip(batch.column("unit").to_pylist(), batch.column("rels").to_pylist()):
            with tempfile.TemporaryDirectory(prefix="semtel-ingest-") as tree:
                _mirror(root, [*side, *rels], Path(tree))
                result = read(tree)
            out = pl.concat(
                [
                    result.conversations.with_columns(table=pl.lit("conversations")),
                    result.rejects.with_columns(table=pl.lit("ingest_rejects")),
                ],
                how="diagonal_relaxed",
            ).with_columns(unit=pl.lit(unit, pl.Int64))
            yield from to_spark_arrow(tables.conform(out, _INGESTED), struct).to_batches()


def _map_stage(batches, *, stage: Stage, source: pl.Schema, target):
    """Executor side: the stage's core function over this task's rows."""
    frame = collect_frame(batches)
    if frame is not None:
        yield from to_spark_arrow(stage(tables.conform(frame, source)), target).to_batches()


def _hash_partition(batches):
    for batch in batches:
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        yield from frame.select(
            "conversation_id",
            "week_start",
            pl.col("transcript").map_elements(text_hash, return_dtype=pl.String).alias("text_hash"),
        ).to_arrow().cast(pa.schema([("conversation_id", pa.string()), ("week_start", pa.date32()), ("text_hash", pa.string())])).to_batches()


def _classify_partition(batches, *, plan, answered, endpoints, settings, uri, flush_rows, flush_seconds):
    frame = collect_frame(batches)
    if frame is None:
        return
    planned = plan(frame, frame, answered_ids=answered)
    stats = run_dispatch(
        planned,
        Dispatcher(endpoints, settings),
        partial(append_responses, uri),
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
    )
    row = {"needed": planned.total, "resumed": planned.answered, "sent": len(planned.to_send), "stats": json.dumps(stats.as_dict())}
    yield pa.RecordBatch.from_pylist([row])


def _parse_partition(batches, *, parse: Parser):
    frame = collect_frame(batches)
    if frame is None:
        return
    clusters = tables.conform(frame.filter(pl.col("kind") == "member"), tables.CONVERSATION_CLUSTERS)
    answers = frame.filter(pl.col("kind") == "response").unique("request_id", keep="first")
    classifications, rejects = parse(clusters, tables.conform(answers, tables.LLM_RESPONSES))
    out = pl.concat(
        [
            classifications.with_columns(table=pl.lit("classifications")),
            rejects.with_columns(table=pl.lit("classification_rejects")),
        ],
        how="diagonal_relaxed",
    )
    yield from to_spark_arrow(tables.conform(out, _PARSED), spark_schema(_PARSED)).to_batches()
