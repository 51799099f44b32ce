"""Fault injection, end to end: the ``faults`` tests (``tests/faults/``) run once, and what each
experiment measured goes into a table.

    python -m benchmarks.faults.run        # about 5 min on 2 shared cores; writes RESULTS.md and results.json

Each test appends its figures (time to finish, exit code, requests lost, duplicated and repeated, peak
memory, leaks found) to the file named by ``SEMTEL_FAULTS_FIGURES``; the tests' own assertions are the
expectations, so a figure that misses its expectation also shows as a failed test here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def run_suite() -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory() as folder:
        figures = Path(folder) / "figures.jsonl"
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "faults", "tests/faults", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env={**os.environ, "SEMTEL_FAULTS_FIGURES": str(figures), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        lines = [json.loads(line) for line in figures.read_text().splitlines()] if figures.exists() else []
        outcome = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
        suite = {"exit_code": proc.returncode, "outcome": outcome, "seconds": round(time.monotonic() - started, 1)}
    return lines, suite


def _cell(measured: dict) -> str:
    return "; ".join(f"{key} {json.dumps(value) if isinstance(value, list | dict) else value}" for key, value in measured.items())


def markdown(figures: list[dict], suite: dict, machine: str, date: str) -> str:
    rows = "".join(f"| {f['experiment']} | {f['expectation']} | {_cell(f['measured'])} |\n" for f in figures)
    return (
        "# Fault injection: results\n\n"
        f"`python -m benchmarks.faults.run`, {date}, {machine}. The `faults` tests of `tests/faults/` run once "
        "(`semtel classify` as a subprocess and Dagster weeks against scripted aiohttp servers and the simulator on "
        f"loopback); each row is what one test measured. Suite: {suite['outcome']} ({suite['seconds']} s).\n\n"
        "| experiment | expectation | measured |\n|---|---|---|\n"
        f"{rows}\n"
        "Times include starting `semtel classify` (several processes at once in experiment 1) on two cores shared "
        "with other work. A broken sole endpoint ends the run when every endpoint has failed for "
        "`stop_after_failing_s` (default 30 s): `failing_before_stop_s` is that span as the stop message says. "
        "*repeated* counts answers the simulator served beyond one per request (a killed run's last unsaved flush "
        "and the requests in flight). *duplicated* counts rows of `llm_responses` beyond one per `request_id` "
        "before the run's compaction. Conversation text kept by design in the row samples of `conversations` and "
        "`conversations_truncated` metadata is the one exception to experiment 3's search of the event log.\n"
    )


def main() -> int:
    figures, suite = run_suite()
    machine = f"2 cores / 24 GB shared ({platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs visible)"
    date = dt.date.today().isoformat()
    (HERE / "results.json").write_text(
        json.dumps({"date": date, "machine": machine, "suite": suite, "figures": figures}, indent=2) + "\n"
    )
    (HERE / "RESULTS.md").write_text(markdown(figures, suite, machine, date))
    print(f"{suite['outcome']}; {len(figures)} figures -> {HERE / 'RESULTS.md'}")
    return suite["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
