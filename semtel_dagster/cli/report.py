"""``semtel report``: the weekly report of one week, as one self-contained HTML file."""

from __future__ import annotations

import argparse
import os

from semtel_dagster.core.insights import TREND_WEEKS
from semtel_dagster.core.lake.weeks import last_complete_week, parse_week
from semtel_dagster.extras import MissingExtra


def _run(args: argparse.Namespace) -> int:
    from semtel_dagster.core.insights.report import prices_of, weekly_report
    from semtel_dagster.resources.lake import DEFAULT_LAKE
    from semtel_dagster.resources.settings import PipelineSettings

    week = parse_week(args.week) if args.week else last_complete_week()
    lake = args.lake or os.environ.get("SEMTEL_LAKE") or DEFAULT_LAKE
    try:
        written = weekly_report(
            lake,
            week,
            weeks=args.weeks,
            min_group_size=args.min_group_size or PipelineSettings.model_fields["min_group_size"].default,
            prices=prices_of(args.endpoints or os.environ.get("SEMTEL_ENDPOINTS")),
            out=args.out,
        )
    except (MissingExtra, FileNotFoundError, ValueError) as exc:  # no extra, no such lake or week, a bad window
        print(f"semtel report: {exc}")
        return 2
    print(written.markdown)
    print(f"report: {written.path}")
    return 0


def register(commands) -> None:
    cmd = commands.add_parser("report", help="write the weekly report (HTML) of one week from the lake")
    cmd.add_argument("--week", help="week_start (a Monday, YYYY-MM-DD); default: the last complete week")
    cmd.add_argument("--weeks", type=int, default=TREND_WEEKS, help=f"weeks in the trend charts (default {TREND_WEEKS})")
    cmd.add_argument("--lake", help="lake root (default SEMTEL_LAKE, else .semtel/lake)")
    cmd.add_argument("--out", help="HTML file to write (default LAKE/reports/week_start=W/report.html)")
    cmd.add_argument(
        "--min-group-size", type=int, help="smallest group any shown number may hold (default: the pipeline setting, 10)"
    )
    cmd.add_argument("--endpoints", help="endpoints file whose prices give the cost (default SEMTEL_ENDPOINTS)")
    cmd.set_defaults(func=_run)
