"""A provider that echoes the key and the request (a 401 "Incorrect API key provided: Bearer sk-…", a 500
page listing the headers and the body): after ``semtel classify`` and after one Dagster week, neither the
key nor conversation text is in any table's strings, the Dagster instance's storage, stdout or stderr."""

from __future__ import annotations

import hashlib
import json
import secrets

import pytest
from aiohttp import web
from dagster import DagsterInstance
from dagster._serdes import serialize_value
from harness import WEEK, classify_command, conversation_probes, endpoints_file, landing, run, table_strings
from scripted_http import HandlerServer, completion

from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(150)]

KEY_ENV = "SEMTEL_FAULTS_ECHOED_KEY"
SAMPLED = ("STEP_OUTPUT", "ASSET_MATERIALIZATION")  # the events that carry a table's metadata
ANSWER_TABLES = ("llm_responses", "classifications", "classification_rejects", "weekly_insights")


async def wrong_key(request, call):
    message = f"Incorrect API key provided: {call.headers.get('Authorization')}. You can find your API key at https://x/keys."
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}, status=401
    )


def _echoing_a_third(refuse):
    """A third of the requests (the same ones every time) get ``refuse(headers, body)``, the rest an answer."""

    async def handler(request, call):
        body = json.dumps(call.body)
        if int(hashlib.sha256(body.encode()).hexdigest(), 16) % 3:
            return web.json_response(completion(content='{"label": "coding"}'))
        return refuse("\n".join(f"{name}: {value}" for name, value in call.headers.items()), body)

    return handler


def _html_500(headers: str, body: str) -> web.Response:
    page = f"<html><body><h1>500 Internal Server Error</h1><pre>{headers}\n\n{body}</pre></body></html>"
    return web.Response(status=500, text=page, content_type="text/html")


def _json_400(headers: str, body: str) -> web.Response:
    message = f"This model's maximum context length is 8192 tokens. Headers: {headers} Body: {body}"
    return web.json_response({"error": {"message": message, "code": "context_length_exceeded"}}, status=400)


ECHOES = {
    "401 echoing the key": wrong_key,
    "500 page echoing headers and body": _echoing_a_third(_html_500),
    "context-length 400 echoing headers and body": _echoing_a_third(_json_400),
}


def _record_text(entry) -> str:
    """An event record as stored, except the row sample of a table that holds conversation text by design
    (``sample`` metadata of ``conversations`` and ``conversations_truncated``, told by their ``messages``
    and ``transcript`` columns: the text, cut to 80 characters a cell)."""
    event = entry.dagster_event
    if event is not None and event.event_type_value in SAMPLED:
        data = event.event_specific_data
        metadata = data.materialization.metadata if event.is_step_materialization else data.metadata
        sample = metadata.get("sample")
        header = str(sample.value).split("\n", 1)[0] if sample is not None else ""
        if " messages " in header or " transcript " in header:
            return serialize_value({k: v for k, v in metadata.items() if k != "sample"})
    return serialize_value(entry)


@pytest.fixture()
def key(monkeypatch):
    value = "sk-proj-" + secrets.token_urlsafe(24)
    monkeypatch.setenv(KEY_ENV, value)
    return value


def _leaks(texts: dict[str, list[str]], key: str, probes: list[str]) -> dict[str, list[str]]:
    """Where the key or any piece of conversation text (as is, or JSON-escaped) shows up, with its context."""
    pieces = [key, *probes, *(json.dumps(p)[1:-1] for p in probes)]
    found = {}
    for where, values in texts.items():
        hits = [v[max(0, v.index(p) - 80) : v.index(p) + 80] for v in values for p in pieces if p in v]
        if hits:
            found[where] = hits[:3]
    return found


