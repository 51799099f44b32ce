"""How fast the UI runs a week: code-location import, and a week launched as the UI launches it vs ``semtel demo``.

    python -m benchmarks.ui.run [--n 400] [--week 2026-11-16] [--out benchmarks/ui]

1. Import: ``import semtel_dagster.definitions`` in fresh processes (what the webserver's code server
   and every run worker pay), median of five, and the slowest top-level imports.
2. ``semtel demo`` for one sample week (its own process, wall time as the command reports it).
3. The same week, same sample, fresh lake, launched as a click in the UI launches it: a code server
   (gRPC, as ``dagster dev`` starts) serves the location, the instance's run launcher starts a run
   worker process that imports the location and runs the job with the job's own executor. Timed from
   submit to the run's end, and the run's own start-to-end from the instance.
Both runs use the embedded simulator (``SEMTEL_ENDPOINTS=sim``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT = [sys.executable, "-c", "import semtel_dagster.definitions"]
INSTANCE = (
    "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
)


def import_seconds(repeats: int = 5) -> dict:
    times = []
    for _ in range(repeats):
        started = time.monotonic()
        subprocess.run(IMPORT, check=True, capture_output=True)
        times.append(time.monotonic() - started)
    profile = subprocess.run([*IMPORT[:1], "-X", "importtime", *IMPORT[1:]], capture_output=True, text=True, check=True)
    top = []
    for line in profile.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            depth = (len(name) - len(name.lstrip())) // 2
            if depth <= 3 and not name.strip().startswith("semtel_dagster"):
                top.append((int(parts[1]) / 1e6, name.strip()))
    return {
        "median_s": round(statistics.median(times), 2),
        "runs_s": [round(t, 2) for t in times],
        "slowest_imports_s": [(name, round(s, 2)) for s, name in sorted(top, reverse=True)[:8]],
    }


def demo_seconds(home: Path, week: str, n: int) -> dict:
    summary = home / "summary.json"
    env = {k: v for k, v in os.environ.items() if k not in ("SEMTEL_LAKE", "SEMTEL_ENDPOINTS")}
    started = time.monotonic()
    cmd = [sys.executable, "-m", "semtel_dagster.cli", "demo", "--home", str(home), "--week", week, "--n", str(n)]
    subprocess.run([*cmd, "--summary-json", str(summary)], check=True, capture_output=True, env=env)
    result = json.loads(summary.read_text())
    return {"wall_s": round(time.monotonic() - started, 1), "reported_s": result["wall_seconds"], "success": result["success"]}


def ui_launch_seconds(home: Path, week: str, n: int) -> dict:
    """In a child process: the env must be set before the code location is imported."""
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.ui.run", "--ui-child", str(home), week, str(n)], capture_output=True, text=True
    )
    if child.returncode:
        raise RuntimeError(child.stdout[-2000:] + child.stderr[-3000:])
    return json.loads((home / "ui_launch.json").read_text())


def _ui_child(home: Path, week: str, n: int) -> None:
    from semtel_dagster.cli.demo import demo_environment, home_paths
    from semtel_dagster.sim.sample import write_week

    paths = home_paths(home)
    write_week(paths["landing"], paths["truth"], dt.date.fromisoformat(week), n=n, seed=7)
    paths["dagster"].mkdir(parents=True, exist_ok=True)
    (paths["dagster"] / "dagster.yaml").write_text(INSTANCE)  # launch on submit (the UI's queue needs the daemon)
    os.environ.update(demo_environment(home, "polars", environ={}))

    from dagster import DagsterInstance
    from dagster._core.storage.tags import PARTITION_NAME_TAG
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._utils.hosted_user_process import recon_job_from_origin

    from semtel_dagster.workspace import CODE_LOCATION, DEFINITIONS_MODULE, remote_job

    target = ModuleTarget(DEFINITIONS_MODULE, None, os.getcwd(), CODE_LOCATION)
    with DagsterInstance.get() as instance, WorkspaceProcessContext(instance, target) as process:
        workspace = process.create_request_context()
        job = remote_job(workspace)
        run = instance.create_run_for_job(
            job_def=recon_job_from_origin(job.get_python_origin()).get_definition(),
            tags={**job.tags, PARTITION_NAME_TAG: week},
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
        )
        started = time.monotonic()
        instance.submit_run(run.run_id, workspace)
        while not instance.get_run_by_id(run.run_id).is_finished:
            time.sleep(0.5)
        wall = time.monotonic() - started
        record = instance.get_run_record_by_id(run.run_id)
    measured = {
        "submit_to_end_s": round(wall, 1),
        "run_start_to_end_s": round(record.end_time - record.start_time, 1),
        "status": record.dagster_run.status.value,
    }
    (home / "ui_launch.json").write_text(json.dumps(measured))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--week", default="2026-11-16")
    parser.add_argument("--out", default="benchmarks/ui")
    parser.add_argument("--ui-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ui_child:
        _ui_child(Path(args.ui_child[0]), args.ui_child[1], int(args.ui_child[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "date": dt.date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores, {platform.platform()}, shared",
            "week": args.week,
            "conversations": args.n,
            "import": import_seconds(),
            "demo": demo_seconds(Path(tmp) / "demo", args.week, args.n),
            "ui_launch": ui_launch_seconds(Path(tmp) / "ui", args.week, args.n),
        }
    result["ui_over_demo"] = round(result["ui_launch"]["submit_to_end_s"] / result["demo"]["wall_s"], 2)
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
