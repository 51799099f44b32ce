"""Embedding dedupe on the Spark engine (engines/spark_dedupe.py): distributed, and equal to the Polars engine.

The week is ingested and truncated once; the dedupe asset then runs through Dagster on each engine,
with the simulator's ``/v1/embeddings`` (deterministic per text) as the embedder on both.
"""

import datetime as dt
import random
import shutil

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance

from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.engines.spark_dedupe import connected_components
from semtel_dagster.resources import EmbedderResource, EngineResource, LakeResource, PipelineSettings
from semtel_dagster.sim import SimulatorThread
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)


def test_connected_components_label_every_id_with_its_smallest_connected_id(spark):
    ids = [f"v{i:02d}" for i in range(50)]
    random.Random(3).shuffle(ids)
    chain, star, pairs = ids[:32], ids[32:40], ids[40:]  # a long path in scrambled id order, a star, pairs
    edges = list(zip(chain[1:], chain[:-1])) + [(v, star[0]) for v in star[1:]] + list(zip(pairs[::2], pairs[1::2]))
    frame = spark.createDataFrame([(a, b, 1.0) for a, b in edges], "src string, dst string, similarity double")
    labels, rounds = connected_components(frame)
    got = {r.v: r.component for r in labels.collect()}
    expected = {v: min(group) for group in [chain, star] + [pairs[i : i + 2] for i in range(0, 10, 2)] for v in group}
    assert got == expected
    assert rounds <= 6  # about log(size) rounds, not one per hop of the chain


def _run(lake, engine, embedder, *assets):
    defs = build_definitions(
        lake=LakeResource(root=str(lake)),
        settings=PipelineSettings(landing_dir=str(lake.parent / "landing"), dedupe_method="embedding"),
        embedder=embedder,
        engine=engine,
    )
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=WEEK.isoformat(), instance=instance, asset_selection=[AssetKey(a) for a in assets]
        )
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(assets[-1])]
    return event.step_materialization_data.materialization.metadata


def _clusters(lake):
    frame = delta.read_weeks(delta.table_uri(str(lake), "conversation_clusters"), tables.CONVERSATION_CLUSTERS, [WEEK])
    return frame.sort("conversation_id")


def test_spark_embedding_dedupe_equals_polars(tmp_path, spark):
    write_week(tmp_path / "landing", tmp_path / "truth", WEEK, n=150, seed=11)
    polars, spark_lake = tmp_path / "lake-polars", tmp_path / "lake-spark"
    with SimulatorThread() as sim:
        embedder = EmbedderResource(kind="openai", base_url=sim.base_url(), model="sim-embed")
        _run(polars, EngineResource(kind="polars"), embedder, "conversations", "ingest_rejects", "conversations_truncated")
        shutil.copytree(polars, spark_lake)
        dedupe = ("conversation_embeddings", "conversation_clusters")  # one step, both assets
        on_polars = _run(polars, EngineResource(kind="polars"), embedder, *dedupe)
        on_spark = _run(spark_lake, EngineResource(kind="spark", spark_master="local[2]"), embedder, *dedupe)

    expected, actual = _clusters(polars), _clusters(spark_lake)
    assert actual.equals(expected)
    vectors = [
        delta.read_weeks(delta.table_uri(str(lake), "conversation_embeddings"), tables.CONVERSATION_EMBEDDINGS, [WEEK]).sort(
            "conversation_id"
        )
        for lake in (polars, spark_lake)
    ]
    assert vectors[1].equals(vectors[0]) and vectors[0]["conversation_id"].to_list() == (
        expected.filter(pl.col("is_representative"))["conversation_id"].to_list()
    )
    merged = expected.filter(pl.col("method") == "embedding")
    assert merged.height >= 5 and (merged["similarity"] >= 0.95).all() and (merged["similarity"] < 1).all()
    assert on_spark["merged_by_embedding"].value == on_polars["merged_by_embedding"].value == merged.height
    stats = on_spark["embedding"].value
    assert stats["embedder"] == "sim-embed" and stats["texts"] == expected["text_hash"].n_unique() and stats["edges"] > 0