@pytest.mark.parametrize("echo", list(ECHOES))
def test_semtel_classify_stores_and_prints_no_key_and_no_conversation(tmp_path, key, figure, echo):
    conversations = landing(tmp_path, n=30)
    probes = conversation_probes(conversations)
    with HandlerServer(ECHOES[echo]) as server:
        endpoints = endpoints_file(tmp_path, {"name": "echo", "base_url": server.base_url, "api_key_env": KEY_ENV})
        done = run(classify_command(conversations, tmp_path / "out", endpoints))
        echoed = sum(key in json.dumps(c.headers) for c in server.calls)
    stored = table_strings(tmp_path / "out")
    logs = {f"{p.parent.name}/_delta_log": [p.read_text()] for p in (tmp_path / "out").glob("*/_delta_log/*.json")}
    key_only = {**{f"table {n}": v for n, v in stored.items()}, **logs}
    leaks = {
        **_leaks({"stdout": [done.stdout], "stderr": [done.stderr]}, key, probes),
        **_leaks({n: v for n, v in key_only.items() if n.split()[-1] in ANSWER_TABLES}, key, probes),
        **_leaks(key_only, key, []),
    }
    figure(
        "3. echoed secrets, semtel classify",
        "key and conversation text in no table, stdout or stderr",
        echo=echo,
        exit_code=done.code,
        requests_carrying_the_key=echoed,
        strings_read=sum(len(v) for v in stored.values()),
        leaks=len(leaks),
    )
    assert echoed > 0 and len(probes) >= 20  # the server did see the key; there was text to leak
    assert done.code in (1, 4), done.stderr[-2000:]
    assert leaks == {}, json.dumps(leaks, indent=1)
    if echo.startswith("context-length"):  # request-specific: error rows are written, and read above
        assert done.summary and done.summary["failed_requests"] > 0, done.stderr[-2000:]  # error rows were written and read


def test_dagster_week_keeps_key_and_conversation_out_of_tables_and_event_log(tmp_path, key, figure, capfd):
    home = tmp_path / "home"
    write = landing(home, n=30)
    probes = conversation_probes(write)
    results = {}
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        for echo, handler in list(ECHOES.items())[:2]:
            with HandlerServer(handler) as server:
                endpoints = endpoints_file(tmp_path, {"name": "echo", "base_url": server.base_url, "api_key_env": KEY_ENV})
                defs = build_definitions(
                    lake=LakeResource(root=str(home / "lake")),
                    settings=PipelineSettings(landing_dir=str(home / "landing"), classifiers=["topic"]),
                    endpoint_pool=EndpointPoolResource(endpoints_file=str(endpoints), give_up_s=5, flush_rows=10),
                )
                result = defs.resolve_job_def("weekly_pipeline").execute_in_process(
                    partition_key=WEEK.isoformat(), instance=instance, raise_on_error=False
                )
                results[echo] = result, sum(key in json.dumps(c.headers) for c in server.calls)
        records = {
            echo: [_record_text(entry) for entry in instance.all_logs(result.run_id)]
            + [serialize_value(instance.get_run_by_id(result.run_id))]
            for echo, (result, _) in results.items()
        }
    storage = {
        str(path.relative_to(tmp_path)): [path.read_bytes().decode("utf-8", "replace")]
        for path in (tmp_path / "dagster").rglob("*")
        if path.is_file()
    }
    out, err = capfd.readouterr()
    stored = table_strings(home / "lake")
    leaks = {
        **_leaks({f"event log of {echo}": values for echo, values in records.items()}, key, probes),
        **_leaks(storage, key, []),  # the files hold the conversation samples too: the key only
        **_leaks({"stdout": [out], "stderr": [err]}, key, probes),
        **_leaks({f"table {n}": v for n, v in stored.items() if n in ANSWER_TABLES}, key, probes),
        **_leaks({f"table {n}": v for n, v in stored.items()}, key, []),
    }
    figure(
        "3. echoed secrets, one Dagster week",
        "key in no table, event record, instance file, stdout or stderr; conversation text in none but the conversation tables and their samples",
        runs={echo: "success" if r.success else "failed" for echo, (r, _) in results.items()},
        requests_carrying_the_key=sum(n for _, n in results.values()),
        event_records=sum(len(v) for v in records.values()),
        instance_files=len(storage),
        error_rows=sum(v.startswith(("gave up", "HTTP")) for v in stored.get("llm_responses", [])),
        leaks=len(leaks),
    )
    assert all(n > 0 for _, n in results.values()) and len(probes) >= 20
    assert not results["401 echoing the key"][0].success  # a wrong key fails the run
    assert any(v.startswith(("gave up", "HTTP")) for v in stored["llm_responses"])  # the echo pages became error rows
    assert leaks == {}, json.dumps(leaks, indent=1)
