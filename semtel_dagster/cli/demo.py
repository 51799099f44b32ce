"""``semtel demo``: the whole pipeline for one sample week on embedded defaults."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from semtel_dagster.core.lake.weeks import last_complete_week, parse_week

DEFAULT_HOME = Path(".semtel")


def home_paths(home: Path) -> dict[str, Path]:
    return {
        "landing": home / "landing",
        "truth": home / "truth",
        "lake": home / "lake",
        "dagster": home / "dagster",
    }


# The instance `semtel demo` and `make dev` share. Run monitoring (the daemon `dagster dev` starts)
# fails a run whose process died instead of leaving it STARTED; a run that never starts fails too.
# Usage statistics stay on this machine.
INSTANCE_YAML = """\
telemetry:
  enabled: false
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
"""


def ensure_instance(dagster_home: Path) -> Path:
    """A Dagster home with run monitoring on; an existing non-empty dagster.yaml is the user's and kept."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists() or not config.read_text().strip():
        config.write_text(INSTANCE_YAML)
    return config


def demo_environment(home: Path, engine: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the code location reads from the environment for a demo run: ``SEMTEL_LAKE`` and
    ``SEMTEL_ENDPOINTS`` are honoured when set; unset, the lake is under ``home`` and the simulator is
    asked for by name (``sim``)."""
    from semtel_dagster.resources.endpoint_pool import SIMULATOR

    environ = os.environ if environ is None else environ
    paths = home_paths(home)
    return {
        "DAGSTER_HOME": str(paths["dagster"]),
        "SEMTEL_LANDING": str(paths["landing"]),
        "SEMTEL_LAKE": environ.get("SEMTEL_LAKE") or str(paths["lake"]),
        "SEMTEL_ENDPOINTS": environ.get("SEMTEL_ENDPOINTS") or SIMULATOR,
        "SEMTEL_ENGINE": engine,
    }


def run_demo(home: Path, week: dt.date, n: int, seed: int, engine: str = "polars", engagement: bool = False) -> dict:
    """Generate a week, run the weekly job for it through the instance and the code location, return the summary.

    The code location reads its resources from the environment set here, so this must run before
    ``semtel_dagster.definitions`` is imported in the process (the CLI imports it nowhere else).
    """
    warnings.filterwarnings("ignore")  # Dagster beta/preview notices are not for demo users
    from semtel_dagster.core.insights.summary import pipeline_summary
    from semtel_dagster.resources.lake import open_dagster_instance
    from semtel_dagster.sim.sample import write_week
    from semtel_dagster.workspace import code_location, launch_week

    started = time.monotonic()
    paths = home_paths(home.resolve())
    write_week(paths["landing"], paths["truth"], week, n=n, seed=seed, engagement=engagement)
    ensure_instance(paths["dagster"])  # an instance of its own, so `make dev` shows demo runs
    environment = demo_environment(home.resolve(), engine)
    os.environ.update(environment)
    with open_dagster_instance(paths["dagster"]) as instance, code_location(instance) as workspace:
        result = launch_week(instance, workspace, week.isoformat())
    summary = pipeline_summary(environment["SEMTEL_LAKE"], week)
    failed = {
        e.asset_check_evaluation_data.asset_check_key.to_user_string(): (
            e.asset_check_evaluation_data.severity.value,
            e.asset_check_evaluation_data.description,
        )
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    }
    summary.update(
        {
            "week_start": week.isoformat(),
            "dagster_run_id": result.run_id,
            "success": result.success,
            "endpoints": environment["SEMTEL_ENDPOINTS"],
            "lake": environment["SEMTEL_LAKE"],
            "failed_checks": sorted(name for name, (severity, _) in failed.items() if severity == "ERROR"),
            "check_warnings": {name: why for name, (severity, why) in sorted(failed.items()) if severity == "WARN"},
            "wall_seconds": round(time.monotonic() - started, 1),
        }
    )
    return summary


def _print_summary(summary: dict) -> None:
    print(
        f"\nsemtel demo: week {summary['week_start']} ({'ok' if summary['success'] else 'FAILED'}, "
        f"{summary['wall_seconds']} s, Dagster run {summary['dagster_run_id']})"
    )
    print(f"endpoints: {summary['endpoints']}  lake: {summary['lake']}")
    print("\nrows per table:")
    for table, rows in summary["rows"].items():
        print(f"  {table:<24} {rows:>8,}")
    calls = summary["llm"]
    print(
        f"\nLLM: {calls['requests']:,} requests ({calls['http_attempts']:,} HTTP attempts, {calls['retries']} retries, "
        f"{calls['rate_limited']} rate-limited), {calls['prompt_tokens']:,} prompt + "
        f"{calls['completion_tokens']:,} completion tokens, {calls['failed']} failed"
    )
    for classifier, labels in summary["labels"].items():
        print(f"\n{classifier}:")
        for label, count, share in labels:
            if count is None:
                print(f"  {label:<24} {'-':>6}  withheld: under the minimum group size")
                continue
            print(f"  {label:<24} {count:>6,}  {share:6.1%}  {'#' * round(share * 40)}")
    if summary["failed_checks"]:
        print(f"\nfailed checks: {', '.join(summary['failed_checks'])}")
    for check, why in summary["check_warnings"].items():
        print(f"\nwarning {check}: {why}")


def _run(args: argparse.Namespace) -> int:
    week = parse_week(args.week) if args.week else last_complete_week()
    summary = run_demo(Path(args.home), week, args.n, args.seed, args.engine, args.engagement)
    _print_summary(summary)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, default=str))
    return 0 if summary["success"] else 1


def register(commands) -> None:
    demo = commands.add_parser("demo", help="generate a sample week and run the whole pipeline on embedded defaults")
    demo.add_argument("--week", help="week_start (a Monday, YYYY-MM-DD); default: the last complete week")
    demo.add_argument("--n", type=int, default=400, help="sample conversations (default 400)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--home", default=str(DEFAULT_HOME), help="folder for landing files, lake and Dagster runs")
    demo.add_argument("--summary-json", help="also write the summary to this file")
    demo.add_argument(
        "--engagement", action="store_true", help="sample records carry synthetic engagement fields (the report's section)"
    )
    demo.add_argument(
        "--engine",
        choices=["polars", "spark"],
        default="polars",
        help="polars (default) or spark (local[*], or SEMTEL_SPARK_MASTER / SEMTEL_SPARK_REMOTE)",
    )
    demo.set_defaults(func=_run)
