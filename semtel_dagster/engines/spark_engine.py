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
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from functools import partial, reduce
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from semtel_dagster.core.classify import reuse
from semtel_dagster.core.classify.answering import Answered, Answering, Calls, Send, answer, batch_send
from semtel_dagster.core.classify.parse import ANSWERED_PAIRS, answered_pairs, fan_out
from semtel_dagster.core.classify.plan import (
    DEFAULT_BATCH_SIZE,
    STRATEGY_SINGLE,
    WALL_PARALLEL,
    batch_width,
    latest_per_request,
    run_dispatch,
)
from semtel_dagster.core.classify.prompts import Classifier
from semtel_dagster.core.ingest.landing import landing_files
from semtel_dagster.core.insights.aggregate import LABEL_COUNTS, PAIR_COUNTS
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm.batch import DeltaLedger
from semtel_dagster.core.prepare.dedupe import METHOD_EXACT, lsh_keys, text_hash, vector_matrix
from semtel_dagster.core.prepare.embeddings import Embedder
from semtel_dagster.engines import Classified, Parser, Reader, Stage, Written, spark_dedupe
from semtel_dagster.engines.quota import share_endpoints, share_settings
from semtel_dagster.engines.spark_delta import arrow_frame, collect_frame, overwrite_week, read_week, spark_schema, to_spark_arrow

