"""Materialize real weeks through Dagster: embedded simulator over HTTP, real Delta tables, GX gates."""

import datetime as dt
import json
import subprocess
import sys

import polars as pl
import pytest
from dagster import DagsterInstance, build_schedule_context

from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK_A = dt.date(2026, 11, 9)
WEEK_B = dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]


@pytest.fixture()
def home(tmp_path):
    for week in (WEEK_A, WEEK_B):
        write_week(tmp_path / "landing", tmp_path / "truth", week, n=60, seed=3)
    return tmp_path


def _defs(home):
    return build_definitions(
        lake=LakeResource(root=str(home / "lake")),
        settings=PipelineSettings(landing_dir=str(home / "landing"), classifiers=CLASSIFIERS),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim", flush_rows=25),
    )


def _run(defs, week, instance):
    return defs.resolve_job_def("weekly_pipeline").execute_in_process(
        partition_key=week.isoformat(), instance=instance, raise_on_error=False
    )


def _snapshot(home, week):
    """Every table's rows for the week, in a canonical order."""
    snapshot = {}
    for name, schema in tables.TABLES.items():
        frame = delta.read_weeks(delta.table_uri(str(home / "lake"), name), schema, [week])
        snapshot[name] = frame.sort(frame.columns[:4], nulls_last=True)
    return snapshot


def _failed_checks(result):
    return sorted(
        e.asset_check_evaluation_data.asset_check_key.name
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    )


def test_two_weeks_then_rerun_converges_to_the_same_tables(home):
    defs = _defs(home)
    with DagsterInstance.ephemeral() as instance:
        first_a = _run(defs, WEEK_A, instance)
        first_b = _run(defs, WEEK_B, instance)
        assert first_a.success and first_b.success, (_failed_checks(first_a), _failed_checks(first_b))
        before = {week: _snapshot(home, week) for week in (WEEK_A, WEEK_B)}
        rerun = _run(defs, WEEK_A, instance)
        assert rerun.success
    after = {week: _snapshot(home, week) for week in (WEEK_A, WEEK_B)}

    for week in (WEEK_A, WEEK_B):
        snap = before[week]
        assert snap["conversations"].height == 60
        assert snap["ingest_rejects"].height >= 6  # the generator's malformed records
        assert set(snap["conversations"]["week_start"].to_list()) == {week}
        pairs = snap["classifications"].height + snap["classification_rejects"].height
        assert pairs == 60 * len(CLASSIFIERS)  # row conservation through fan-out
        reps = snap["conversation_clusters"].filter(pl.col("is_representative")).height
        assert snap["llm_responses"].height == reps * len(CLASSIFIERS)  # only representatives are sent
        assert set(snap["weekly_insights"]["classifier"].to_list()) == set(CLASSIFIERS)
        for name in tables.TABLES:
            assert after[week][name].equals(snap[name]), f"{name} changed on rerun for {week}"


def test_failing_gate_stops_downstream_steps(home, monkeypatch):
    """A dedupe bug that loses a conversation fails the clusters gate; classify must not run."""
    import semtel_dagster.engines.polars_engine as polars_engine

    real = polars_engine.cluster_exact
    monkeypatch.setattr(polars_engine, "cluster_exact", lambda frame: real(frame).slice(1))
    with DagsterInstance.ephemeral() as instance:
        result = _run(_defs(home), WEEK_A, instance)
    assert not result.success
    assert _failed_checks(result) == ["clusters_gate"]
    materialized = {e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert "conversation_clusters" in materialized
    assert materialized.isdisjoint({"llm_responses", "classifications", "weekly_insights"})
    assert not (home / "lake" / "llm_responses").exists()


def test_definitions_load_with_a_blocking_gate_on_every_table():
    from semtel_dagster.definitions import defs

    repo = defs.get_repository_def()
    asset_keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    assert asset_keys == set(tables.TABLES) | {"classifier_evaluation"}  # + the on-demand evaluation group
    specs = [repo.asset_graph.get_check_spec(key) for key in repo.asset_graph.asset_check_keys]
    assert {spec.asset_key.to_user_string() for spec in specs if spec.blocking} == set(tables.TABLES)
    assert defs.resolve_job_def("weekly_pipeline").partitions_def is not None


def test_schedule_requests_the_week_that_just_ended():
    from semtel_dagster.definitions import defs

    schedule = defs.resolve_schedule_def("weekly_pipeline_schedule")
    monday = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
    with DagsterInstance.ephemeral() as instance:
        result = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=monday))
    assert [r.partition_key for r in result.run_requests] == ["2026-11-16"]
    assert schedule.cron_schedule == "0 3 * * 1"


def test_demo_command_prints_a_summary(tmp_path):
    summary_file = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "semtel_dagster.cli",
            "demo",
            "--home",
            str(tmp_path / "home"),
            "--week",
            "2026-11-16",
            "--n",
            "60",
            "--summary-json",
            str(summary_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rows per table" in done.stdout
    summary = json.loads(summary_file.read_text())
    assert summary["success"] and summary["rows"]["conversations"] == 60
    assert summary["llm"]["requests"] > 0 and summary["llm"]["prompt_tokens"] > 0
    assert set(summary["labels"]) == {"intent", "knowledge_work", "satisfaction", "task_complexity", "topic", "user_expertise"}
    assert all(summary["labels"][c] for c in summary["labels"])
