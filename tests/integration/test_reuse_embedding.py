"""Cross-week label reuse by embedding (``reuse_match: embedding``), on both engines.

Week A is deduplicated by embedding (its representatives' vectors land in ``conversation_embeddings``)
and classified; week B repeats ten of A's conversations with a few words added, so no text hash
matches. With ``reuse_match: embedding`` those copies are answered from A's labels (``label_reuse``
rows that name the earlier conversation and the cosine), so fewer calls are sent than under ``exact``;
every gate passes. The Spark engine then runs week B's dedupe, classify and parse from the same lake and
writes the very same tables. Embeddings: the simulator's ``/v1/embeddings``.
"""

import datetime as dt
import json
import shutil

import polars as pl
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from semtel_dagster.core.classify.reuse import ENDPOINT
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import (
    EmbedderResource,
    EndpointPoolResource,
    EngineResource,
    LakeResource,
    PipelineSettings,
)
from semtel_dagster.sim import SimulatorThread
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK_A, WEEK_B = dt.date(2026, 11, 9), dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]
COPIES = 10
MODEL = "sim-model"
UPSTREAM = ["conversations", "ingest_rejects", "conversations_truncated"]
DOWNSTREAM = ["conversation_clusters", "conversation_embeddings", "llm_responses", "classifications", "classification_rejects"]
HOW_IT_WENT = ["latency_ms", "created_at", "attempts", "rate_limited", "cached_tokens"]


@pytest.fixture(scope="module")
def sim():
    with SimulatorThread() as running:
        yield running