_INGESTED = tables.schema({**tables.CONVERSATIONS, **tables.INGEST_REJECTS, "table": pl.String, "unit": pl.Int64})
_PARSED = tables.schema({**tables.CLASSIFICATIONS, **tables.CLASSIFICATION_REJECTS, "table": pl.String})
_KEYED = tables.schema({**tables.CONVERSATION_CLUSTERS, **tables.LLM_RESPONSES, "kind": pl.String, "batch": pl.Int64})
_REPS = tables.schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "is_representative": pl.Boolean,
        "transcript": pl.String,
        "tokens_after": pl.Int64,
        "embedder": pl.String,  # the representative's vector from conversation_embeddings (embedding classifiers)
        "vector": pl.List(pl.Float32),
    }
)
_TO_ANSWER = tables.schema({**_REPS, **tables.LLM_RESPONSES, **reuse.CANDIDATES, "kind": pl.String, "batch": pl.Int64})
_HASHED = "conversation_id string, week_start date, text_hash string"
_KEYED_VECTORS = tables.schema({**tables.CONVERSATION_EMBEDDINGS, "query": pl.Boolean, "keys": pl.List(pl.Int64)})
_TASK_REPORT = "report string"


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
        """Commit the week; the ``Written`` reads the committed files back lazily (a count and a few rows)."""
        version = overwrite_week(df, self.uri(table), tables.TABLES[table], week, self.writer)
        return Written(table, version, self.read(table, week))

    def ingest(self, week: dt.date, landing_dir: str, read: Reader) -> tuple[Written, Written, int]:
        """One task per landing file; ids seen in several files are settled by re-reading just those files
        together, in landing order, so "first seen wins" gives the answer a single pass would."""
        root = Path(landing_dir).resolve()
        read = _for_tasks(read)
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
        mapped = map_partitions(self.read(source, week), stage, tables.TABLES[source], tables.TABLES[target])
        return self.write(target, mapped, week)

    def cluster_exact(self, week: dt.date) -> Written:
        return self.write("conversation_clusters", self.exact_clusters(week), week)

    def cluster_embedding(
        self, week: dt.date, embedder: Callable[[], Embedder], threshold: float
    ) -> tuple[Written, Written, dict]:
        return spark_dedupe.cluster_embedding(self, week, embedder, threshold)

    def exact_clusters(self, week: dt.date) -> DataFrame:
        """Hash per partition (core ``text_hash``), then one group-by on the hash: only ids move."""
        hashed = self.read("conversations_truncated", week).select("conversation_id", "week_start", "transcript")
        hashed = hashed.mapInArrow(_hash_partition, _HASHED)
        keys = ["week_start", "text_hash"]
        clusters = hashed.groupBy(*keys).agg(
            F.min("conversation_id").alias("representative_id"), F.count(F.lit(1)).cast("long").alias("cluster_size")
        )
        return hashed.join(clusters, keys).select(
            "conversation_id",
            "week_start",
            "representative_id",
            (F.col("conversation_id") == F.col("representative_id")).alias("is_representative"),
            "cluster_size",
            F.lit(METHOD_EXACT).alias("method"),
            F.lit(1.0).alias("similarity"),
            "text_hash",
        )

    def classify(
        self,
        week: dt.date,
        answering: Answering,
        calls: Calls,
        *,
        reuse_weeks: list[dt.date],
        match_threshold: float | None,
        embedder: Callable[[], Embedder] | None,
        log: Callable[[str], None],
    ) -> Classified:
        """Each task answers whole batches with ``core.answering.answer``, the function the Polars engine runs
        on the week: reuse, embedding classifiers (the trained models pickled into the task, with the
        representatives' stored vectors; ``embedder`` building the embedder there for the others), then LLM rounds through its own dispatcher with a static share of
        every endpoint's quota and of the budget, streaming rows into ``llm_responses``; the driver compacts
        the week at the end."""
        uri = self.uri("llm_responses")
        if not delta.table_exists(uri):  # created once here, so concurrent task appends never race to create it
            delta.overwrite_weeks(uri, tables.empty(tables.LLM_RESPONSES), tables.LLM_RESPONSES, [week])
        clusters = self.read("conversation_clusters", week)
        truncated = self.read("conversations_truncated", week).select("conversation_id", "transcript", "tokens_after")
        reps = (
            clusters.where(F.col("is_representative"))
            .select("conversation_id", "week_start", "is_representative", F.col("conversation_id").alias("representative_id"))
            .join(truncated, "conversation_id")
            .withColumn("kind", F.lit("rep"))
        )
        if answering.embedding:  # vectors embedding dedupe stored: only the others are embedded in the tasks
            vectors = self.read("conversation_embeddings", week).select("conversation_id", "embedder", "vector")
            reps = reps.join(vectors, "conversation_id", "left")
        parts = [reps, _by_first_conversation(self.read("llm_responses", week))]
        if reuse_weeks:
            parts.append(self._reuse_candidates(week, clusters, reuse_weeks, match_threshold, answering.classifiers))
        keys = _batch_keys(clusters, batch_width(answering.strategy, answering.batch_size))
        if calls.batch_endpoints:  # one submitter on the driver: batch files hold the whole week
            return self._classify_in_batches(week, answering, calls, _keyed(parts, keys, spark_schema(_TO_ANSWER)), embedder, log)
        task = partial(
            _classify_partition,
            answering=answering,
            calls=replace(
                calls, endpoints=share_endpoints(calls.endpoints, self.tasks), settings=share_settings(calls.settings, self.tasks)
            ),
            uri=uri,
            embedder=embedder,
        )
        log(f"week {week}: answering on {self.tasks} Spark tasks, each with 1/{self.tasks} of every endpoint's quota")
        keyed = _keyed(parts, keys, spark_schema(_TO_ANSWER))
        per_task = keyed.repartition(self.tasks, "batch").mapInArrow(task, _TASK_REPORT).collect()
        report = Answered.merge([Answered(**json.loads(r.report)) for r in per_task], WALL_PARALLEL)
        return self._compacted(week, report, log)

    def _classify_in_batches(
        self, week: dt.date, answering: Answering, calls: Calls, keyed: DataFrame, embedder, log: Callable[[str], None]
    ) -> Classified:
        """Batch mode: the same ``answer`` over the week's rows on the driver, sent through the batch APIs
        by one submitter (``core.llm.batch``) whose ledger is the lake's ``llm_batches``."""
        uri = self.uri("llm_responses")
        send = batch_send(calls, DeltaLedger(self.uri("llm_batches"), week), log=log, where=f"week {week} ({answering.strategy})")
        reports = _classify_partition(
            iter(keyed.toArrow().to_batches()), answering=answering, calls=calls, uri=uri, embedder=embedder, send=send
        )
        report = Answered.merge([Answered(**json.loads(r.to_pylist()[0]["report"])) for r in reports], WALL_PARALLEL)
        return self._compacted(week, report, log)

    def _compacted(self, week: dt.date, report: Answered, log: Callable[[str], None]) -> Classified:
        log(
            f"week {week}: {report.needed} requests needed, {report.resumed} already answered, {report.sent} sent "
            f"({report.followups_sent} follow-ups), {report.reused} labels reused, {sum(report.embedded.values())} "
            f"answered by embedding classifiers"
        )
        latest = partial(
            _map_stage, stage=latest_per_request, source=tables.LLM_RESPONSES, target=spark_schema(tables.LLM_RESPONSES)
        )
        compacted = (
            self.read("llm_responses", week)
            .repartition(self.tasks, "request_id")
            .mapInArrow(latest, spark_schema(tables.LLM_RESPONSES))
        )
        return Classified(self.write("llm_responses", compacted, week), report)

    def _reuse_candidates(
        self,
        week: dt.date,
        clusters: DataFrame,
        weeks: list[dt.date],
        match_threshold: float | None,
        classifiers: dict[str, Classifier],
    ) -> DataFrame:
        """``core.reuse.candidates`` as Spark joins: labels of earlier weeks whose text a representative has;
        with ``match_threshold``, ``core.reuse.embedding_candidates`` for the others (``_embedding_matches``)."""
        earlier = reduce(DataFrame.unionByName, [self.read("conversation_clusters", w) for w in weeks])
        labels = self._answered_labels(earlier, weeks, classifiers).select(
            F.col("conversation_id").alias("source_id"),
            F.col("week_start").alias("source_week"),
            "classifier",
            "label",
            "prompt_version",
            "model",
        )
        stored = earlier.select(
            F.col("conversation_id").alias("source_id"), F.col("week_start").alias("source_week"), "text_hash"
        ).join(labels, ["source_id", "source_week"])
        matched = clusters.where(F.col("is_representative")).select("conversation_id", "text_hash").join(stored, "text_hash")
        matched = matched.withColumn("similarity", F.lit(None).cast("double"))
        if match_threshold is not None:
            queries = self.read("conversation_embeddings", week).join(
                matched.select("conversation_id"), "conversation_id", "left_anti"
            )
            matches = self._embedding_matches(queries, weeks, match_threshold)
            matched = matched.unionByName(matches.join(labels, ["source_id", "source_week"]), allowMissingColumns=True)
        return matched.select(
            *reuse.CANDIDATES, F.col("conversation_id").alias("representative_id"), F.lit("reuse").alias("kind")
        )

    def _answered_labels(self, clusters: DataFrame, weeks: list[dt.date], classifiers: dict[str, Classifier]) -> DataFrame:
        """``core.parse.answered_labels`` on the executors: each task decodes its answers, the first label of
        a pair by request id is kept across tasks, and labels fan out to cluster members by a join."""
        responses = reduce(DataFrame.unionByName, [self.read("llm_responses", w) for w in weeks])
        pairs = map_partitions(responses, partial(answered_pairs, classifiers=classifiers), tables.LLM_RESPONSES, ANSWERED_PAIRS)
        first = Window.partitionBy("week_start", "representative_id", "classifier").orderBy("request_id")
        pairs = pairs.withColumn("rank", F.row_number().over(first)).where(F.col("rank") == 1).drop("rank")
        return fan_out(clusters, pairs)

    def _embedding_matches(self, queries: DataFrame, weeks: list[dt.date], threshold: float) -> DataFrame:
        """``core.reuse.match_embeddings`` as shuffles: rows keyed on executors, one row per (row, LSH key)
        shuffled by bucket so each is whole on one task (``bucket_matches``), then by representative
        (``best_matches``). Earlier weeks' vectors never reach the driver."""
        stored = reduce(DataFrame.unionByName, [self.read("conversation_embeddings", w) for w in weeks])
        stored = stored.join(queries.select("embedder").distinct(), "embedder", "left_semi")
        rows = queries.withColumn("query", F.lit(True)).unionByName(stored.withColumn("query", F.lit(False)))
        return (
            rows.mapInArrow(_keys_partition, spark_schema(_KEYED_VECTORS))
            .select(*tables.CONVERSATION_EMBEDDINGS, "query", F.explode("keys").alias("key"))
            .repartition("embedder", "key")
            .mapInArrow(partial(_matches_partition, threshold=threshold), spark_schema(reuse.MATCHES))
            .repartition("conversation_id")
            .mapInArrow(
                partial(_map_stage, stage=reuse.best_matches, source=reuse.MATCHES, target=spark_schema(reuse.MATCHES)),
                spark_schema(reuse.MATCHES),
            )
        )

    def parse(self, week: dt.date, parse: Parser) -> tuple[Written, Written]:
        """Each task parses whole batches (``map_batches``) and fans labels out to their duplicates."""
        options = getattr(parse, "keywords", {})  # parse_week's settings, bound by the asset
        width = batch_width(options.get("strategy", STRATEGY_SINGLE), options.get("batch_size", DEFAULT_BATCH_SIZE))
        clusters, responses = self.read("conversation_clusters", week), self.read("llm_responses", week)
        parsed = map_batches(clusters, responses, width, partial(_parse_tables, parse=parse), _PARSED, self.tasks * 2).persist()
        try:
            return (
                self.write("classifications", parsed.where(F.col("table") == "classifications"), week),
                self.write("classification_rejects", parsed.where(F.col("table") == "classification_rejects"), week),
            )
        finally:
            parsed.unpersist()

    def label_counts(self, week: dt.date, pairs: Sequence[tuple[str, str]]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``core.insights.aggregate.label_counts`` and ``pair_counts`` as group-bys and joins; only the
        counts (small) reach the driver."""
        labels = self.read("classifications", week).select("conversation_id", "week_start", "classifier", "label")
        count = F.count(F.lit(1)).cast("long").alias("conversations")
        singles = labels.groupBy("week_start", "classifier", "label").agg(count)
        both = [
            labels.where(F.col("classifier") == a)
            .withColumnsRenamed({"classifier": "classifier_a", "label": "label_a"})
            .join(
                labels.where(F.col("classifier") == b).withColumnsRenamed({"classifier": "classifier_b", "label": "label_b"}),
                ["conversation_id", "week_start"],
            )
            .groupBy(*PAIR_COUNTS.names()[:-1])
            .agg(count)
            for a, b in pairs
        ]
        paired = tables.empty(PAIR_COUNTS) if not both else arrow_frame(reduce(DataFrame.unionByName, both).toArrow())
        return tables.conform(arrow_frame(singles.toArrow()), LABEL_COUNTS), tables.conform(paired, PAIR_COUNTS)


def open_engine(lake_root: str, config: Any) -> SparkEngine:
    """A session from ``config`` (``EngineResource``: master or Spark Connect, extra settings), shared by
    every step of the process."""
    from dagster_pyspark import LazyPySparkResource

    if not config.spark_remote and config.spark_master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers import this environment's semtel
    session = LazyPySparkResource(spark_config=config.session_config()).spark_session
    return SparkEngine(session, lake_root, writer=config.delta_writer, tasks=config.classify_tasks)


def _parallelism(spark: SparkSession) -> int:
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # Spark Connect has no SparkContext
        return int(spark.conf.get("spark.default.parallelism", "2") or "2")  # the stub drops the default


def _for_tasks(read: Reader) -> Reader:
    """The reader as tasks run it: without the landing index (tasks read exactly the files they are given,
    and the index, one small Delta table, must not be updated by many tasks at once), parsing in the
    task's own process (Spark runs a task per core already)."""
    if isinstance(read, partial):
        options = {k: v for k, v in read.keywords.items() if k != "index_uri"}
        return partial(read.func, *read.args, **options, parse_workers=1)
    return read


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
                result = read(tree).collect()
            out = pl.concat(
                [
                    result.conversations.with_columns(table=pl.lit("conversations")),
                    result.rejects.with_columns(table=pl.lit("ingest_rejects")),
                ],
                how="diagonal_relaxed",
            ).with_columns(unit=pl.lit(unit, pl.Int64))
            yield from to_spark_arrow(tables.conform(out, _INGESTED), struct).to_batches()


def map_partitions(df: DataFrame, stage: Stage, source: pl.Schema, target: pl.Schema) -> DataFrame:
    """``stage`` (a ``core`` function over rows of ``source``) run on each partition: right for row-local stages."""
    struct = spark_schema(target)
    return df.mapInArrow(partial(_map_stage, stage=stage, source=source, target=struct), struct)


def _map_stage(batches, *, stage: Stage, source: pl.Schema, target):
    """Executor side: the stage's core function over this task's rows."""
    frame = collect_frame(batches)
    if frame is not None:
        yield from to_spark_arrow(stage(tables.conform(frame, source)), target).to_batches()


def _hash_partition(batches):
    for batch in batches:
        frame = arrow_frame(pa.Table.from_batches([batch]))
        yield from (
            frame.select(
                "conversation_id",
                "week_start",
                pl.col("transcript").map_elements(text_hash, return_dtype=pl.String).alias("text_hash"),
            )
            .to_arrow()
            .cast(pa.schema([("conversation_id", pa.string()), ("week_start", pa.date32()), ("text_hash", pa.string())]))
            .to_batches()
        )


def _keys_partition(batches):
    """Executor side: each row's LSH keys (core ``lsh_keys``: per row, so any partitioning gives the same)."""
    frame = collect_frame(batches)
    if frame is None:
        return
    for _, group in frame.group_by("embedder"):
        keyed = group.with_columns(keys=pl.Series(lsh_keys(vector_matrix(group["vector"]))).cast(pl.List(pl.Int64)))
        yield from to_spark_arrow(tables.conform(keyed, _KEYED_VECTORS), spark_schema(_KEYED_VECTORS)).to_batches()


def _matches_partition(batches, *, threshold: float):
    """Executor side: whole buckets (shuffled by embedder and key), scanned by the core per embedder."""
    frame = collect_frame(batches)
    if frame is None:
        return
    for _, group in frame.group_by("embedder"):
        rows = group.select(*tables.CONVERSATION_EMBEDDINGS, "query").unique(["conversation_id", "week_start"], keep="first")
        positions = group.join(
            rows.with_row_index("_row").select("conversation_id", "week_start", "_row"),
            on=["conversation_id", "week_start"],
            how="left",
        )
        matches = reuse.bucket_matches(rows, positions["key"].to_numpy(), positions["_row"].to_numpy(), threshold)
        yield from to_spark_arrow(matches, spark_schema(reuse.MATCHES)).to_batches()


def _batch_keys(clusters: DataFrame, width: int) -> DataFrame:
    """(representative_id, batch): with ``width`` > 1 the Polars engine's chunk of each representative (its
    rank among the week's sorted ids // width; one sort in which only ids move), so a task holding a key
    holds whole chunks and, its ids sorted, cuts exactly the Polars units (only the last, short chunk holds
    the largest ids); with ``width`` 1 any key that keeps a representative's pairs together."""
    reps = clusters.where(F.col("is_representative")).select(F.col("conversation_id").alias("representative_id"), "week_start")
    if width == 1:
        return reps.select("representative_id", F.xxhash64("representative_id").alias("batch"))
    rank = F.row_number().over(Window.partitionBy("week_start").orderBy("representative_id")) - 1
    return reps.select("representative_id", F.floor(rank / width).cast("long").alias("batch"))


def _by_first_conversation(responses: DataFrame) -> DataFrame:
    """Answers keyed by their first conversation: every conversation of a planned unit is in the same batch."""
    first = F.try_element_at(F.col("conversation_ids"), F.lit(1))
    return responses.withColumn("representative_id", first).withColumn("kind", F.lit("response"))


def _keyed(parts: list[DataFrame], keys: DataFrame, struct) -> DataFrame:
    """Rows of several kinds, each with its representative's batch key, in one schema (tasks split by ``kind``)."""
    rows = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts).join(keys, "representative_id")
    return rows.select(
        [(F.col(f.name) if f.name in rows.columns else F.lit(None)).cast(f.dataType).alias(f.name) for f in struct.fields]
    )


