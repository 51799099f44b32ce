"""``semtel classify`` and one Dagster week against a real LLM server (llama-cpp-python, SmolLM2-135M).

The server enforces the answer's JSON schema with a grammar (``structured_output: json_object_schema``),
answers one request at a time and sends no rate-limit headers. What must hold on it: every request is
answered or rejected with a reason, configuration errors are never retried, at least 95% of
(conversation, classifier) pairs get a label from grammar-enforced JSON, and a rerun sends nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance

from benchmarks.real_model.data import DATA, WEEK, real_conversations, write_jsonl
from semtel_dagster.cli import main
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm.requests import STATUS_OK

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.real_llm, pytest.mark.integration]

# The two classifiers with the shortest prompts (about 170 tokens each without the transcript).
CLASSIFIERS = ["intent", "knowledge_work"]
# The endpoint as a user would declare a local llama.cpp server: its dialect, one request at a time,
# and a timeout for a 135M model on a shared 2-core machine.
SERVER_FIELDS = {"max_concurrency": 1, "timeout_s": 120.0, "timeout_base_s": 60.0}


def completions_logged(server) -> int:
    """Chat completions the server has received so far, from its own access log."""
    return server.log_path.read_text(errors="replace").count("POST /v1/chat/completions")


def _classify(tmp_path, conversations, out, endpoints) -> tuple[int, dict]:
    summary = tmp_path / f"summary-{time.monotonic_ns()}.json"
    code = main(
        [
            "classify",
            "--input",
            str(conversations),
            "--output",
            str(out),
            "--endpoints",
            str(endpoints),
            "--classifiers",
            ",".join(CLASSIFIERS),
            "--summary-json",
            str(summary),
        ]
    )
    return code, json.loads(summary.read_text())


def _assert_grammar_labels(responses: pl.DataFrame, labels: pl.DataFrame, rejects: pl.DataFrame, pairs: int) -> None:
    """Every request answered (or failed with its reason), every pair accounted for, >= 95% labelled
    from JSON that parsed as is (no repair), inside the classifier's label set."""
    failed = responses.filter(pl.col("status") != STATUS_OK)
    assert failed.filter(pl.col("error").is_null() | (pl.col("error") == "")).height == 0
    assert labels.height + rejects.height == pairs
    assert rejects.filter(pl.col("reason").is_null() | (pl.col("reason") == "")).height == 0
    assert labels.height >= 0.95 * pairs, rejects.select("reason", "raw_text").head(10).to_dicts()
    assert labels.filter(pl.col("cleaning") != "exact").height <= 0.05 * pairs, labels["cleaning"].value_counts().to_dicts()
    sets = {name: set(c.labels) for name, c in load_classifiers(names=CLASSIFIERS).items()}
    assert all(label in sets[name] for name, label in labels.select("classifier", "label").iter_rows())
    for raw in responses.filter(pl.col("status") == STATUS_OK)["raw_text"].to_list():
        assert isinstance(json.loads(raw), dict)  # grammar-enforced: the whole answer is one JSON object


def test_classify_cli_on_real_conversations_then_resume(real_server, tmp_path):
    conversations = write_jsonl(tmp_path / "conversations.jsonl", real_conversations(20))
    endpoints = real_server.endpoints_file(tmp_path / "endpoints.yaml", **SERVER_FIELDS)
    out = tmp_path / "out"
    sent_before = completions_logged(real_server)

    code, first = _classify(tmp_path, conversations, out, endpoints)
    assert code == 0, first
    pairs = first["rows"] * len(CLASSIFIERS)
    assert first["rows"] == 20 and first["requests"] == first["requests_sent"] > 0
    # nothing failed; a retry can only be a timeout on a loaded machine, never a configuration error
    assert first["failed_requests"] == 0 and first["retries"] == first["timeouts"], first
    responses = pl.read_delta(str(out / "llm_responses"))
    assert responses.height == first["requests"] and set(responses["model"]) == {real_server.model}
    assert (responses["attempts"] - 1).sum() == first["retries"]
    assert completions_logged(real_server) - sent_before == first["http_requests"] == first["requests"] + first["retries"]
    labels, rejects = pl.read_delta(str(out / "classifications")), pl.read_delta(str(out / "classification_rejects"))
    _assert_grammar_labels(responses, labels, rejects, pairs)

    sent_before = completions_logged(real_server)
    code, second = _classify(tmp_path, conversations, out, endpoints)
    assert code == 0
    assert second["requests_sent"] == 0 and second["http_requests"] == 0 and second["requests_resumed"] == first["requests"]
    assert completions_logged(real_server) == sent_before  # the server saw nothing
    assert (
        pl.read_delta(str(out / "classifications"))
        .sort("conversation_id", "classifier")
        .equals(labels.sort("conversation_id", "classifier"))
    )


