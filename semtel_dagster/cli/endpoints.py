"""``semtel endpoints check FILE``: ask each endpoint of an endpoints file which structured-output
modes it supports, how fast it answers, whether it sends rate-limit headers and whether it streams
(whole answers, with usage), before a run."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import ExitStack
from pathlib import Path


def _check(args: argparse.Namespace) -> int:
    from semtel_dagster.core.llm.endpoints import EndpointsFileError, load_endpoints
    from semtel_dagster.core.llm.structured import STRUCTURED_OUTPUT_MODES
    from semtel_dagster.core.llm.transport_probe import probe_endpoints, report_table
    from semtel_dagster.resources.endpoint_pool import start_simulated

    modes = args.modes.split(",") if args.modes else list(STRUCTURED_OUTPUT_MODES)
    unknown = sorted(set(modes) - set(STRUCTURED_OUTPUT_MODES))
    if unknown:
        print(f"semtel endpoints check: unknown modes {unknown}; expected {', '.join(STRUCTURED_OUTPUT_MODES)}", file=sys.stderr)
        return 2
    try:
        with ExitStack() as stack:
            endpoints = start_simulated(load_endpoints(args.file).endpoints, stack)
            reports = asyncio.run(probe_endpoints(endpoints, modes, args.timeout))
    except EndpointsFileError as exc:
        print(f"semtel endpoints check: {exc}", file=sys.stderr)
        return 2
    print(report_table(reports))
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in reports], indent=2))
    # 1: some endpoint does not support the mode its entry configures (a run would get no labels there),
    # or its entry sets stream: true and it does not stream whole answers
    modes_ok = all(r.configured in r.supported for r in reports if r.configured in modes)
    return 0 if modes_ok and all(r.stream_ok for r in reports) else 1


def register(commands) -> None:
    endpoints = commands.add_parser("endpoints", help="check the endpoints of an endpoints file").add_subparsers(
        dest="endpoints_command", required=True
    )
    check = endpoints.add_parser("check", help="try each structured-output mode and streaming on each endpoint and report")
    check.add_argument("file", help="endpoints YAML")
    check.add_argument("--json", help="also write the report to this JSON file")
    check.add_argument("--modes", help="comma-separated modes to try (default: all)")
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per probe request")
    check.set_defaults(func=_check)
