"""``semtel sample``: seeded sample conversations (and their ground truth) for chosen weeks."""

from __future__ import annotations

import argparse
from pathlib import Path

from semtel_dagster.cli.demo import DEFAULT_HOME, home_paths
from semtel_dagster.core.lake.weeks import parse_week


def _write(args: argparse.Namespace) -> int:
    from semtel_dagster.sim.sample import write_week

    home = home_paths(Path(args.home))
    landing = Path(args.landing) if args.landing else home["landing"]
    for week in args.weeks:
        landing_file, truth_file = write_week(landing, home["truth"], parse_week(week), args.n, args.seed, args.engagement)
        print(f"{week}: {landing_file} (ground truth: {truth_file})")
    return 0


def register(commands) -> None:
    sample = commands.add_parser("sample", help="write seeded sample conversations (and ground truth) for weeks")
    sample.add_argument("weeks", nargs="+", help="week_start dates (Mondays)")
    sample.add_argument("--n", type=int, default=400)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--home", default=str(DEFAULT_HOME))
    sample.add_argument("--landing", help="landing folder (default HOME/landing)")
    sample.add_argument("--engagement", action="store_true", help="records carry synthetic engagement fields")
    sample.set_defaults(func=_write)
