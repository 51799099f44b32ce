"""Near-duplicate dedupe on Spark: the Polars engine's ``core.dedupe`` functions per task, shuffles between.

Exact clusters (as ``cluster_exact``) -> exact representatives embedded per partition on executors, with
their LSH keys -> one row per (representative, key), shuffled by key so each bucket is whole on one task
-> ``near_duplicate_edges`` per task -> connected components of the edge graph (large-star / small-star
with Spark joins) -> ``resolve_edges`` per task on whole components, which is the whole-graph answer ->
moves joined back onto the exact clusters -> the final representatives' vectors written from the
executors that hold them (``conversation_embeddings``). Vectors move into the bucket shuffle and into
that table; otherwise only ids and edges move. The driver sees counts and one row of embedding statistics.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import polars as pl
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.dedupe import EDGES, METHOD_EMBEDDING, MOVES, lsh_keys, near_duplicate_edges, resolve_edges
from semtel_dagster.core.prepare.embeddings import Embedder, EmbeddingStats
from semtel_dagster.engines import Written
from semtel_dagster.engines.spark_delta import arrow_frame, collect_frame, spark_schema, to_spark_arrow

_EMBEDDED_ROW = tables.schema(
    {
        "conversation_id": pl.String,
        "vector": pl.List(pl.Float32),
        "keys": pl.List(pl.Int64),
        "name": pl.String,
        "texts": pl.Int64,
        "seconds": pl.Float64,
        "load_seconds": pl.Float64,  # one stats row per task
    }
)
_EMBEDDED = spark_schema(_EMBEDDED_ROW)
_EDGES = spark_schema(EDGES)
_MOVED = spark_schema(MOVES)
_EMBEDDERS: dict[bytes, Embedder] = {}  # per Python worker: the local model loads once, not once per task


def cluster_embedding(engine, week: dt.date, embedder: Callable[[], Embedder], threshold: float) -> tuple[Written, Written, dict]:
    """``conversation_clusters`` for the week with near-duplicates merged, and ``conversation_embeddings``
    (the final representatives' vectors, written by the executors that hold them); ``embedder`` must
    pickle (executors build their own). Returns both written weeks and embedding statistics."""
    exact = engine.exact_clusters(week).persist()
    truncated = engine.read("conversations_truncated", week).select("conversation_id", "transcript")
    reps = (
        exact.where("is_representative")
        .select("conversation_id")
        .join(truncated, "conversation_id")
        .repartition(engine.tasks)  # the model is the slow step: every core embeds
    )
    embedded = reps.mapInArrow(partial(_embed_partition, embedder=embedder), _EMBEDDED).persist()  # embed once
    try:
        stats = (
            embedded.where(F.col("conversation_id").isNull())
            .agg(
                F.max("name").alias("name"),
                F.sum("texts").alias("texts"),
                F.sum("seconds").alias("seconds"),
                F.max("load_seconds").alias("load_seconds"),
                F.count(F.lit(1)).alias("tasks"),
            )
            .first()
        )
        vectors = embedded.where(F.col("conversation_id").isNotNull())
        edges = (
            vectors.select("conversation_id", F.explode("keys").alias("key"), "vector")
            .repartition("key")
            .mapInArrow(partial(_edges_partition, threshold=threshold), _EDGES)
            .localCheckpoint(eager=False)  # stored by the count below, read by every later step
        )
        n_edges = edges.count()
        if n_edges:
            labels, rounds = connected_components(edges)
            tagged = edges.join(labels.select(F.col("v").alias("src"), F.col("component")), "src")
            moved = tagged.repartition("component").mapInArrow(_resolve_partition, _MOVED)
        else:
            moved, rounds = engine.spark.createDataFrame([], _MOVED), 0
        written = engine.write("conversation_clusters", _merge(exact, moved), week)
        final = written.frame.where("is_representative").select("conversation_id")
        kept = vectors.join(final, "conversation_id", "left_semi").select(
            "conversation_id", F.lit(week).alias("week_start"), F.lit(stats.name).alias("embedder"), "vector"
        )
        embeddings = engine.write("conversation_embeddings", kept, week)
    finally:
        embedded.unpersist()
        exact.unpersist()
    model = EmbeddingStats(stats.texts or 0, stats.seconds or 0.0, stats.load_seconds or 0.0)
    return (
        written,
        embeddings,
        {"embedder": stats.name, **model.as_dict(), "tasks": stats.tasks, "edges": n_edges, "component_rounds": rounds},
    )


def connected_components(edges: DataFrame) -> tuple[DataFrame, int]:
    """``(v, component)`` for every id on an edge, component = the smallest id it is connected to; and
    the rounds it took.

    Large-star / small-star (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014):
    each round rewires edges towards smaller ids without changing the components, until every
    component is a star around its smallest id. Rounds grow with log(size), where plain min-label
    propagation needs as many rounds as the longest path (templated text makes long paths). Each round
    is checkpointed, so the plan stays one round long.
    """
    graph = edges.select(F.greatest("src", "dst").alias("u"), F.least("src", "dst").alias("v")).distinct()
    rounds = 0
    while True:
        rounds += 1
        graph = _small_star(_large_star(graph)).localCheckpoint(eager=False)  # stored by the count below
        if not graph.select("u").intersect(graph.select(F.col("v").alias("u"))).count():  # stars: no id is both
            centers = graph.select(F.col("v"), F.col("v").alias("component")).distinct()
            return graph.select(F.col("u").alias("v"), F.col("v").alias("component")).unionByName(centers), rounds


def _large_star(graph: DataFrame) -> DataFrame:
    """Every neighbour larger than ``u`` is linked to the smallest id around ``u`` (``u`` included).
    Edges are ``(u, v)`` with ``u > v`` in and out."""
    both = graph.unionByName(graph.select(F.col("v").alias("u"), F.col("u").alias("v")))
    smallest = both.groupBy("u").agg(F.least(F.col("u"), F.min("v")).alias("m"))
    return both.join(smallest, "u").where(F.col("v") > F.col("u")).select(F.col("v").alias("u"), F.col("m").alias("v"))


def _small_star(graph: DataFrame) -> DataFrame:
    """``u`` and its smaller neighbours are all linked to the smallest of them."""
    smallest = graph.groupBy("u").agg(F.min("v").alias("m"))
    leaves = graph.join(smallest, "u").where(F.col("v") != F.col("m")).select(F.col("v").alias("u"), F.col("m").alias("v"))
    return leaves.unionByName(smallest.select("u", F.col("m").alias("v"))).distinct()


def _merge(exact: DataFrame, moved: DataFrame) -> DataFrame:
    """Exact clusters whose representative moved follow it: method ``embedding``, its cosine."""
    moves = moved.select(
        F.col("conversation_id").alias("representative_id"),
        F.col("representative_id").alias("new_rep"),
        F.col("similarity").alias("rep_similarity"),
    )
    is_moved = F.col("new_rep").isNotNull()
    merged = exact.join(moves, "representative_id", "left").select(
        "conversation_id",
        "week_start",
        F.coalesce("new_rep", "representative_id").alias("representative_id"),
        F.when(is_moved, F.lit(METHOD_EMBEDDING)).otherwise(F.col("method")).alias("method"),
        F.when(is_moved, F.col("rep_similarity")).otherwise(F.col("similarity")).alias("similarity"),
        "text_hash",
    )
    sizes = merged.groupBy("representative_id").agg(F.count(F.lit(1)).cast("long").alias("cluster_size"))
    return merged.join(sizes, "representative_id").withColumn(
        "is_representative", F.col("conversation_id") == F.col("representative_id")
    )


def executor_embedder(factory: Callable[[], Embedder]) -> tuple[Embedder, bool]:
    """This worker's embedder for ``factory`` and whether it was built just now."""
    key = pickle.dumps(factory)
    built = key not in _EMBEDDERS
    if built:
        _EMBEDDERS[key] = factory()
    return _EMBEDDERS[key], built


def _embed_partition(batches: Iterator[pa.RecordBatch], *, embedder: Callable[[], Embedder]):
    """Executor side: vectors and LSH keys (core ``lsh_keys``, same seed everywhere), then this task's
    embedding statistics as one row with a null id."""
    model, built = executor_embedder(embedder)
    texts, seconds = model.stats.texts, model.stats.seconds
    for batch in batches:
        if not batch.num_rows:
            continue
        frame = arrow_frame(pa.Table.from_batches([batch]))
        vectors = model.embed(frame["transcript"].fill_null("").to_list())
        yield from _embedded_rows(
            {
                "conversation_id": frame["conversation_id"],
                "vector": pl.Series(vectors).cast(pl.List(pl.Float32)),
                "keys": pl.Series(lsh_keys(vectors)).cast(pl.List(pl.Int64)),
            }
        )
    yield from _embedded_rows(
        {
            "name": [model.name],
            "texts": [model.stats.texts - texts],
            "seconds": [model.stats.seconds - seconds],
            "load_seconds": [model.stats.load_seconds if built else 0.0],
        }
    )


def _embedded_rows(columns: dict) -> list[pa.RecordBatch]:
    """``columns`` as ``_EMBEDDED`` batches, the other columns null."""
    frame = pl.concat([tables.empty(_EMBEDDED_ROW), pl.DataFrame(columns)], how="diagonal_relaxed")
    return to_spark_arrow(tables.conform(frame, _EMBEDDED_ROW), _EMBEDDED).to_batches()


def _edges_partition(batches: Iterator[pa.RecordBatch], *, threshold: float):
    """Executor side: the buckets of this task, each whole (shuffled by key), scanned by the core."""
    collected = list(batches)
    if not collected:
        return
    table = pa.Table.from_batches(collected)
    ids = pl.Series("conversation_id", table.column("conversation_id"))
    flat = table.column("vector").combine_chunks().flatten().to_numpy()
    vectors = flat.reshape(table.num_rows, -1)
    unique = ids.unique().sort()  # id order, as on the Polars engine
    rows = unique.search_sorted(ids).to_numpy()
    first = np.empty(len(unique), dtype=np.int64)
    first[rows] = np.arange(len(rows))  # any copy: a row's vector is the same in all its buckets
    keys = table.column("key").to_numpy()
    edges = near_duplicate_edges(unique, vectors[first], keys, rows, threshold)
    yield from to_spark_arrow(edges, _EDGES).to_batches()


def _resolve_partition(batches: Iterator[pa.RecordBatch]):
    """Executor side: whole components (shuffled by component), resolved by the core."""
    frame = collect_frame(batches)
    if frame is not None:
        yield from to_spark_arrow(resolve_edges(frame.select("src", "dst", "similarity")), _MOVED).to_batches()
