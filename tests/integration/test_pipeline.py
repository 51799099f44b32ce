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


def _defs(home, **settings):
    return build_definitions(
        lake=LakeResource(root=str(home / "lake")),
        settings=PipelineSettings(landing_dir=str(home / "landing"), classifiers=CLASSIFIERS, **settings),
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
        _assert_catalog_metadata(first_a, home)
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


def _assert_catalog_metadata(result, home):
    """Column descriptions from the table contracts, per-endpoint totals as a table, one form of uri."""
    from dagster import TableMetadataValue

    (responses,) = result.asset_materializations_for_node("llm_responses")
    meta = responses.metadata
    assert meta["dagster/uri"].value == str((home / "lake" / "llm_responses").resolve())
    columns = {c.name: c.description for c in meta["dagster/column_schema"].schema.columns}
    assert columns["request_id"] and all(columns[name] for name in tables.LLM_RESPONSES)
    per_endpoint = meta["per_endpoint"]
    assert isinstance(per_endpoint, TableMetadataValue)
    assert {r.data["endpoint"] for r in per_endpoint.records} == {"sim-east", "sim-west"}
    assert isinstance(meta["budget"], TableMetadataValue)


def test_failing_gate_stops_downstream_steps(home, monkeypatch):
    """A dedupe bug that loses a conversation fails the clusters gate; classify must not run."""
    import semtel_dagster.engines.polars_engine as polars_engine

    real = polars_engine.clusters_by_hash
    monkeypatch.setattr(polars_engine, "clusters_by_hash", lambda hashed: real(hashed).slice(1))
    with DagsterInstance.ephemeral() as instance:
        result = _run(_defs(home), WEEK_A, instance)
    assert not result.success
    assert _failed_checks(result) == ["clusters_gate"]
    materialized = {e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert "conversation_clusters" in materialized
    assert materialized.isdisjoint({"llm_responses", "classifications", "weekly_insights"})
    assert not (home / "lake" / "llm_responses").exists()


def _check_results(result) -> dict:
    return {
        e.asset_check_evaluation_data.asset_check_key.name: e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_a_week_without_landing_data_fails_with_where_it_looked(home):
    empty_week = WEEK_B + dt.timedelta(weeks=1)
    with DagsterInstance.ephemeral() as instance:
        result = _run(_defs(home), empty_week, instance)
        missing = _run(_defs(home / "nowhere"), WEEK_A, instance)
    assert not result.success and not missing.success
    for run, week in ((result, empty_week), (missing, WEEK_A)):
        failure = next(e for e in run.all_events if e.event_type_value == "STEP_FAILURE")
        message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
        assert f"no landing data for week {week} (searched " in message and "allow_empty_weeks" in message
        assert not [e for e in run.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert not (home / "nowhere" / "lake").exists()  # no landing file at all: nothing written


def test_allowed_empty_week_runs_through_with_checks_that_say_skipped(home):
    empty_week = WEEK_B + dt.timedelta(weeks=1)
    with DagsterInstance.ephemeral() as instance:
        result = _run(_defs(home, allow_empty_weeks=True), empty_week, instance)
    assert result.success
    checks = _check_results(result)
    for name in ("conversations_gate", "truncated_gate", "clusters_gate", "classifications_gate", "insights_gate"):
        assert not checks[name].passed and checks[name].severity.value == "WARN", name
        assert "no rows to validate" in checks[name].metadata["skipped"].value
    drift = checks["label_drift_warning"]
    assert not drift.passed and "no distribution to compare" in drift.metadata["skipped"].value
    assert checks["ingest_rejects_gate"].passed  # no rejects is a true statement about an empty week


def test_definitions_load_with_a_blocking_gate_on_every_table():
    from dagster import AssetKey

    from semtel_dagster.assets.metadata import STAGE_VERSION
    from semtel_dagster.definitions import defs

    repo = defs.get_repository_def()
    asset_keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    # the evaluation, report and taxonomy groups write files, not tables
    on_demand = {"classifier_evaluation", "weekly_report", "taxonomy_sample", "taxonomy_summaries", "taxonomy_draft"}
    assert asset_keys == set(tables.TABLES) | on_demand
    specs = [repo.asset_graph.get_check_spec(key) for key in repo.asset_graph.asset_check_keys]
    assert {spec.asset_key.to_user_string() for spec in specs if spec.blocking} == set(tables.TABLES)
    assert defs.resolve_job_def("weekly_pipeline").partitions_def is not None
    for key in asset_keys - on_demand:
        node = repo.asset_graph.get(AssetKey(key))
        assert "delta" in node.kinds and node.owners and node.tags["stage"] and node.code_version, key
    assert "openai" in repo.asset_graph.get(AssetKey("llm_responses")).kinds
    prompts = repo.asset_graph.get(AssetKey("llm_responses")).code_version
    assert prompts == repo.asset_graph.get(AssetKey("classifications")).code_version != STAGE_VERSION


def test_reads_of_earlier_weeks_are_declared_dependencies():
    """Label reuse / embedding training (llm_responses) and the drift check depend on earlier weeks."""
    from dagster import AssetCheckKey, AssetKey

    from semtel_dagster.definitions import defs
    from semtel_dagster.partitions import HISTORY_WEEKS

    graph = defs.get_repository_def().asset_graph
    responses = AssetKey("llm_responses")
    week = WEEK_B.isoformat()
    parents = graph.get_parents_partitions(responses, week).parent_partitions
    earlier = {p.partition_key for p in parents if p.asset_key == responses}
    assert earlier == {(WEEK_B - dt.timedelta(weeks=k)).isoformat() for k in range(1, HISTORY_WEEKS + 1)}
    insights = AssetKey("weekly_insights")  # the drift check's asset: compared with the previous week
    parents = graph.get_parents_partitions(insights, week).parent_partitions
    assert {p.partition_key for p in parents if p.asset_key == insights} == {WEEK_A.isoformat()}
    assert AssetCheckKey(insights, "label_drift_warning") in graph.asset_check_keys
    with pytest.raises(ValueError):
        PipelineSettings(reuse_labels_weeks=HISTORY_WEEKS + 1)


def test_schedule_requests_the_week_that_just_ended():
    from semtel_dagster.definitions import defs

    schedule = defs.resolve_schedule_def("weekly_pipeline_schedule")
    monday = dt.datetime(2026, 11, 23, 3, 0, tzinfo=dt.UTC)
    with DagsterInstance.ephemeral() as instance:
        result = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=monday))
    assert [r.partition_key for r in result.run_requests] == ["2026-11-16"]
    assert schedule.cron_schedule == "0 3 * * 1"


def test_landing_sensor_requests_the_week_of_each_new_or_late_file(home):
    from dagster import build_sensor_context

    from semtel_dagster.definitions import defs

    sensor = defs.resolve_sensor_def("landing_sensor")
    resources = {"settings": PipelineSettings(landing_dir=str(home / "landing"))}

    def tick(cursor):
        with DagsterInstance.ephemeral() as instance:
            context = build_sensor_context(
                instance=instance, cursor=cursor, resources=resources, repository_def=defs.get_repository_def()
            )
            result = sensor.evaluate_tick(context)
        return sorted(r.partition_key for r in result.run_requests), [r.run_key for r in result.run_requests], result.cursor

    weeks, first_keys, cursor = tick(None)
    assert weeks == [WEEK_A.isoformat(), WEEK_B.isoformat()]
    assert tick(cursor)[0] == []  # nothing new: nothing requested
    write_week(home / "landing" / "late", home / "truth", WEEK_A, n=5, seed=11)  # a late file for week A
    weeks, keys, _ = tick(cursor)
    assert weeks == [WEEK_A.isoformat()] and keys[0] not in first_keys  # the week runs again, once
    assert sensor.default_status.value == "STOPPED"
    assert defs.resolve_schedule_def("weekly_pipeline_schedule").default_status.value == "STOPPED"


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
