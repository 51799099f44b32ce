"""Demo runs as the UI sees them: in the code location, re-executable, with a check status per week.

``semtel demo`` runs in its own process (the code location reads its resources from the environment
the demo sets). The UI's side is then exercised in another process through Dagster's own GraphQL
schema, the one the webserver serves: the job's runs, "Re-execute all" on a demo run, and the
per-week status of every asset check. A run GraphQL submits is queued, as in the UI; the test then
launches it as the daemon's queue would, and it executes synchronously in that process
(``SyncInMemoryRunLauncher``), so the test needs no daemon.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

WEEKS = ["2026-11-09", "2026-11-16"]

INSTANCE_FOR_TEST = """\
run_launcher:
  module: dagster._core.launcher.sync_in_memory_run_launcher
  class: SyncInMemoryRunLauncher
telemetry:
  enabled: false
"""

JOB_RUNS = """
query { pipelineOrError(params: {repositoryLocationName: "semtel", repositoryName: "__repository__", pipelineName: "weekly_pipeline"}) {
  __typename ... on Pipeline { runs { runId status tags { key value } } } } }
"""

REEXECUTE = """
mutation($parent: String!) { launchPipelineReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
  __typename ... on LaunchRunSuccess { run { runId status parentRunId } } ... on PythonError { message stack } } }
"""

CHECK_STATUSES = """
query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { assetChecksOrError {
  ... on AssetChecks { checks { name partitionStatuses { __typename
    ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } } } } }
"""


def _demo(home: Path, week: str) -> dict:
    summary = home / f"summary-{week}.json"
    env = dict(os.environ)
    env.pop("SEMTEL_LAKE", None)
    env.pop("SEMTEL_ENDPOINTS", None)
    done = subprocess.run(
        [sys.executable, "-m", "semtel_dagster.cli", "demo", "--home", str(home), "--week", week, "--n", "40"]
        + ["--summary-json", str(summary)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(summary.read_text())


def _ui_side(home: Path, parent_run_id: str) -> dict:
    """This file as a script, in the environment the UI process of ``make dev`` would have."""
    from semtel_dagster.cli.demo import demo_environment

    env = {**os.environ, **demo_environment(home.resolve(), "polars", environ={})}
    done = subprocess.run(
        [sys.executable, __file__, parent_run_id], capture_output=True, text=True, timeout=300, env=env, cwd=os.getcwd()
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_demo_runs_belong_to_the_code_location_and_reexecute(tmp_path):
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text(INSTANCE_FOR_TEST)  # the demo keeps a user's instance file
    summaries = [_demo(home, week) for week in WEEKS]
    assert all(s["success"] for s in summaries)
    assert summaries[0]["endpoints"] == "sim" and summaries[0]["lake"] == str((home / "lake").resolve())

    ui = _ui_side(home, summaries[1]["dagster_run_id"])

    demo_runs = {s["dagster_run_id"] for s in summaries}
    listed = {run["runId"]: run for run in ui["job_runs"]}
    assert demo_runs <= set(listed), "demo runs missing from the job's Runs tab"
    tags = {t["key"]: t["value"] for t in listed[summaries[0]["dagster_run_id"]]["tags"]}
    assert tags["dagster/code_location"] == "semtel" and tags["dagster/partition"] == WEEKS[0]
    assert ui["origin_location"] == "semtel"

    reexecution = ui["reexecution"]
    assert reexecution["__typename"] == "LaunchRunSuccess", reexecution
    assert reexecution["run"]["parentRunId"] == summaries[1]["dagster_run_id"]
    assert ui["reexecution_queued"] == "QUEUED"
    assert ui["reexecuted_status"] == "SUCCESS"
    assert ui["reexecuted_partition"] == WEEKS[1]

    # Per week: every gate of every table has its own status, not one latest result for the asset.
    statuses = {name: _per_week(ranges) for name, ranges in ui["check_statuses"].items()}
    for check in ("conversations_gate", "clusters_gate", "classifications_gate", "insights_gate"):
        assert statuses[check] == {WEEKS[0]: "SUCCEEDED", WEEKS[1]: "SUCCEEDED"}, (check, ui["check_statuses"][check])
    assert statuses["label_drift_warning"][WEEKS[0]] == "FAILED"  # nothing to compare: a warning, never Passed


def _per_week(ranges: list[dict]) -> dict[str, str]:
    """Each demo week's status from GraphQL's compressed ranges (ISO keys compare as dates)."""
    return {week: r["status"] for r in ranges for week in WEEKS if r["startKey"] <= week <= r["endKey"]}


def _ui_main(parent_run_id: str) -> None:
    """Run as a script by the test: the UI's GraphQL against the demo's instance and the semtel location."""
    from dagster import DagsterInstance
    from dagster_graphql.test.utils import execute_dagster_graphql

    from semtel_dagster.workspace import code_location

    def gql(query: str, variables: dict | None = None) -> dict:
        result = execute_dagster_graphql(workspace, query, variables)
        assert not result.errors, result.errors
        return result.data

    with DagsterInstance.get() as instance, code_location(instance) as workspace:
        out = {"job_runs": gql(JOB_RUNS)["pipelineOrError"]["runs"]}
        out["origin_location"] = instance.get_run_by_id(parent_run_id).remote_job_origin.location_name
        out["reexecution"] = gql(REEXECUTE, {"parent": parent_run_id})["launchPipelineReexecution"]
        child_id = out["reexecution"]["run"]["runId"]
        out["reexecution_queued"] = instance.get_run_by_id(child_id).status.value
        instance.launch_run(child_id, workspace)  # what the daemon does with a queued run
        child = instance.get_run_by_id(child_id)
        out["reexecuted_status"] = child.status.value
        out["reexecuted_partition"] = child.tags.get("dagster/partition")
        out["check_statuses"] = {}
        for asset in ("conversations", "conversation_clusters", "classifications", "weekly_insights"):
            node = gql(CHECK_STATUSES, {"path": [asset]})["assetNodeOrError"]
            for check in node["assetChecksOrError"]["checks"]:
                out["check_statuses"][check["name"]] = (check["partitionStatuses"] or {}).get("ranges", [])
    print(json.dumps(out))


if __name__ == "__main__":
    _ui_main(sys.argv[1])
