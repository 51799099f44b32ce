"""Requests queued at a serial server for longer than their work timeout, streamed and plain.

Another client's streamed generation holds llama-cpp-python (one request at a time) for ``hold_s``
from its first token, then disconnects (the server stops it at its next token). Meanwhile ``semtel
classify`` sends a handful of requests on real conversations at concurrency 4, each with a 3 s work
timeout: every one waits at the server longer than that. Streamed (``stream: true``), the work's
clock starts at the request's first event and the wait counts against the generous queue limit;
plain (``stream: false``), the timeout allows only for our own requests ahead (4 x 3 s), not for
another client's work, and the requests time out and are sent again while the server still has them.

    python -m benchmarks.real_model.queueing   # both runs and the endpoints check, about 2 minutes;
                                               # writes queueing.json and prints a table for RESULTS.md
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from benchmarks.real_model.data import real_conversations, write_jsonl
from benchmarks.real_model.llama_server import RunningServer, llama_server
from semtel_dagster.cli import main
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.transport_probe import probe_endpoint

HERE = Path(__file__).resolve().parent
CLASSIFIERS = ["intent"]
# a work timeout far above what a short classification takes once started (well under a second), and
# far below what the wait at the busy server takes
ENDPOINT_FIELDS = {"max_concurrency": 4, "timeout_s": 3.0, "timeout_base_s": 3.0, "timeout_per_1k_tokens_s": 0.0}
REQUESTS = 4
HOLD_S = 20.0  # beyond the plain timeout of a request sent with three of ours ahead: 3 + 3 x 3 s


@contextlib.contextmanager
def other_client(server: RunningServer, hold_s: float) -> Iterator[None]:
    """Another client's generation holding the server for ``hold_s`` from its first token."""
    started = threading.Event()
    body = {
        "model": server.model,
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}],
        "max_tokens": 3000,
        "min_tokens": 3000,
        "stream": True,
    }

    def generate() -> None:
        request = urllib.request.Request(
            f"{server.base_url}/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            for line in response:
                if not line.startswith(b"data:"):
                    continue
                if not started.is_set():
                    began = time.monotonic()
                    started.set()
                if time.monotonic() - began >= hold_s:
                    return  # leaving closes the connection: the server stops at its next token

    thread = threading.Thread(target=generate, daemon=True)
    thread.start()
    if not started.wait(120):
        raise RuntimeError(f"the other client's generation did not start:\n{server.log_tail()}")
    try:
        yield
    finally:
        thread.join(hold_s + 120)


def classify_while_busy(server: RunningServer, work: Path, stream: bool, hold_s: float = HOLD_S) -> dict:
    """``semtel classify`` on ``REQUESTS`` real conversations while another client holds the server."""
    conversations = write_jsonl(work / "conversations.jsonl", real_conversations(REQUESTS, skip=30))
    endpoints = server.endpoints_file(work / f"endpoints-{stream}.yaml", stream=stream, **ENDPOINT_FIELDS)
    out, summary_file = work / f"out-{stream}", work / f"summary-{stream}.json"
    command = ["classify", "--input", str(conversations), "--output", str(out), "--endpoints", str(endpoints)]
    command += ["--classifiers", ",".join(CLASSIFIERS), "--summary-json", str(summary_file)]
    with other_client(server, hold_s):
        started = time.monotonic()
        code = main(command)
        wall = time.monotonic() - started
    summary = json.loads(summary_file.read_text())
    responses = pl.read_delta(str(out / "llm_responses"))
    answered = responses.filter(pl.col("status") == "ok")
    return {
        "stream": stream,
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "requests": summary["requests"],
        "http_requests": summary["http_requests"],
        "answered": summary["answered_requests"],
        "failed": summary["failed_requests"],
        **{key: summary[key] for key in ("retries", "timeouts", "queue_timeouts", "work_timeouts", "stall_timeouts")},
        "latency_s": sorted(round(v / 1000, 1) for v in answered["latency_ms"].to_list()),
        "errors": sorted({e.split(": ", 1)[-1][:120] for e in responses["error"].drop_nulls().to_list()}),
    }


def _check(server: RunningServer) -> dict:
    endpoint = Endpoint(name="llama", base_url=server.base_url, model=server.model, structured_output="json_object_schema")
    report = asyncio.run(probe_endpoint(endpoint, modes=("json_object_schema",)))
    assert report.stream is not None
    return report.as_dict()["stream"]


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with llama_server(work / "server.log") as server:
            runs = [classify_while_busy(server, work / "streamed", True), classify_while_busy(server, work / "plain", False)]
            check = _check(server)
        with llama_server(work / "interrupting.log", interrupt_requests=True) as server:
            check_interrupting = _check(server)
    return {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "endpoint_fields": ENDPOINT_FIELDS,
        "hold_s": HOLD_S,
        "runs": runs,
        "check": {"interrupt_requests False": check, "interrupt_requests True (server default)": check_interrupting},
    }


def table(results: dict) -> str:
    lines = [
        "| stream | requests | answered | HTTP requests | timeouts (queue / work / stall) | retries | wall (s) | latency of answers (s) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for r in results["runs"]:
        kinds = f"{r['timeouts']} ({r['queue_timeouts']} / {r['work_timeouts']} / {r['stall_timeouts']})"
        lines.append(
            f"| {str(r['stream']).lower()} | {r['requests']} | {r['answered']} | {r['http_requests']} | {kinds} | "
            f"{r['retries']} | {r['wall_seconds']} | {', '.join(map(str, r['latency_s']))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    results = run()
    (HERE / "queueing.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(json.dumps(results["check"], indent=2))