def _run(home, lake, sim, assets, week, *, engine=None, **settings):
    endpoints = home / "endpoints.yaml"
    endpoints.write_text(yaml.safe_dump({"endpoints": [{"name": "sim", "base_url": sim.base_url(), "model": MODEL}]}))
    defs = build_definitions(
        lake=LakeResource(root=str(lake)),
        settings=PipelineSettings(
            landing_dir=str(home / "landing"),
            classifiers=CLASSIFIERS,
            dedupe_method="embedding",
            reuse_labels_weeks=1,
            **settings,
        ),
        endpoint_pool=EndpointPoolResource(endpoints_file=str(endpoints)),
        embedder=EmbedderResource(kind="openai", base_url=sim.base_url(), model="sim-embed"),
        engine=engine or EngineResource(kind="polars"),
    )
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=week.isoformat(), instance=instance, asset_selection=[AssetKey(a) for a in assets]
        )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks if c.check_name != "label_drift_warning"), [
        c.check_name for c in checks if not c.passed
    ]
    return {
        e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


def _read(lake, table, week):
    frame = delta.read_weeks(delta.table_uri(str(lake), table), tables.TABLES[table], [week])
    frame = frame.drop(HOW_IT_WENT if table == "llm_responses" else [])
    return frame.sort([c for c in frame.columns if c != "vector"], nulls_last=True)


@pytest.fixture(scope="module")
def weeks(tmp_path_factory, sim):
    """Both weeks ingested and truncated, then week A deduplicated by embedding and classified (Polars)."""
    home = tmp_path_factory.mktemp("reuse-embedding")
    landing = home / "landing"
    write_week(landing, home / "truth", WEEK_A, n=60, seed=3)
    originals = [
        json.loads(line)
        for line in (landing / f"sample-{WEEK_A}.jsonl").read_bytes().splitlines()
        if line.startswith(b"{") and b"-bad-" not in line
    ][:COPIES]
    write_week(landing, home / "truth", WEEK_B, n=60, seed=4)
    with open(landing / "near-copies.jsonl", "w") as out:
        for k, record in enumerate(originals):
            messages = [dict(m) for m in record["messages"]]
            first_user = next(m for m in messages if m["role"] == "user")
            first_user["content"] += " Thanks a lot!"  # a new text hash, nearly the same vector
            out.write(
                json.dumps({**record, "conversation_id": f"near-{k}", "messages": messages, "started_at": "2026-11-18T09:00:00Z"})
                + "\n"
            )
    polars, exact = home / "polars", home / "exact"
    for week in (WEEK_A, WEEK_B):
        _run(home, polars, sim, UPSTREAM, week)
    _run(home, polars, sim, DOWNSTREAM, WEEK_A, reuse_match="embedding")
    shutil.copytree(polars, exact)
    shutil.copytree(polars, home / "after-a")
    runs = {
        match: _run(home, lake_b, sim, DOWNSTREAM, WEEK_B, reuse_match=match)
        for match, lake_b in (("exact", exact), ("embedding", polars))
    }
    return home, polars, runs


def test_near_copies_reuse_earlier_labels_by_embedding(weeks):
    _, polars, runs = weeks
    on_exact, on_embedding = runs["exact"], runs["embedding"]

    vectors = _read(polars, "conversation_embeddings", WEEK_A)
    reps_a = _read(polars, "conversation_clusters", WEEK_A).filter(pl.col("is_representative"))
    assert sorted(vectors["conversation_id"]) == sorted(reps_a["conversation_id"])
    assert set(vectors["embedder"]) == {"sim-embed"} and set(vectors["vector"].list.len()) == {384}

    responses = _read(polars, "llm_responses", WEEK_B)
    reused = (
        responses.filter(pl.col("endpoint") == ENDPOINT)
        .with_columns(
            pl.col("conversation_ids").list.first().alias("conversation_id"),
            pl.col("classifiers").list.first().alias("classifier"),
            pl.col("raw_text")
            .str.json_decode(pl.Struct({"label": pl.String, "reused_from": pl.String, "cosine": pl.Float64}))
            .alias("answer"),
        )
        .unnest("answer")
    )
    clusters_b = _read(polars, "conversation_clusters", WEEK_B)
    copies = clusters_b.filter(pl.col("is_representative") & pl.col("conversation_id").str.starts_with("near-"))
    by_copy = reused.filter(pl.col("conversation_id").str.starts_with("near-"))
    assert copies.height >= COPIES // 2 and by_copy.height == copies.height * len(CLASSIFIERS)
    assert (by_copy["cosine"] >= 0.95).all() and (by_copy["cosine"] < 1).all() and set(by_copy["prompt_tokens"]) == {0}
    assert by_copy["reused_from"].is_in(vectors["conversation_id"].implode()).all()  # an earlier representative
    # the label is the earlier conversation's, fanned out to the copy's whole cluster by parse
    labels_a = _read(polars, "classifications", WEEK_A).select(
        pl.col("conversation_id").alias("reused_from"), "classifier", pl.col("label").alias("label_a")
    )
    labels_b = _read(polars, "classifications", WEEK_B)
    joined = by_copy.join(labels_b, on=["conversation_id", "classifier"]).join(labels_a, on=["reused_from", "classifier"])
    assert joined.height == by_copy.height and (joined["label_a"] == joined["label_right"]).all()

    assert on_embedding["llm_responses"]["requests_sent"].value < on_exact["llm_responses"]["requests_sent"].value
    assert (
        on_embedding["llm_responses"]["labels_reused"].value >= on_exact["llm_responses"]["labels_reused"].value + by_copy.height
    )
    conversations = _read(polars, "conversations", WEEK_B).height
    rejects = _read(polars, "classification_rejects", WEEK_B)
    assert labels_b.height + rejects.height == conversations * len(CLASSIFIERS)  # conservation


def test_spark_engine_writes_the_same_tables(weeks, sim, spark):
    """Week B on Spark from the lake as week A left it: its vectors written by the executors, the matches
    found by bucket shuffles, the same labels reused (week A's tables on Spark: dedupe and parity tests)."""
    home, polars, _ = weeks
    lake = home / "spark"
    shutil.copytree(home / "after-a", lake)
    _run(
        home,
        lake,
        sim,
        DOWNSTREAM,
        WEEK_B,
        engine=EngineResource(kind="spark", spark_master="local[2]", classify_tasks=2),
        reuse_match="embedding",
    )
    for table in DOWNSTREAM:
        expected, actual = _read(polars, table, WEEK_B), _read(lake, table, WEEK_B)
        assert expected.height > 0 or table == "classification_rejects", table
        assert actual.equals(expected), f"{table} differs between engines"
    assert _read(lake, "llm_responses", WEEK_B)["raw_text"].str.contains('"cosine"').any()
