"""``semtel classify`` end to end: real Delta tables, the simulator over HTTP, rerun, budget, SIGKILL."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from deltalake import DeltaTable

from semtel_dagster.cli import main
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("landing")
    landing, _ = write_week(folder / "landing", folder / "truth", WEEK, n=40, seed=5)
    return landing


def _classify(tmp_path: Path, sample: Path, out: Path, *extra: str) -> tuple[int, dict]:
    summary_file = tmp_path / f"summary-{time.monotonic_ns()}.json"
    code = main(
        [
            "classify",
            "--input",
            str(sample),
            "--output",
            str(out),
            "--classifiers",
            "topic,intent",
            "--summary-json",
            str(summary_file),
            *(extra if "--endpoints" in extra else (*extra, "--endpoints", "sim")),
        ]
    )
    return code, json.loads(summary_file.read_text())


def test_classify_then_rerun_resumes_everything(tmp_path, sample):
    out = tmp_path / "out"
    code, first = _classify(tmp_path, sample, out)
    assert code == 0
    assert first["rows"] == 40 and first["rejected_records"] >= 0 and first["weeks"] == [WEEK.isoformat()]
    assert first["requests"] == first["requests_sent"] > 0 and first["requests_resumed"] == 0
    for key in ("prompt_tokens", "completion_tokens", "retries", "rate_limited", "wall_seconds", "endpoints", "budget"):
        assert key in first
    assert first["prompt_tokens"] > 0 and sum(e["ok"] for e in first["endpoints"].values()) == first["requests"]
    assert first["classifications"] + first["classification_rejects"] == 40 * 2
    labels = pl.read_delta(str(out / "classifications"))
    assert labels.height == first["classifications"]
    assert labels.select("conversation_id", "classifier").is_unique().all()
    responses = pl.read_delta(str(out / "llm_responses"))
    assert responses.height == first["requests"] and responses["request_id"].is_unique().all()
    assert not any(os.environ.get(k, "\0") in responses.write_csv() for k in os.environ if k.endswith("_KEY"))

    code, second = _classify(tmp_path, sample, out)
    assert code == 0
    assert second["requests_sent"] == 0 and second["requests_resumed"] == first["requests"]
    assert second["http_requests"] == 0
    assert (
        pl.read_delta(str(out / "classifications"))
        .sort("conversation_id", "classifier")
        .equals(labels.sort("conversation_id", "classifier"))
    )


def test_budget_stops_says_so_and_the_rerun_finishes(tmp_path, sample):
    out = tmp_path / "out"
    code, first = _classify(tmp_path, sample, out, "--budget-tokens", "20000")
    assert code == 3 and first["budget"]["exhausted"]
    assert 0 < first["budget"]["spent_tokens"] <= 20000
    saved = pl.read_delta(str(out / "llm_responses")).height
    assert 0 < saved < first["requests"]
    code, second = _classify(tmp_path, sample, out)
    assert code == 0 and second["requests_resumed"] == saved
    assert second["requests_sent"] == first["requests"] - saved


def test_bad_endpoints_file_names_the_field(tmp_path, sample, capsys):
    bad = tmp_path / "endpoints.yaml"
    bad.write_text(yaml.safe_dump({"endpoints": [{"name": "a", "base_url": "localhost:1", "model": "m"}]}))
    code = main(["classify", "--input", str(sample), "--output", str(tmp_path / "out"), "--endpoints", str(bad)])
    assert code == 2 and "endpoints.0.base_url" in capsys.readouterr().err


def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path, sample):
    """Killed with SIGKILL while answers stream in, then run again: every pair is classified once,
    llm_responses never holds a request twice, and at most one flush of calls is repeated."""
    flush_rows = 10
    config = SimConfig(endpoints=[SimEndpointConfig(name="slow", latency_ms=60.0)])
    with SimulatorThread(config) as sim:
        endpoints = tmp_path / "endpoints.yaml"
        endpoints.write_text(
            yaml.safe_dump(
                {"endpoints": [{"name": "slow", "base_url": sim.base_url("slow"), "model": "gpt-4o-mini", "max_concurrency": 4}]}
            )
        )
        out = tmp_path / "out"
        cmd = [
            sys.executable,
            "-m",
            "semtel_dagster.cli",
            "classify",
            "--input",
            str(sample),
            "--output",
            str(out),
            "--endpoints",
            str(endpoints),
            "--classifiers",
            "topic,intent",
            "--flush-rows",
            str(flush_rows),
            "--flush-seconds",
            "30",
            "--summary-json",
            str(tmp_path / "summary.json"),
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        uri = str(out / "llm_responses")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                if DeltaTable(uri).version() >= 2:  # two flushes committed (version 0 creates the table)
                    break
            except Exception:
                continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        saved = DeltaTable(uri).to_pyarrow_table().num_rows
        answered_before = sim.stats()["totals"]["ok_requests"]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        answered = sim.stats()["totals"]["ok_requests"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    table = DeltaTable(uri)
    appends = [
        h["version"] for h in table.history() if h["operation"] == "WRITE" and h["operationParameters"].get("mode") == "Append"
    ]
    raw = pl.from_arrow(DeltaTable(uri, version=max(appends)).to_pyarrow_table())
    assert 0 < saved < summary["requests"] and summary["requests_resumed"] == saved
    assert raw.height == raw["request_id"].n_unique() == summary["requests"]  # nothing duplicated, nothing lost
    assert answered - summary["requests"] <= flush_rows + 4  # repeated: one flush plus the requests in flight
    assert answered_before > saved
    labels = pl.read_delta(str(out / "classifications"))
    rejects = pl.read_delta(str(out / "classification_rejects"))
    assert labels.height + rejects.height == 40 * 2
    assert not rejects.filter(pl.col("reason") == "no response recorded").height


def test_spark_engine_writes_what_polars_writes_and_resumes(tmp_path, sample, spark):
    """``--engine spark``: the same tables as the Polars engine (how each request went aside), and a rerun resumes."""
    on_spark = ["--engine", "spark", "--spark-master", "local[2]"]
    code, polars = _classify(tmp_path, sample, tmp_path / "polars")
    code_spark, first = _classify(tmp_path, sample, tmp_path / "spark", *on_spark)
    assert code == code_spark == 0 and first["engine"] == "spark"
    for key in ("rows", "requests", "requests_sent", "classifications", "classification_rejects"):
        assert first[key] == polars[key], key
    how_it_went = ["latency_ms", "created_at", "attempts", "rate_limited", "endpoint", "cached_tokens"]
    for table in ("llm_responses", "classifications", "classification_rejects"):
        expected = pl.read_delta(str(tmp_path / "polars" / table)).drop(how_it_went, strict=False)
        actual = pl.read_delta(str(tmp_path / "spark" / table)).drop(how_it_went, strict=False)
        assert actual.sort(actual.columns, nulls_last=True).equals(expected.sort(expected.columns, nulls_last=True)), table
    code, again = _classify(tmp_path, sample, tmp_path / "spark", *on_spark)
    assert code == 0 and again["requests_sent"] == 0 and again["requests_resumed"] == first["requests"]


def _endpoints_at(tmp_path: Path, base_url: str, **extra) -> Path:
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [{"name": "one", "base_url": base_url, "model": "m", **extra}]}))
    return path


def test_without_endpoints_it_says_how_to_configure_them(tmp_path, sample, capsys, monkeypatch):
    monkeypatch.delenv("SEMTEL_ENDPOINTS", raising=False)
    code = main(["classify", "--input", str(sample), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "no LLM endpoints configured" in err and "SEMTEL_ENDPOINTS=sim" in err
    assert not (tmp_path / "out" / "llm_responses").exists()  # nothing simulated was written


def test_misconfigured_endpoint_fails_fast_without_retries(tmp_path, sample, capsys):
    from aiohttp import web
    from scripted_http import HandlerServer

    async def refuse(request, call):
        return web.json_response({"error": {"message": "1 validation error for CreateChatCompletionRequest"}}, status=500)

    with HandlerServer(refuse) as server:
        started = time.monotonic()
        code, _ = _classify_raw(tmp_path, sample, _endpoints_at(tmp_path, server.base_url))
        calls = len(server.calls)
    err = capsys.readouterr().err
    assert code == 4 and time.monotonic() - started < 20
    assert "endpoint one is misconfigured: HTTP 500 from one: 1 validation error" in err
    assert calls <= 4


def test_the_stop_time_is_the_users_to_set(tmp_path, sample, capsys):
    """A sole endpoint answering 500 to everything: --stop-after-failing-s bounds the run, exit 4."""
    from scripted_http import HandlerServer, always_500

    with HandlerServer(always_500) as server:
        started = time.monotonic()
        code, _ = _classify_raw(tmp_path, sample, _endpoints_at(tmp_path, server.base_url), "--stop-after-failing-s", "3")
    elapsed = time.monotonic() - started
    assert code == 4 and elapsed < 15, elapsed
    assert "every endpoint failing" in capsys.readouterr().err


def test_failed_requests_exit_non_zero_and_are_told_apart(tmp_path, sample, capsys):
    from aiohttp import web
    from scripted_http import HandlerServer, completion

    async def some_too_long(request, call):
        if len(call.body["messages"][-1]["content"]) % 3 == 0:
            message = "This model's maximum context length is 8192 tokens."
            return web.json_response({"error": {"message": message, "code": "context_length_exceeded"}}, status=400)
        return web.json_response(completion(content='{"label": "coding"}'))

    with HandlerServer(some_too_long) as server:
        code, summary = _classify_raw(tmp_path, sample, _endpoints_at(tmp_path, server.base_url))
    assert code == 1
    assert summary["failed_requests"] > 0 and summary["answered_requests"] > 0
    assert summary["answered_requests"] + summary["failed_requests"] == summary["requests_sent"]
    assert f"{summary['answered_requests']} requests answered, {summary['failed_requests']} failed" in capsys.readouterr().err


def _classify_raw(tmp_path: Path, sample: Path, endpoints: Path, *extra: str) -> tuple[int, dict | None]:
    summary_file = tmp_path / "summary.json"
    code = main(
        [
            "classify",
            "--input",
            str(sample),
            "--output",
            str(tmp_path / "out"),
            "--classifiers",
            "topic",
            "--endpoints",
            str(endpoints),
            "--summary-json",
            str(summary_file),
            *extra,
        ]
    )
    return code, json.loads(summary_file.read_text()) if summary_file.exists() else None
