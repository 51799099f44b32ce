"""What every fault experiment needs: a landing file, an endpoints file, ``semtel classify`` run as a
subprocess (time, exit code, output, peak memory), the raw rows of ``llm_responses``, and every string
a folder of Delta tables holds."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml
from deltalake import DeltaTable

from semtel_dagster.sim.sample import write_week

ROOT = Path(__file__).resolve().parents[2]
WEEK = dt.date(2026, 11, 16)
MODEL = "gpt-4o-mini"  # what the simulator answers as


def landing(folder: Path, n: int = 30, seed: int = 11) -> Path:
    path, _ = write_week(folder / "landing", folder / "truth", WEEK, n=n, seed=seed)
    return path


def endpoints_file(folder: Path, *endpoints: dict) -> Path:
    path = folder / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [{"model": MODEL, **e} for e in endpoints]}))
    return path


def classify_command(input_path: Path, output: Path, endpoints: Path, *extra: str, summary: Path | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "semtel_dagster.cli",
        "classify",
        "--input",
        str(input_path),
        "--output",
        str(output),
        "--endpoints",
        str(endpoints),
        "--classifiers",
        "topic",
        "--summary-json",
        str(summary or output.parent / f"{output.name}-summary.json"),
        *extra,
    ]


@dataclass
class Finished:
    code: int
    seconds: float
    stdout: str
    stderr: str
    peak_rss_mb: float
    summary: dict | None


def start(command: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def finish(proc: subprocess.Popen, started: float, timeout_s: float = 90) -> Finished:
    """Wait for ``proc`` (killed past ``timeout_s``), reaping it here so its peak RSS is known."""
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read())),
        threading.Thread(target=lambda: err.append(proc.stderr.read())),
    ]
    for reader in readers:
        reader.start()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout_s:
            proc.kill()
        time.sleep(0.05)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(10)
    summary_path = Path(proc.args[proc.args.index("--summary-json") + 1])
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return Finished(proc.returncode, round(seconds, 2), "".join(out), "".join(err), round(usage.ru_maxrss / 1024, 1), summary)


def run(command: list[str], env: dict | None = None, timeout_s: float = 90) -> Finished:
    started = time.monotonic()
    return finish(start(command, env), started, timeout_s)


def raw_responses(uri: Path) -> pl.DataFrame:
    """Every row ever appended to ``llm_responses`` (the table as of its last append, before the run's
    compaction keeps one row per request): duplicates show here if anywhere."""
    table = DeltaTable(str(uri))
    appends = [
        h["version"] for h in table.history() if h["operation"] == "WRITE" and h["operationParameters"].get("mode") == "Append"
    ]
    return pl.from_arrow(DeltaTable(str(uri), version=max(appends)).to_pyarrow_table())


def table_strings(lake: Path) -> dict[str, list[str]]:
    """Every non-null string (list elements included) of every Delta table under ``lake``, by table name."""
    found: dict[str, list[str]] = {}
    for log in sorted(lake.glob("*/_delta_log")):
        frame = pl.read_delta(str(log.parent))
        values: list[str] = []
        for name, dtype in frame.schema.items():
            column = frame.get_column(name)
            if dtype == pl.List(pl.String):
                column = column.explode()
            elif dtype != pl.String:
                continue
            values.extend(v for v in column.to_list() if v)
        found[log.parent.name] = values
    return found


def conversation_probes(input_path: Path, length: int = 40) -> list[str]:
    """Pieces of conversation text (the first ``length`` characters of every long enough message) to look for."""
    probes = set()
    for line in input_path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for message in record.get("messages") or [] if isinstance(record, dict) else []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str) and len(content.strip()) >= length:
                probes.add(content.strip()[:length])
    return sorted(probes)
