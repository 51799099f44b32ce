"""A four-week backfill launched in reverse order gives the tables of running the weeks in order.

Week N answers texts seen in weeks N-3 .. N-1 from their labels (label reuse), so its tables depend
on which earlier weeks ran first. ``llm_responses`` declares that read (its own earlier weeks, and the
earlier clusters, texts and vectors), and an asset backfill orders the weeks by it. The reference
runs the weeks one by one in order; the backfill is launched through the UI's GraphQL mutation with
the weeks listed newest first, and the daemon's backfill loop is driven in a child process. Each run
the daemon submits is queued, and the test starts the queued runs newest week first; they execute
synchronously (``SyncInMemoryRunLauncher``), so no daemon process is needed. Without the declared
dependencies the daemon submits every week's classify step at once and week 4 is answered first.
"""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.integration

WEEKS = [dt.date(2026, 11, 2) + dt.timedelta(weeks=k) for k in range(4)]
REPEATED = 8  # texts of each week asked again the next week, by other users
INSTANCE = """\
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
run_launcher:
  module: dagster._core.launcher.sync_in_memory_run_launcher
  class: SyncInMemoryRunLauncher
telemetry:
  enabled: false
"""
LAUNCH = """
mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack } } }
"""
# Columns that depend on timing (latency, which endpoint answered, retries), not on the order of weeks.
TIMING = ["latency_ms", "created_at", "endpoint", "attempts", "rate_limited", "cached_tokens"]


def _landing(landing: Path) -> None:
    from semtel_dagster.sim.sample import write_week

    for k, week in enumerate(WEEKS):
        write_week(landing, landing.parent / "truth", week, n=40, seed=11)
        if k:
            previous = [
                json.loads(line)
                for line in (landing / f"sample-{WEEKS[k - 1]}.jsonl").read_bytes().splitlines()
                if line.startswith(b"{") and b"-bad-" not in line
            ][:REPEATED]
            started = f"{week + dt.timedelta(days=2)}T09:00:00Z"
            with open(landing / f"repeats-{week}.jsonl", "w") as out:
                for n, record in enumerate(previous):
                    out.write(json.dumps({**record, "conversation_id": f"again-{week}-{n}", "started_at": started}) + "\n")


def _tables(lake: Path) -> dict[str, pl.DataFrame]:
    from semtel_dagster.core.lake import delta, tables

    out = {}
    for table in ("llm_responses", "classifications", "classification_rejects", "weekly_insights"):
        frame = delta.read_weeks(delta.table_uri(str(lake), table), tables.TABLES[table], WEEKS)
        out[table] = frame.drop([c for c in TIMING if c in frame.columns]).sort(frame.columns[:3])
    return out


def test_reverse_order_backfill_equals_weeks_run_in_order(tmp_path):
    from dagster import DagsterInstance

    from semtel_dagster.core.classify.reuse import ENDPOINT
    from semtel_dagster.core.lake import delta, tables
    from semtel_dagster.definitions import build_definitions
    from semtel_dagster.resources import EndpointPoolResource, LakeResource
    from tests.integration.backfill_location import settings

    landing = tmp_path / "landing"
    _landing(landing)

    in_order = tmp_path / "in-order"
    defs = build_definitions(
        lake=LakeResource(root=str(in_order)),
        settings=settings().model_copy(update={"landing_dir": str(landing)}),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim"),
    )
    job = defs.resolve_job_def("weekly_pipeline")
    with DagsterInstance.ephemeral() as instance:
        for week in WEEKS:
            assert job.execute_in_process(partition_key=str(week), instance=instance).success

    backfilled = tmp_path / "backfilled"
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SEMTEL_LAKE": str(backfilled),
        "SEMTEL_LANDING": str(landing),
        "SEMTEL_ENDPOINTS": "sim",
        "PYTHONPATH": os.getcwd(),  # the script imports the test's code location
    }
    done = subprocess.run(
        [sys.executable, __file__, *[str(w) for w in reversed(WEEKS)]],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    backfill = json.loads(done.stdout.strip().splitlines()[-1])
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert backfill["classify_order"] == [str(w) for w in WEEKS], backfill  # each week answered after the one before

    reused = delta.read_weeks(delta.table_uri(str(in_order), "llm_responses"), tables.LLM_RESPONSES, WEEKS[1:])
    assert reused.filter(pl.col("endpoint") == ENDPOINT).height > 0  # the order of weeks matters to these tables
    expected, got = _tables(in_order), _tables(backfilled)
    assert all(expected[table].height for table in ("llm_responses", "classifications", "weekly_insights"))
    for table, frame in expected.items():
        assert got[table].equals(frame), table


def _backfill(partitions: list[str]) -> None:
    """Run as a script by the test: launch the backfill as the UI does, then drive the daemon's loop."""
    import logging

    from dagster import AssetKey, DagsterInstance
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
    from dagster._core.storage.tags import PARTITION_NAME_TAG
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster_graphql.test.utils import execute_dagster_graphql

    import tests.integration.backfill_location as location

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, python_file=location.__file__, working_directory=os.getcwd()),
        location_name="semtel",
    )
    keys = location.defs.resolve_job_def("weekly_pipeline").asset_layer.selected_asset_keys
    with DagsterInstance.get() as instance, WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process:
        params = {"partitionNames": partitions, "assetSelection": [{"path": key.path} for key in sorted(keys)]}
        result = execute_dagster_graphql(process.create_request_context(), LAUNCH, {"params": params})
        assert not result.errors, result.errors
        launched = result.data["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        for _ in range(60):
            list(execute_backfill_iteration(process, logging.getLogger("backfill")))
            queued = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED]))
            # What the daemon submitted, started newest week first: as parallel runs could finish.
            for run in sorted(queued, key=lambda run: run.tags[PARTITION_NAME_TAG], reverse=True):
                instance.launch_run(run.run_id, process.create_request_context())
            status = instance.get_backfill(backfill_id).status
            if status != BulkActionStatus.REQUESTED and not queued:
                break
        runs = instance.get_runs()
        errors = [
            str(event.dagster_event.event_specific_data)[:1500]
            for run in runs
            if run.status.value != "SUCCESS"
            for event in instance.all_logs(run.run_id)
            if event.dagster_event and event.dagster_event.is_failure
        ]
        answered = instance.fetch_materializations(AssetKey("llm_responses"), limit=100).records
        order = [record.partition_key for record in sorted(answered, key=lambda record: record.timestamp)]
        print(json.dumps({"status": status.value, "classify_order": order, "runs": len(runs), "errors": errors}))


if __name__ == "__main__":
    _backfill(sys.argv[1:])