def _classify_partition(batches, *, answering: Answering, calls: Calls, uri: str, embedder, send: Send | None = None):
    """Executor side: ``core.answering.answer`` over this task's whole batches, with its own dispatcher
    (or ``send``: the driver's batch submitter)."""
    frame = collect_frame(batches)
    if frame is None:
        return

    def dispatch(plan, write_batch):
        return run_dispatch(plan, calls.dispatcher(), write_batch, flush_rows=calls.flush_rows, flush_seconds=calls.flush_seconds)

    reps = tables.conform(frame.filter(pl.col("kind") == "rep"), _REPS)
    report = answer(
        answering,
        reps,
        reps,
        tables.conform(frame.filter(pl.col("kind") == "response"), tables.LLM_RESPONSES),
        tables.conform(frame.filter(pl.col("kind") == "reuse"), reuse.CANDIDATES),
        send=send or dispatch,
        write=partial(delta.append, uri, schema=tables.LLM_RESPONSES),
        embed=(lambda texts: spark_dedupe.executor_embedder(embedder)[0].embed(texts)) if embedder else None,
        vectors=reps.select("conversation_id", "embedder", "vector"),
    )
    yield pa.RecordBatch.from_pylist([{"report": json.dumps(asdict(report))}])


def map_batches(
    clusters: DataFrame,
    responses: DataFrame,
    width: int,
    fn: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame],
    target: pl.Schema,
    partitions: int | None = None,
) -> DataFrame:
    """``fn(clusters, responses)``, a ``core`` function of a week's clusters and answers, run per task on
    whole batches of ``width`` (``core.classify.batch_width``): members carry their representative's batch
    key, answers their first conversation's, and one shuffle on the key brings them together, so every
    task sees exactly the units classify planned (parse; the responses gate)."""
    keys = _batch_keys(clusters, width)
    keyed = _keyed([clusters.withColumn("kind", F.lit("member")), _by_first_conversation(responses)], keys, spark_schema(_KEYED))
    keyed = keyed.repartition(partitions, "batch") if partitions else keyed.repartition("batch")
    return keyed.mapInArrow(partial(_batches_partition, fn=fn, target=target), spark_schema(target))


def _batches_partition(batches, *, fn, target: pl.Schema):
    """Executor side: ``fn`` over this task's members and answers."""
    frame = collect_frame(batches)
    if frame is None:
        return
    clusters = tables.conform(frame.filter(pl.col("kind") == "member"), tables.CONVERSATION_CLUSTERS)
    answers = tables.conform(frame.filter(pl.col("kind") == "response"), tables.LLM_RESPONSES)
    yield from to_spark_arrow(tables.conform(fn(clusters, answers), target), spark_schema(target)).to_batches()


def _parse_tables(clusters: pl.DataFrame, responses: pl.DataFrame, *, parse: Parser) -> pl.DataFrame:
    """Both outputs of ``parse`` in one frame, told apart by ``table``."""
    classifications, rejects = parse(clusters, responses)
    return pl.concat(
        [
            classifications.with_columns(table=pl.lit("classifications")),
            rejects.with_columns(table=pl.lit("classification_rejects")),
        ],
        how="diagonal_relaxed",
    )
