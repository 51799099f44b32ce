"""Batched strategies and the call-saving steps on both engines: one week, the same requests and labels.

A lake holds week A classified by the LLM alone and week B ingested, truncated and deduplicated (the
Polars pipeline). Week B, which repeats some of A's texts, is then classified and parsed through Dagster
by each engine under a batched strategy, with label reuse from A, an embedding classifier trained on A
(the simulator's embeddings endpoint, built on the Spark executors) and a simulator that drops ids from
batched answers and invents labels, so follow-up rounds happen. Only how a request went may differ.
(The single strategy, end to end with every gate: ``test_spark_parity.py``.)
"""

import datetime as dt
import json
import shutil

import polars as pl
import pytest
import yaml
from dagster import AssetSelection, DagsterInstance, materialize

from semtel_dagster.checks.invariants import request_coverage
from semtel_dagster.core.classify.plan import CALL_SAVING, STRATEGY_EMBEDDING, STRATEGY_FOLLOWUP
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.lake.frames import collect_small
from semtel_dagster.definitions import STAGE_ASSETS
from semtel_dagster.resources import (
    EmbedderResource,
    EndpointPoolResource,
    EngineResource,
    LakeResource,
    PipelineSettings,
)
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK_A, WEEK_B = dt.date(2026, 11, 9), dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]
UPSTREAM = ["conversations", "ingest_rejects", "conversations_truncated", "conversation_clusters", "conversation_embeddings"]
CLASSIFY = ["llm_responses", "classifications", "classification_rejects"]
HOW_IT_WENT = ["latency_ms", "created_at", "attempts", "rate_limited", "endpoint", "cached_tokens"]
MODEL = "sim-model"


@pytest.fixture(scope="module")
def sim(clean_and_messy_sim):
    return clean_and_messy_sim


def _materialize(home, lake, sim, keys, week, *, endpoint="messy", engine=None, **settings):
    endpoints = home / f"{endpoint}.yaml"
    endpoints.write_text(yaml.safe_dump({"endpoints": [{"name": endpoint, "base_url": sim.base_url(endpoint), "model": MODEL}]}))
    resources = {
        "lake": LakeResource(root=str(lake)),
        "settings": PipelineSettings(landing_dir=str(home / "landing"), classifiers=CLASSIFIERS, **settings),
        "endpoint_pool": EndpointPoolResource(endpoints_file=str(endpoints), flush_rows=25),
        "embedder": EmbedderResource(kind="openai", base_url=sim.base_url("clean"), model="sim-hashed"),
        "engine": engine or EngineResource(kind="polars"),
    }
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            STAGE_ASSETS,
            resources=resources,
            partition_key=week.isoformat(),
            instance=instance,
            selection=AssetSelection.assets(*keys),
        )


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, sim):
    """Week A classified by the LLM alone; week B ready to classify, with ten of A's texts asked again."""
    home = tmp_path_factory.mktemp("seed")
    landing = home / "landing"
    write_week(landing, home / "truth", WEEK_A, n=60, seed=3)
    week_a = [
        json.loads(line)
        for line in (landing / f"sample-{WEEK_A}.jsonl").read_bytes().splitlines()
        if line.startswith(b"{") and b"-bad-" not in line
    ][:10]
    write_week(landing, home / "truth", WEEK_B, n=60, seed=4)
    with open(landing / "repeats.jsonl", "w") as out:
        for k, record in enumerate(week_a):
            out.write(json.dumps({**record, "conversation_id": f"again-{k}", "started_at": "2026-11-18T09:00:00Z"}) + "\n")
    lake = home / "lake"
    assert _materialize(home, lake, sim, UPSTREAM + CLASSIFY, WEEK_A, endpoint="clean").success
    assert _materialize(home, lake, sim, UPSTREAM, WEEK_B).success
    return home


