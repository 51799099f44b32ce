"""Batching strategies through Dagster, and `semtel eval` end to end: real HTTP, real Delta, real GX."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from dagster import DagsterInstance

from benchmarks.real_model.data import DATA
from semtel_dagster.cli import main
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)


def test_multi_conversation_week_through_dagster(tmp_path):
    write_week(tmp_path / "landing", tmp_path / "truth", WEEK, n=40, seed=5)
    defs = build_definitions(
        lake=LakeResource(root=str(tmp_path / "lake")),
        settings=PipelineSettings(
            landing_dir=str(tmp_path / "landing"),
            classifiers=["topic", "satisfaction"],
            batching_strategy="multi_conversation",
            batch_size=5,
        ),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim"),
    )
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=WEEK.isoformat(), instance=instance, raise_on_error=False
        )
    assert result.success
    checks = {
        e.asset_check_evaluation_data.asset_check_key.name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["classification_quality_gate"] and "label_drift_warning" in checks
    lake = str(tmp_path / "lake")
    responses = delta.read_weeks(delta.table_uri(lake, "llm_responses"), tables.LLM_RESPONSES, [WEEK])
    assert set(responses.get_column("strategy")) <= {"multi_conversation", "single", "followup"}
    assert responses.get_column("conversation_ids").list.len().max() == 5
    labels = delta.read_weeks(delta.table_uri(lake, "classifications"), tables.CLASSIFICATIONS, [WEEK])
    rejects = delta.read_weeks(delta.table_uri(lake, "classification_rejects"), tables.CLASSIFICATION_REJECTS, [WEEK])
    assert labels.height + rejects.height == 40 * 2


@pytest.mark.skipif(not DATA.is_dir(), reason=f"human-labeled data sets not found at {DATA} (../shared/data beside the checkout)")
def test_eval_command_writes_report_with_golden_scores(tmp_path):
    specs = ["--b", "name=combined,strategy=multi_classifier", "--b", "name=embedding,labeler=embedding,classifiers=topic+intent"]
    out = tmp_path / "eval"
    code = main(
        ["eval", "--a", "name=single,strategy=single", *specs, "--n", "24", "--seed", "3", "--golden-n", "30"]
        + ["--data", str(DATA), "--anomaly-rate", "0.1", "--out", str(out)]
    )
    assert code == 0
    report = out / "report.md"
    text = report.read_text()
    assert "Cohen's kappa" in text and "Golden set `mt_bench`" in text and "Golden set `clinc150`" in text
    assert "## Agreement of combined with single" in text and "## Agreement of embedding with single" in text
    result = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert [run["name"] for run in result["runs"]] == ["single", "combined", "embedding"]
    assert set(result["comparison"]["combined"]) == {
        "intent",
        "knowledge_work",
        "satisfaction",
        "task_complexity",
        "topic",
        "user_expertise",
    }
    assert set(result["comparison"]["embedding"]) == {"intent", "topic"}  # the classifiers both ran
    for comparison in result["comparison"].values():
        for cmp in comparison.values():
            assert -1.0 <= cmp["cohen_kappa"] <= 1.0 and 0.0 <= cmp["js_divergence"] <= 1.0
    for set_name in ("mt_bench", "clinc150"):
        topic = result["golden"][set_name]["single"]["topic"]
        assert topic["items"] >= 25 and 0.0 <= topic["macro_f1"] <= topic["accuracy"] + 1 and topic["accuracy"] > 0.1
        assert result["golden"][set_name]["embedding"]["topic"]["items"] == topic["items"]
    assert result["golden"]["sample"]["single"]["topic"]["accuracy"] > 0.8
    pngs = list((tmp_path / "eval").glob("*.png"))
    assert len(pngs) >= 6 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real conversations not found at {DATA} (../shared/data beside the checkout)")
def test_eval_on_real_conversations_without_truth(tmp_path):
    args = [
        "eval",
        "--a",
        "name=keyword,classifiers=intent",
        "--b",
        "name=nearest,labeler=embedding,noise_scale=0,classifiers=intent",
    ]
    args += ["--sample", "real", "--n", "9", "--max-chars", "800", "--seed", "1", "--golden", "", "--data", str(DATA)]
    assert main([*args, "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert result["sample"]["conversations"] == 9 and "equal shares" in result["sample"]["description"]
    assert result["golden"] == {}  # real conversations carry no labels
    assert result["comparison"]["nearest"]["intent"]["compared"] == 9
