"""``semtel demo``: the whole pipeline for one sample week on embedded defaults."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
import warnings
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


def run_demo(home: Path, week: dt.date, n: int, seed: int, engine: str = "polars") -> dict:
    """Generate a week, materialize the whole pipeline for it through Dagster, return the summary."""
    warnings.filterwarnings("ignore")  # Dagster beta/preview notices are not for demo users
    from dagster import DagsterInstance

    from semtel_dagster.core.insights.summary import pipeline_summary
    from semtel_dagster.definitions import build_definitions
    from semtel_dagster.resources import EndpointPoolResource, EngineResource, LakeResource, PipelineSettings
    from semtel_dagster.sim.sample import write_week

    started = time.monotonic()
    paths = home_paths(home.resolve())
    write_week(paths["landing"], paths["truth"], week, n=n, seed=seed)
    paths["dagster"].mkdir(parents=True, exist_ok=True)
    (paths["dagster"] / "dagster.yaml").touch()  # an instance of its own, so `make dev` shows demo runs
    os.environ["DAGSTER_HOME"] = str(paths["dagster"])
    lake = LakeResource(root=str(paths["lake"]))
    defs = build_definitions(
        lake=lake,
        settings=PipelineSettings(landing_dir=str(paths["landing"])),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim"),
        engine=EngineResource(kind=engine),
    )
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=week.isoformat(), instance=instance, raise_on_error=False
        )
    summary = pipeline_summary(lake.root, week)
    summary.update(
        {
            "week_start": week.isoformat(),
            "dagster_run_id": result.run_id,
            "success": result.success,
            "failed_checks": [
                str(e.asset_check_evaluation_data.asset_check_key.to_user_string())
                for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
            ],
            "wall_seconds": round(time.monotonic() - started, 1),
        }
    )
    return summary


def _print_summary(summary: dict) -> None:
    print(
        f"\nsemtel demo: week {summary['week_start']} ({'ok' if summary['success'] else 'FAILED'}, "
        f"{summary['wall_seconds']} s, Dagster run {summary['dagster_run_id']})"
    )
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
            print(f"  {label:<24} {count:>6,}  {share:6.1%}  {'#' * round(share * 40)}")
    if summary["failed_checks"]:
        print(f"\nfailed checks: {', '.join(summary['failed_checks'])}")


def _run(args: argparse.Namespace) -> int:
    week = parse_week(args.week) if args.week else last_complete_week()
    summary = run_demo(Path(args.home), week, args.n, args.seed, args.engine)
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
        "--engine",
        choices=["polars", "spark"],
        default="polars",
        help="polars (default) or spark (local[*], or SEMTEL_SPARK_MASTER / SEMTEL_SPARK_REMOTE)",
    )
    demo.set_defaults(func=_run)
