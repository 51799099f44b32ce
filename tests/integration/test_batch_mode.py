"""Batch mode end to end against the simulator's batch API: ``semtel classify --mode batch`` and a
Dagster week under every batching strategy, real Delta tables, rerun."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import DagsterInstance

from semtel_dagster.cli import main
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm import batch_state as bs
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    landing, _ = write_week(folder / "landing", folder / "truth", WEEK, n=40, seed=5)
    return landing


def _endpoints(folder: Path) -> Path:
    path = folder / "endpoints.yaml"
    entry = {"name": "weekly", "kind": "sim", "batch": {"max_requests": 20, "poll_s": 0.1}}
    path.write_text(yaml.safe_dump({"endpoints": [entry]}))
    return path


def _classify(folder: Path, sample: Path, out: Path, *extra: str) -> tuple[int, dict]:
    summary = folder / f"summary-{time.monotonic_ns()}.json"
    args = ["classify", "--input", str(sample), "--output", str(out), "--classifiers", "topic,intent"]
    code = main([*args, "--endpoints", str(_endpoints(folder)), "--summary-json", str(summary), *extra])
    return code, json.loads(summary.read_text())


def _labels(out: Path) -> pl.DataFrame:
    return pl.read_delta(str(out / "classifications")).select("conversation_id", "classifier", "label").sort(pl.all())


def test_classify_in_batch_mode_answers_as_online_and_a_rerun_submits_nothing(tmp_path, sample):
    out = tmp_path / "batch"
    code, first = _classify(tmp_path, sample, out, "--mode", "batch")
    assert code == 0
    assert first["classifications"] + first["classification_rejects"] == 40 * 2
    responses = pl.read_delta(str(out / "llm_responses"))
    assert responses.height == first["requests"] and set(responses["endpoint"]) == {"weekly"}
    ledger = pl.read_delta(str(out / "llm_batches"))
    records = bs.latest_records(ledger)
    assert records and {r.status for r in records} == {bs.COLLECTED}
    assert sorted(rid for r in records for rid in r.request_ids) == sorted(responses["request_id"])
    assert max(len(r.request_ids) for r in records) <= 20

    code, _ = _classify(tmp_path, sample, tmp_path / "online", "--mode", "online")
    assert code == 0 and not (tmp_path / "online" / "llm_batches").exists()
    assert _labels(out).equals(_labels(tmp_path / "online"))  # the same requests, the same answers

    code, second = _classify(tmp_path, sample, out, "--mode", "batch")
    assert code == 0 and second["requests_sent"] == 0 and second["requests_resumed"] == first["requests"]
    assert pl.read_delta(str(out / "llm_batches")).height == ledger.height  # no batch submitted again


@pytest.mark.parametrize("strategy", ["single", "multi_classifier", "multi_conversation"])
def test_dagster_week_in_batch_mode(tmp_path, strategy):
    write_week(tmp_path / "landing", tmp_path / "truth", WEEK, n=40, seed=3)
    defs = build_definitions(
        lake=LakeResource(root=str(tmp_path / "lake")),
        settings=PipelineSettings(
            landing_dir=str(tmp_path / "landing"), classifiers=["topic", "satisfaction"], batching_strategy=strategy
        ),
        endpoint_pool=EndpointPoolResource(endpoints_file=str(_endpoints(tmp_path)), mode="batch"),
    )
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("weekly_pipeline").execute_in_process(partition_key=str(WEEK), instance=instance)
    assert result.success
    failed = [
        e.asset_check_evaluation_data.asset_check_key.name
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    assert not [name for name in failed if "drift" not in name]
    lake = str(tmp_path / "lake")
    responses = delta.read_weeks(delta.table_uri(lake, "llm_responses"), tables.LLM_RESPONSES, [WEEK])
    ledger = delta.read_weeks(delta.table_uri(lake, "llm_batches"), tables.LLM_BATCHES, [WEEK])
    assert strategy in set(responses["strategy"])
    assert set(responses.filter(pl.col("status") == "ok")["request_id"]) <= {
        rid for r in bs.latest_records(ledger) for rid in r.request_ids
    }
    classifications = delta.read_weeks(delta.table_uri(lake, "classifications"), tables.CLASSIFICATIONS, [WEEK])
    assert classifications.height > 0