def _table(lake, name):
    frame = delta.read_weeks(delta.table_uri(str(lake), name), tables.TABLES[name], [WEEK_B])
    frame = frame.drop(HOW_IT_WENT if name == "llm_responses" else [])
    return frame.sort(frame.columns, nulls_last=True)


@pytest.mark.parametrize("strategy", ["multi_conversation", "multi_classifier"])
def test_engines_agree_under_batching_with_reuse_and_embedding_classifier(seeded, sim, spark, tmp_path, strategy):
    settings = {
        "batching_strategy": strategy,
        "batch_size": 4,
        "reuse_labels_weeks": 1,
        "embedding_classifier": True,
        "embedding_classifier_min_labels": 20,
        "embedding_classifier_target_agreement": 0.9,
    }
    lakes, engines = (
        {},
        {
            "polars": EngineResource(kind="polars"),
            "spark": EngineResource(kind="spark", spark_master="local[2]", classify_tasks=2),
        },
    )
    for name, engine in engines.items():
        lakes[name] = tmp_path / name
        shutil.copytree(seeded / "lake", lakes[name])
        assert _materialize(seeded, lakes[name], sim, CLASSIFY, WEEK_B, engine=engine, **settings).success
        # the responses gate's invariant, computed where the week lives: every needed request answered
        source = engine.for_lake(str(lakes[name]))
        coverage = request_coverage(
            source.read("conversation_clusters", WEEK_B),
            source.read("llm_responses", WEEK_B),
            load_classifiers(None, CLASSIFIERS),
            strategy,
            4,
        )
        assert collect_small(coverage)["produced"].all(), name

    responses = _table(lakes["polars"], "llm_responses")
    saved = responses.filter(pl.col("strategy").is_in(CALL_SAVING))
    assert set(saved["strategy"]) == set(CALL_SAVING)  # both steps answered pairs
    preanswered = set(saved.select(pl.col("conversation_ids").list.first(), pl.col("classifiers").list.first()).iter_rows())
    llm = responses.filter(~pl.col("strategy").is_in(CALL_SAVING))
    assert not preanswered & {
        (c, n) for ids, names in llm.select("conversation_ids", "classifiers").iter_rows() for c in ids for n in names
    }
    assert llm.filter(pl.col("strategy") == STRATEGY_FOLLOWUP).height > 0  # a second round happened
    for name in CLASSIFY:
        expected, actual = _table(lakes["polars"], name), _table(lakes["spark"], name)
        assert expected.height > 0, name
        assert actual.equals(expected), f"{name} differs between engines under {strategy}"


def test_engines_agree_when_embedding_classifiers_read_the_stored_vectors(seeded, sim, spark, tmp_path):
    """Week B deduplicated by embedding: both engines answer from its ``conversation_embeddings`` vectors."""
    settings = {
        "dedupe_method": "embedding",
        "embedding_classifier": True,
        "embedding_classifier_min_labels": 20,
        "embedding_classifier_target_agreement": 0.9,
    }
    base = tmp_path / "base"
    shutil.copytree(seeded / "lake", base)
    assert _materialize(seeded, base, sim, ["conversation_clusters", "conversation_embeddings"], WEEK_B, **settings).success
    assert _table(base, "conversation_embeddings").height > 0
    engines = {
        "polars": EngineResource(kind="polars"),
        "spark": EngineResource(kind="spark", spark_master="local[2]", classify_tasks=2),
    }
    for name, engine in engines.items():
        shutil.copytree(base, tmp_path / name)
        assert _materialize(seeded, tmp_path / name, sim, CLASSIFY, WEEK_B, engine=engine, **settings).success
    responses = _table(tmp_path / "polars", "llm_responses")
    assert responses.filter(pl.col("strategy") == STRATEGY_EMBEDDING).height > 0
    for name in CLASSIFY:
        assert _table(tmp_path / "spark", name).equals(_table(tmp_path / "polars", name)), f"{name} differs between engines"
