"""The ``semtel`` command. Each subcommand lives in its own module with a ``register(commands)``."""

from __future__ import annotations

import argparse
import sys

from semtel_dagster.cli import classify, demo, endpoints, eval, report, sample, sim, taxonomy

SUBCOMMANDS = [demo, sim, sample, eval, classify, endpoints, report, taxonomy]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semtel", description="Semantic telemetry over weekly conversation logs.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
