"""Streaming against the real server (llama-cpp-python, one request at a time, started with
``--interrupt_requests False``): requests queued there past their work timeout are not timed out, and
``semtel endpoints check`` sees that it streams whole answers without usage in the stream."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.real_model.queueing import ENDPOINT_FIELDS, REQUESTS, classify_while_busy
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.transport_probe import probe_endpoint

pytestmark = [pytest.mark.real_llm, pytest.mark.integration]


def test_streamed_requests_queued_past_their_work_timeout_do_not_time_out(real_server, tmp_path):
    """Another client holds the server 8 s; four requests sent at once with a 3 s work timeout each
    wait longer than that, and are all answered on their first attempt."""
    result = classify_while_busy(real_server, tmp_path, stream=True, hold_s=8.0)
    assert result["exit_code"] == 0, result
    assert result["answered"] == result["requests"] == result["http_requests"] == REQUESTS, result
    assert result["timeouts"] == result["retries"] == result["failed"] == 0, result
    assert min(result["latency_s"]) > ENDPOINT_FIELDS["timeout_s"], result  # every one queued past its work timeout


def test_endpoints_check_sees_whole_streams_without_usage(real_server):
    endpoint = Endpoint(name="llama", base_url=real_server.base_url, model=real_server.model)
    report = asyncio.run(probe_endpoint(endpoint, modes=("json_object_schema",)))
    assert report.supported == ["json_object_schema"]
    assert report.stream is not None and report.stream.streams and report.stream.whole_when_shared
    assert not report.stream.usage and report.stream.recommended == "auto"
