"""Batch files without I/O: lines in the OpenAI Batch format, files within every limit, results read back."""

from __future__ import annotations

import json

import pytest
from sim_dispatch import WEEK, sim_requests

from semtel_dagster.core.llm.batch_files import (
    AZURE_BATCH_URL,
    OPENAI_BATCH_URL,
    BatchLimitError,
    batch_key,
    batch_line,
    parse_results,
    split_lines,
)
from semtel_dagster.core.llm.endpoints import AzureEndpoint, BatchOptions, Endpoint

OPENAI = Endpoint(name="a", base_url="http://127.0.0.1:1/v1", model="gpt-4o-mini")


def test_line_is_the_online_body_under_the_request_id():
    request = sim_requests(1)[0]
    item = batch_line(request, OPENAI)
    line = json.loads(item.line)
    assert item.line.endswith(b"\n") and item.line.count(b"\n") == 1
    assert line["custom_id"] == request.request_id and line["method"] == "POST" and line["url"] == OPENAI_BATCH_URL
    assert line["body"]["messages"] == request.messages and line["body"]["max_tokens"] == request.max_tokens
    assert "stream" not in line["body"]


def test_azure_line_names_the_deployment():
    azure = AzureEndpoint(
        name="w",
        base_url="https://x.openai.azure.com",
        model="gpt-4o-mini",
        deployment="prod",
        api_version="2024-10-21",
        api_key_env="K",
    )
    line = json.loads(batch_line(sim_requests(1)[0], azure).line)
    assert line["url"] == AZURE_BATCH_URL and line["body"]["model"] == "prod"


@pytest.mark.parametrize(
    "limits",
    [
        BatchOptions(max_requests=7),
        BatchOptions(max_bytes=2_000),
        BatchOptions(max_enqueued_tokens=100),
        BatchOptions(max_requests=5, max_bytes=1_500, max_enqueued_tokens=60),
    ],
)
def test_files_keep_every_limit_and_every_line_in_order(limits):
    lines = [batch_line(r, OPENAI) for r in sim_requests(40)]
    files = list(split_lines(lines, limits))
    assert [rid for f in files for rid in f.request_ids] == [line.request_id for line in lines]
    assert b"".join(f.content for f in files) == b"".join(line.line for line in lines)
    for f in files:
        assert len(f.request_ids) <= limits.max_requests and len(f.content) <= limits.max_bytes
        assert limits.max_enqueued_tokens is None or f.prompt_tokens <= limits.max_enqueued_tokens
    assert len(files) > 1  # each limit cuts: no file could hold the 40 lines


def test_defaults_are_openais_limits():
    assert BatchOptions().max_requests == 50_000 and BatchOptions().max_bytes == 200 * 1024 * 1024
    assert len(list(split_lines([batch_line(r, OPENAI) for r in sim_requests(40)], BatchOptions()))) == 1


def test_a_line_no_file_can_hold_is_an_error():
    lines = [batch_line(r, OPENAI) for r in sim_requests(2)]
    with pytest.raises(BatchLimitError, match="exceed the batch file limit"):
        list(split_lines(lines, BatchOptions(max_bytes=50)))
    with pytest.raises(BatchLimitError, match="enqueued-token limit"):
        list(split_lines(lines, BatchOptions(max_enqueued_tokens=2)))


def test_key_is_deterministic_and_order_free():
    assert batch_key(WEEK, "a", ["x", "y"]) == batch_key(WEEK, "a", ["y", "x"])
    assert batch_key(WEEK, "a", ["x"]) != batch_key(WEEK, "b", ["x"]) != batch_key(None, "a", ["x"])


def test_results_of_output_and_error_lines():
    answer = {"choices": [{"message": {"content": '{"label": "x"}'}, "finish_reason": "stop"}], "usage": {}}
    content = b"\n".join(
        json.dumps(line).encode()
        for line in [
            {"id": "1", "custom_id": "ok", "response": {"status_code": 200, "request_id": "r", "body": answer}, "error": None},
            {
                "id": "2",
                "custom_id": "http",
                "response": {"status_code": 500, "body": {"error": {"message": "boom"}}},
                "error": None,
            },
            {"id": "3", "custom_id": "late", "response": None, "error": {"code": "batch_expired", "message": "not run"}},
            {"id": "4", "custom_id": "empty", "response": {"status_code": 200, "body": {"choices": []}}, "error": None},
        ]
    )
    results = {r.request_id: r for r in parse_results(content + b"\nnot json\n{}\n")}
    assert set(results) == {"ok", "http", "late", "empty"}
    assert results["ok"].body == answer and results["ok"].error is None
    assert results["http"].error == "HTTP 500: boom"
    assert results["late"].error == "batch_expired: not run"
    assert results["empty"].body is None and "without message content" in (results["empty"].error or "")
