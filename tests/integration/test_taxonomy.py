"""``semtel taxonomy`` on a demo sample against the simulator, then the draft classifies a week through
Dagster; the ``taxonomy`` asset group materialized from that lake."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import prompty
import pytest
from dagster import DagsterInstance, materialize

from semtel_dagster.cli import main
from semtel_dagster.core.classify.prompts import load_classifier
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)
ROOT = Path(__file__).resolve().parents[2]


def _taxonomy(capsys, *args: str) -> tuple[int, dict]:
    code = main(["taxonomy", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else {}


def test_cli_draft_resumes_then_classifies_a_week_through_dagster(tmp_path, capsys):
    landing, _ = write_week(tmp_path / "landing", tmp_path / "truth", WEEK, n=400, seed=5)
    draft = tmp_path / "drafts" / "discovered.prompty"
    args = ["--input", str(landing), "--n", "300", "--labels", "12", "--out", str(draft), "--endpoints", "sim"]
    code, summary = _taxonomy(capsys, *args)
    assert code == 0, summary
    assert summary["summaries"] >= 290 and len(summary["labels"]) == 12 and summary["calls"] >= summary["summaries"] + 2
    classifier = load_classifier(draft)
    assert classifier.labels[-1] == "other" and len(classifier.labels) == 13
    assert prompty.load(str(draft)).outputs[0].enum_values == list(classifier.labels)
    report = draft.with_suffix(".md").read_text()
    assert "## How the taxonomy evolved" in report and "`other`: **" in report and "## Reviewer notes" in report

    code, again = _taxonomy(capsys, *args)  # the same command again: every answer is resumed
    assert code == 0 and again["http_requests"] == 0 and again["resumed"] >= summary["calls"]
    assert again["labels"] == summary["labels"]

    prompts = tmp_path / "prompts"
    prompts.mkdir()
    shutil.copy(ROOT / "prompts" / "topic.prompty", prompts)
    shutil.copy(draft, prompts)
    lake = tmp_path / "lake"
    defs = build_definitions(
        lake=LakeResource(root=str(lake)),
        settings=PipelineSettings(landing_dir=str(landing.parent), prompts_dir=str(prompts)),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim", flush_rows=50),
    )
    with DagsterInstance.ephemeral() as instance:
        run = defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=WEEK.isoformat(), instance=instance, raise_on_error=False
        )
        assert run.success
        labels = pl.read_delta(str(lake / "classifications")).filter(pl.col("classifier") == "discovered")
        assert labels.height >= 390 and set(labels["label"]) <= set(classifier.labels)
        assert labels["label"].n_unique() >= 6  # the draft's labels are used, not one catch-all

        # the asset group on the same lake: a small discovery from the week just ingested
        config = {"n": 60, "labels": 5, "holdout": 20, "out_dir": str(tmp_path / "assets"), "name": "from_lake"}
        assets = [defs.get_assets_def(key) for key in ("taxonomy_sample", "taxonomy_summaries", "taxonomy_draft")]
        result = materialize(
            assets,
            instance=instance,
            resources={
                "lake": LakeResource(root=str(lake)),
                "endpoint_pool": EndpointPoolResource(endpoints_file="sim"),
                "embedder": defs.resources["embedder"],
            },
            run_config={
                "ops": {name: {"config": config} for name in ("taxonomy_sample", "taxonomy_summaries", "taxonomy_draft")}
            },
        )
        assert result.success
    from_lake = load_classifier(tmp_path / "assets" / "from_lake.prompty")
    assert len(from_lake.labels) == 6 and (tmp_path / "assets" / "from_lake.md").is_file()


def test_clusters_method_writes_a_draft_of_the_requested_size(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("sentence_transformers")
    landing, _ = write_week(tmp_path / "landing", tmp_path / "truth", WEEK, n=120, seed=6)
    draft = tmp_path / "clusters.prompty"
    code, summary = _taxonomy(
        capsys, "--input", str(landing), "--n", "80", "--labels", "6", "--holdout", "20", "--out", str(draft),
        "--method", "clusters", "--endpoints", "sim",
    )  # fmt: skip
    assert code == 0, summary
    classifier = load_classifier(draft)
    assert classifier.labels[-1] == "other" and 2 <= len(classifier.labels) <= 7
    assert summary["calls"] == summary["summaries"] + 6  # one naming call per cluster


def test_budget_stops_discovery_cleanly_with_exit_3(tmp_path, capsys):
    landing, _ = write_week(tmp_path / "landing", tmp_path / "truth", WEEK, n=100, seed=7)
    code, summary = _taxonomy(
        capsys, "--input", str(landing), "--n", "80", "--labels", "5", "--out", str(tmp_path / "b.prompty"),
        "--endpoints", "sim", "--budget-tokens", "20000",
    )  # fmt: skip
    assert code == 3 and summary["budget_reached"]
    assert summary["prompt_tokens"] + summary["completion_tokens"] <= 20000