def test_a_schema_dialect_the_server_refuses_fails_fast_without_retries(real_server, tmp_path):
    """llama-cpp-python answers OpenAI's json_schema response_format with HTTP 500 and a validation
    message: a configuration error. The run stops within seconds with the server's words, before it has
    sent every request once (the old dispatch sent each six times)."""
    conversations = write_jsonl(tmp_path / "conversations.jsonl", real_conversations(3))
    requests = 3 * len(CLASSIFIERS)
    endpoints = real_server.endpoints_file(tmp_path / "endpoints.yaml", structured_output="json_schema", **SERVER_FIELDS)
    sent_before = completions_logged(real_server)
    started = time.monotonic()
    command = [sys.executable, "-m", "semtel_dagster.cli", "classify", "--input", str(conversations)]
    command += ["--output", str(tmp_path / "out"), "--endpoints", str(endpoints), "--classifiers", ",".join(CLASSIFIERS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert time.monotonic() - started < 60
    assert done.returncode != 0
    assert "misconfigured" in done.stderr and "HTTP 500" in done.stderr, done.stderr[-2000:]
    assert 0 < completions_logged(real_server) - sent_before < requests


def test_one_dagster_week_through_the_real_server_then_rerun(real_server, tmp_path):
    from semtel_dagster.definitions import build_definitions
    from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings

    n = 6
    write_jsonl(tmp_path / "landing" / "real.jsonl", real_conversations(n, skip=20))
    defs = build_definitions(
        lake=LakeResource(root=str(tmp_path / "lake")),
        settings=PipelineSettings(landing_dir=str(tmp_path / "landing"), classifiers=CLASSIFIERS),
        endpoint_pool=EndpointPoolResource(
            endpoints_file=str(real_server.endpoints_file(tmp_path / "endpoints.yaml", **SERVER_FIELDS)), flush_rows=10
        ),
    )

    def week_table(name: str) -> pl.DataFrame:
        frame = delta.read_weeks(delta.table_uri(str(tmp_path / "lake"), name), tables.TABLES[name], [WEEK])
        return frame.sort(frame.columns[:4], nulls_last=True)

    with DagsterInstance.ephemeral() as instance:
        sent_before = completions_logged(real_server)
        first = defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=WEEK.isoformat(), instance=instance, raise_on_error=False
        )
        assert first.success
        responses = week_table("llm_responses")
        assert week_table("conversations").height == n
        assert completions_logged(real_server) - sent_before == responses["attempts"].sum() >= responses.height > 0
        _assert_grammar_labels(
            responses, week_table("classifications"), week_table("classification_rejects"), n * len(CLASSIFIERS)
        )
        insights = week_table("weekly_insights")
        assert set(insights["classifier"]) == set(CLASSIFIERS)
        before = {name: week_table(name) for name in tables.TABLES}

        sent_before = completions_logged(real_server)
        rerun = defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=WEEK.isoformat(), instance=instance, raise_on_error=False
        )
        assert rerun.success
        assert completions_logged(real_server) == sent_before  # resume: nothing sent
    for name in tables.TABLES:
        assert week_table(name).equals(before[name]), f"{name} changed on rerun"


def test_semtel_eval_scores_the_real_model_against_both_simulator_labelers_and_human_labels(real_server, tmp_path):
    """`semtel eval` with the real server as the reference: agreement of the keyword and the embedding
    simulator with it on real conversations, and its accuracy on CLINC150's human labels (topic)."""
    endpoints = real_server.endpoints_file(tmp_path / "endpoints.yaml", **SERVER_FIELDS)
    out = tmp_path / "eval"
    sent_before = completions_logged(real_server)
    code = main(
        [
            "eval",
            "--a",
            f"name=smollm2,endpoints={endpoints},classifiers=intent",
            "--b",
            "name=keyword,labeler=keyword,classifiers=intent",
            "--b",
            "name=embedding,labeler=embedding,classifiers=intent",
            "--sample",
            "real",
            "--n",
            "3",
            "--max-chars",
            "600",
            "--golden",
            "clinc150",
            "--golden-n",
            "3",
            "--data",
            str(DATA),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    real = result["runs"][0]
    assert real["name"] == "smollm2" and real_server.model in real["endpoints"]
    assert completions_logged(real_server) - sent_before >= 3 + 3  # the sample's intent and CLINC150's topic requests
    for labeler in ("keyword", "embedding"):
        intent = result["comparison"][labeler]["intent"]
        assert intent["compared"] == 3 and 0.0 <= intent["raw_agreement"] <= 1.0  # grammar-enforced: every pair labelled
    clinc = result["golden"]["clinc150"]
    assert set(clinc) == {"smollm2", "keyword", "embedding"}
    # stratified by human label: a small sample rounds up to some items of several labels
    assert clinc["smollm2"]["topic"]["items"] >= 3 and 0.0 <= clinc["smollm2"]["topic"]["accuracy"] <= 1.0
    assert "## Agreement of embedding with smollm2" in (out / "report.md").read_text()
