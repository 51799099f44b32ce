"""The simulator's batch API stand-in over HTTP: the OpenAI shapes, the lifecycle, cancel, the token limit."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from sim_dispatch import sim_requests, simulator

from semtel_dagster.core.llm.batch_files import batch_line
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.sim import SimEndpointConfig


def _call(url: str, method: str = "GET", body: dict | None = None, form: bytes | None = None, boundary: str = "") -> dict:
    data = json.dumps(body).encode() if body is not None else form
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}" if form else "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def _upload(base: str, content: bytes) -> str:
    boundary = "semtelboundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return _call(f"{base}/files", "POST", form=form, boundary=boundary)["id"]


def _file(n: int, base: str) -> bytes:
    endpoint = Endpoint(name="a", base_url=base, model="gpt-4o-mini")
    return b"".join(batch_line(r, endpoint).line for r in sim_requests(n))


def test_lifecycle_and_result_lines():
    with simulator(SimEndpointConfig(name="a", batch={"validating_s": 0.1, "completion_s": 0.1, "finalizing_s": 0.1})) as sim:
        base = sim.base_url("a")
        batch = _call(
            f"{base}/batches",
            "POST",
            {
                "input_file_id": _upload(base, _file(3, base)),
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"batch_key": "k"},
            },
        )
        assert batch["status"] == "validating" and batch["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
        seen = [batch["status"]]
        while seen[-1] != "completed":
            time.sleep(0.03)
            status = _call(f"{base}/batches/{batch['id']}")["status"]
            if status != seen[-1]:
                seen.append(status)
        done = _call(f"{base}/batches/{batch['id']}")
        output = urllib.request.urlopen(f"{base}/files/{done['output_file_id']}/content").read().splitlines()
        listed = _call(f"{base}/batches?limit=1")
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert done["request_counts"]["completed"] == 3 and done["error_file_id"] is None and done["completed_at"]
    line = json.loads(output[0])
    assert set(line) == {"id", "custom_id", "response", "error"} and line["response"]["status_code"] == 200
    assert line["response"]["body"]["choices"][0]["message"]["content"] and line["response"]["body"]["usage"]["prompt_tokens"] > 0
    assert listed["data"][0]["metadata"] == {"batch_key": "k"} and listed["has_more"] is False


def test_cancel_and_the_enqueued_token_limit():
    config = SimEndpointConfig(name="a", batch={"validating_s": 5, "finalizing_s": 0.05, "enqueued_token_limit": 60})
    with simulator(config) as sim:
        base = sim.base_url("a")
        create = {"endpoint": "/v1/chat/completions", "completion_window": "24h"}
        first = _call(f"{base}/batches", "POST", {**create, "input_file_id": _upload(base, _file(3, base))})
        refused = _call(f"{base}/batches", "POST", {**create, "input_file_id": _upload(base, _file(3, base))})
        cancelling = _call(f"{base}/batches/{first['id']}/cancel", "POST", {})
        time.sleep(0.1)
        cancelled = _call(f"{base}/batches/{first['id']}")
        try:
            _call(f"{base}/batches/{first['id']}/cancel", "POST", {})
            again = None
        except urllib.error.HTTPError as exc:
            again = json.loads(exc.read())
    assert first["status"] == "validating"
    assert refused["status"] == "failed" and refused["errors"]["data"][0]["code"] == "token_limit_exceeded"
    assert cancelling["status"] == "cancelling" and cancelled["status"] == "cancelled"
    assert again is not None and set(again["error"]) == {"message", "type", "param", "code"}
