"""``semtel endpoints check``: modes probed on the wire, against the simulator and against a server that
speaks llama-cpp-python's dialect (json_schema refused with a 500 pydantic validation body)."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from aiohttp import web
from scripted_http import HandlerServer, answer_chunks, completion, open_stream, send_event, streaming

from semtel_dagster.cli import main
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread

pytestmark = pytest.mark.timeout(60)

LLAMA_CPP_500 = {
    "error": {
        "message": "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or "
        "'json_object' [type=literal_error, input_value='json_schema', input_type=str]",
        "type": "internal_server_error",
    }
}


async def _llama_cpp(request, call):
    """json_schema: refused; json_object with a schema: grammar-enforced; anything else: prose."""
    response_format = call.body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return web.json_response(LLAMA_CPP_500, status=500)
    if response_format.get("type") == "json_object" and "schema" in response_format:
        enum = response_format["schema"]["properties"]["label"]["enum"]
        assert enum == ["positive", "negative", "neutral"]
        return web.json_response(completion(content='{"label": "positive"}'))
    if response_format.get("type") == "json_object":
        return web.json_response(completion(content='{"sentiment": "very positive"}'))
    return web.json_response(completion(content="The sentiment of this message is positive."))


def _file(tmp_path, endpoints):
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": endpoints}))
    return path


def test_check_finds_llama_cpp_dialect_and_the_simulator(tmp_path, capsys):
    config = SimConfig(endpoints=[SimEndpointConfig(name="simmed", tpm=100_000, rpm=1_000)])
    with SimulatorThread(config) as sim, HandlerServer(_llama_cpp) as llama:
        path = _file(
            tmp_path,
            [
                {"name": "llama", "base_url": llama.base_url, "model": "smollm2"},
                {"name": "simmed", "base_url": sim.base_url("simmed"), "model": "gpt-4o-mini"},
            ],
        )
        code = main(["endpoints", "check", str(path), "--json", str(tmp_path / "report.json")])
        llama_calls = [c.body for c in llama.calls]
    out = capsys.readouterr().out
    report = {r["name"]: r for r in json.loads((tmp_path / "report.json").read_text())}
    assert code == 1  # llama's entry asks for json_schema, which it refuses
    assert len(llama_calls) == 6 and "guided_choice" in llama_calls[3] and "response_format" not in llama_calls[4]
    assert llama_calls[5]["stream"] is True  # then streaming, answered with a plain body

    llama_report = report["llama"]
    assert llama_report["supported"] == ["json_object_schema"] and llama_report["recommended"] == "json_object_schema"
    refused = next(m for m in llama_report["modes"] if m["mode"] == "json_schema")
    assert refused["status"] == 500 and "validation error" in refused["detail"]
    assert llama_report["rate_limit_headers"] == []
    assert "llama: configured structured_output json_schema: NOT supported; recommended: json_object_schema" in out
    assert llama_report["stream"]["streams"] is False and "answered with a plain body" in out

    sim_report = report["simmed"]
    assert "json_schema" in sim_report["supported"] and sim_report["recommended"] == "json_schema"
    assert "x-ratelimit-remaining-tokens" in sim_report["rate_limit_headers"]
    assert sim_report["stream"]["streams"] is False and "stream=true is not supported" in sim_report["stream"]["detail"]
    assert all(m["latency_ms"] > 0 for m in sim_report["modes"])


def test_check_passes_when_the_configured_mode_works(tmp_path, capsys):
    with HandlerServer(_llama_cpp) as llama:
        path = _file(
            tmp_path, [{"name": "llama", "base_url": llama.base_url, "model": "m", "structured_output": "json_object_schema"}]
        )
        assert main(["endpoints", "check", str(path), "--modes", "json_object_schema,none"]) == 0
        assert len(llama.calls) == 3  # two modes, then one streamed request
    assert "json_object_schema: supported" in capsys.readouterr().out


def test_check_starts_a_simulator_only_for_kind_sim(tmp_path, capsys):
    path = _file(tmp_path, [{"kind": "sim", "name": "local"}])
    assert main(["endpoints", "check", str(path), "--modes", "json_schema"]) == 0
    assert "local: configured structured_output json_schema: supported" in capsys.readouterr().out


def _interrupting():
    """llama-cpp-python's default: one request at a time, and a stream ends (``[DONE]``, no finish
    reason) as soon as another request waits."""
    lock, waiting = asyncio.Lock(), []

    async def handler(request, call):
        response = await open_stream(request)
        waiting.append(call)
        async with lock:
            waiting.remove(call)
            for data in answer_chunks('{"label": "positive"}', usage=False):
                await send_event(response, data)
                await asyncio.sleep(0.02)
                if waiting:
                    break
            await send_event(response, "[DONE]")
        return response

    return handler


@pytest.mark.parametrize("server", ["whole", "interrupting"])
def test_check_reports_streaming_usage_and_streams_cut_short(tmp_path, capsys, server):
    handler = streaming(content='{"label": "positive"}') if server == "whole" else _interrupting()
    with HandlerServer(handler) as scripted:
        entry = {"name": "s", "base_url": scripted.base_url, "model": "m", "stream": True, "structured_output": "none"}
        code = main(["endpoints", "check", str(_file(tmp_path, [entry])), "--modes", "none", "--json", str(tmp_path / "r.json")])
        streamed = [c.body.get("stream") for c in scripted.calls]
    (report,) = json.loads((tmp_path / "r.json").read_text())
    out = capsys.readouterr().out
    assert streamed == [None, True, True, True]  # the mode plainly, one streamed, then two at once
    if server == "whole":
        assert code == 0 and report["stream"]["streams"] and report["stream"]["usage"] and report["stream"]["whole_when_shared"]
        assert "s: streams: yes, first event after" in out and "usage in stream: yes" in out and "recommended: auto" in out
    else:  # configured stream: true on a server that cuts streams short: exit 1, and how to fix it
        assert code == 1 and report["stream"]["streams"] and report["stream"]["whole_when_shared"] is False
        assert "usage in stream: no (tokens are then counted locally)" in out
        assert "whole answers with two at once: NO (llama-cpp-python: start it with --interrupt_requests False)" in out
        assert "recommended: false" in out
