"""The embedding classifier in the classify stage: week 1 all LLM, week 2 partly answered by a model of week 1."""

import datetime as dt

import polars as pl
import pytest
from dagster import DagsterInstance

from semtel_dagster.core.classify import embedding_classifier as ec
from semtel_dagster.core.classify.plan import answered_request_ids, expected_request_ids
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import (
    EmbedderResource,
    EndpointPoolResource,
    LakeResource,
    PipelineSettings,
)
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK_1 = dt.date(2026, 11, 9)
WEEK_2 = dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]
N = 80


def _metadata(result, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return event.step_materialization_data.materialization.metadata


def test_confident_rows_skip_the_llm_once_earlier_labels_exist(tmp_path, monkeypatch, local_embedder):
    monkeypatch.setattr(EmbedderResource, "embedder", lambda self: local_embedder)
    for seed, week in enumerate((WEEK_1, WEEK_2)):
        write_week(tmp_path / "landing", tmp_path / "truth", week, n=N, seed=11 + seed)
    lake = tmp_path / "lake"
    defs = build_definitions(
        lake=LakeResource(root=str(lake)),
        settings=PipelineSettings(
            landing_dir=str(tmp_path / "landing"),
            classifiers=CLASSIFIERS,
            embedding_classifier=True,
            embedding_classifier_min_labels=30,
            embedding_classifier_target_agreement=0.8,
        ),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim", flush_rows=25),
    )
    with DagsterInstance.ephemeral() as instance:
        runs = {
            week: defs.resolve_job_def("weekly_pipeline").execute_in_process(
                partition_key=week.isoformat(), instance=instance, raise_on_error=False
            )
            for week in (WEEK_1, WEEK_2)
        }
    assert all(r.success for r in runs.values())  # every gate passed

    def read(table, week):
        return delta.read_weeks(delta.table_uri(str(lake), table), tables.TABLES[table], [week])

    first, second = (_metadata(runs[w], "llm_responses") for w in (WEEK_1, WEEK_2))
    assert first["calls_avoided"].value == 0  # no earlier labels: the LLM answers everything
    assert all(not c["used"] for c in first["embedding_classifier"].value.values())
    avoided = second["calls_avoided"].value
    assert avoided > 0
    print(f"calls avoided in week 2: {avoided}")
    assert any(c["used"] for c in second["embedding_classifier"].value.values())

    responses = read("llm_responses", WEEK_2)
    by_model = responses.filter(pl.col("endpoint") == ec.ENDPOINT)
    assert by_model.height == avoided
    assert (by_model["status"] == "ok").all() and (by_model["prompt_tokens"] == 0).all()
    reps = read("conversation_clusters", WEEK_2).filter(pl.col("is_representative")).height
    assert responses.height == reps * len(CLASSIFIERS)  # one answer per request, model or LLM
    assert second["requests_sent"].value == reps * len(CLASSIFIERS) - avoided
    classifications, rejects = read("classifications", WEEK_2), read("classification_rejects", WEEK_2)
    assert classifications.height + rejects.height == N * len(CLASSIFIERS)  # row conservation
    assert classifications.filter(pl.col("model").is_in(by_model["model"].unique().to_list())).height >= avoided
    assert list((lake / "_models").glob("*/*/meta.json"))
    # resume: with the model versions counted as answerers, a rerun of the week has nothing to send
    llm_models = set(responses.filter(pl.col("endpoint") != ec.ENDPOINT)["model"].to_list())
    done = answered_request_ids(responses, llm_models | set(by_model["model"].to_list()))
    expected = expected_request_ids(read("conversation_clusters", WEEK_2), load_classifiers(None, CLASSIFIERS))
    assert set(expected["request_id"].to_list()) <= done
