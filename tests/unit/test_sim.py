"""Tests of the local LLM endpoint simulator (real HTTP, no mocks)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread, label_request
from semtel_dagster.sim.server import format_reset

SAT_LABELS = ["1", "2", "3", "4", "5"]
SAT_SYSTEM = """You are a careful annotator. Rate how satisfied the user is with the assistant.

Labels:
- 1: Very dissatisfied. The user is angry or frustrated, says the answer is wrong, useless or does not work.
- 2: Dissatisfied. The user complains the answer is incorrect, confusing or unhelpful.
- 3: Neutral. No clear satisfaction or dissatisfaction; plain follow-up questions.
- 4: Satisfied. The user thanks the assistant or says the answer helps or works.
- 5: Very satisfied. The user is delighted, says the answer is perfect, amazing, exactly right, thank you so much.

Answer with JSON: {"label": "<one label>"}.
"""

TOPIC_LABELS = ["programming", "cooking_food", "other"]
TOPIC_SYSTEM = """Decide the primary topic of the conversation.

Labels:
- programming: Writing, debugging or explaining software code, programming languages, Python, functions, APIs and SQL.
- cooking_food: Recipes, cooking, baking, ingredients, meal planning and food.
- other: Anything else, including greetings.
"""


def _rf(labels: list[str]) -> dict:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "classification",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"label": {"type": "string", "enum": labels}},
                "required": ["label"],
                "additionalProperties": False,
            },
        },
    }


def _msgs(system: str, transcript: str) -> list[dict]:
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "text", "text": "Conversation:\n" + transcript}]},
    ]


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(
        endpoints=[
            SimEndpointConfig(name="fast", model="gpt-4o-mini", latency_ms=1.0),
            SimEndpointConfig(name="rpm3", model="gpt-4o", rpm=3, latency_ms=0.0),
            SimEndpointConfig(name="tpm", model="llama-3", tpm=400, tpm_interval_s=None, latency_ms=0.0),  # one sliding minute
        ]
    )
    with SimulatorThread(cfg) as s:
        yield s


def _client(sim: SimulatorThread, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url(name), api_key="sim-key", max_retries=0, timeout=10)


def _label(client: openai.OpenAI, system: str, labels: list[str], transcript: str) -> str:
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=_msgs(system, transcript),
        response_format=_rf(labels),
        max_tokens=24,
        temperature=0,
    )
    return json.loads(r.choices[0].message.content)["label"]


def _stats(sim: SimulatorThread) -> dict:
    return sim.stats()["endpoints"]


def test_shape_usage_and_determinism(sim):
    c = _client(sim, "fast")
    transcript = "User: my python function throws a KeyError\nAssistant: check the dict keys"
    kw = dict(
        model="gpt-4o-mini",
        messages=_msgs(TOPIC_SYSTEM, transcript),
        response_format=_rf(TOPIC_LABELS),
        max_tokens=24,
        temperature=0,
    )
    r1 = c.chat.completions.create(**kw)
    r2 = c.chat.completions.create(**kw)
    assert r1.object == "chat.completion"
    assert r1.model == "gpt-4o-mini"
    assert r1.id.startswith("chatcmpl-")
    ch = r1.choices[0]
    assert ch.finish_reason == "stop" and ch.message.role == "assistant"
    assert json.loads(ch.message.content) == {"label": "programming"}
    assert r1.choices[0].message.content == r2.choices[0].message.content
    u = r1.usage
    assert u.prompt_tokens > 50 and 0 < u.completion_tokens <= 24
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert r2.usage.prompt_tokens == u.prompt_tokens


def test_satisfaction_labels(sim):
    c = _client(sim, "fast")
    low = _label(
        c,
        SAT_SYSTEM,
        SAT_LABELS,
        "User: how do I reset my router?\nAssistant: Hold the button for 10 seconds.\nUser: this is wrong and useless",
    )
    high = _label(
        c,
        SAT_SYSTEM,
        SAT_LABELS,
        "User: how do I reset my router?\nAssistant: Hold the button for 10 seconds.\nUser: perfect, thank you so much, amazing",
    )
    neutral = _label(c, SAT_SYSTEM, SAT_LABELS, "User: zzz qqq\nAssistant: xyzzy")
    assert low in ("1", "2")
    assert high in ("4", "5")
    assert neutral == "3"  # nothing matches: median of numeric labels


def test_topic_labels(sim):
    c = _client(sim, "fast")
    assert (
        _label(c, TOPIC_SYSTEM, TOPIC_LABELS, "User: How do I debug this Python code? The function returns None.")
        == "programming"
    )
    assert (
        _label(
            c,
            TOPIC_SYSTEM,
            TOPIC_LABELS,
            "User: Give me a recipe for baking bread with few ingredients.\nAssistant: Sure, here is a simple recipe.",
        )
        == "cooking_food"
    )
    assert _label(c, TOPIC_SYSTEM, TOPIC_LABELS, "User: blorp") == "other"


def test_assistant_turns_weigh_less():
    # assistant talks about code a lot, the user only about cooking
    transcript = "User: what should I cook with eggs?\nAssistant: python code function programming API"
    assert label_request(_msgs(TOPIC_SYSTEM, transcript), _rf(TOPIC_LABELS)) == {"label": "cooking_food"}


def test_label_set_from_prompt_without_schema():
    msgs = _msgs(TOPIC_SYSTEM, "User: a recipe for pancakes please")
    assert label_request(msgs, None) == {"label": "cooking_food"}
    assert label_request(msgs, {"type": "json_object"}) == {"label": "cooking_food"}


def test_batched_multi_classifier_schema():
    system = TOPIC_SYSTEM.replace("Labels:", "Topic labels:") + "\nSatisfaction labels:\n" + SAT_SYSTEM.split("Labels:\n")[1]
    rf = {
        "type": "json_schema",
        "json_schema": {
            "name": "multi",
            "schema": {
                "type": "object",
                "properties": {"topic": {"enum": TOPIC_LABELS}, "satisfaction": {"enum": SAT_LABELS}},
            },
        },
    }
    out = label_request(_msgs(system, "User: fix my python code\nAssistant: done\nUser: perfect, amazing, thank you"), rf)
    assert out["topic"] == "programming"
    assert out["satisfaction"] in ("4", "5")


def test_rpm_limit_429(sim):
    c = _client(sim, "rpm3")
    for _ in range(3):
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as ei:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    h = ei.value.response.headers
    assert int(h["retry-after"]) >= 1 and int(h["retry-after-ms"]) >= 1
    assert h["x-ratelimit-limit-requests"] == "3"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    body = ei.value.response.json()
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limit_exceeded"
    st = _stats(sim)["rpm3"]
    assert st["requests"] == 3 and st["rate_limited"] == 1


def test_tpm_limit_429_and_stats(sim):
    c = _client(sim, "tpm")
    msgs = [{"role": "user", "content": "hello there"}]
    raw = c.chat.completions.with_raw_response.create(model="llama-3", messages=msgs, max_tokens=150)
    r = raw.parse()
    assert raw.headers["x-ratelimit-limit-tokens"] == "400"
    charged = r.usage.prompt_tokens + 150
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) == 400 - charged
    c.chat.completions.create(model="llama-3", messages=msgs, max_tokens=150)
    with pytest.raises(openai.RateLimitError) as ei:  # 3 * ~160 > 400
        c.chat.completions.create(model="llama-3", messages=msgs, max_tokens=150)
    assert int(ei.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError):  # cost alone above the limit
        c.chat.completions.create(model="llama-3", messages=msgs, max_tokens=1000)
    st = _stats(sim)["tpm"]
    assert st["requests"] == 2 and st["rate_limited"] == 2
    assert st["prompt_tokens"] == 2 * r.usage.prompt_tokens
    assert st["charged_tokens"] == st["window_tokens"] == 2 * charged
    assert st["tokens_per_minute"][0]["charged_tokens"] == 2 * charged
    # reset clears counters and the window
    sim.reset()
    st = _stats(sim)["tpm"]
    assert st["requests"] == 0 and st["window_tokens"] == 0 and st["rate_limited"] == 0
    c.chat.completions.create(model="llama-3", messages=msgs, max_tokens=150)


def test_models(sim):
    assert [m.id for m in _client(sim, "rpm3").models.list().data] == ["gpt-4o"]
    with urllib.request.urlopen(sim.url + "/v1/models") as r:
        ids = [m["id"] for m in json.loads(r.read())["data"]]
    assert ids == ["gpt-4o-mini", "gpt-4o", "llama-3"]


def _post(url: str, data: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_errors(sim):
    base = sim.base_url("fast")
    code, body = _post(base + "/chat/completions", b"{not json")
    assert code == 400 and body["error"]["type"] == "invalid_request_error"
    code, body = _post(base + "/chat/completions", b'{"model": "x"}')
    assert code == 400 and "messages" in body["error"]["message"]
    code, body = _post(sim.url + "/nope/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}')
    assert code == 404 and "error" in body
    # several endpoints: the unprefixed route is ambiguous
    code, _ = _post(sim.url + "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}')
    assert code == 404


def test_single_endpoint_unprefixed_and_yaml(tmp_path):
    p = tmp_path / "sim.yaml"
    p.write_text("endpoints:\n  - name: only\n    model: m1\n    latency_ms: 0\n    jitter: 0.5\n    seed: 3\n")
    cfg = SimConfig.from_yaml(p)
    assert cfg.endpoints[0].name == "only" and cfg.port == 0
    with SimulatorThread(cfg) as s:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="k", max_retries=0)
        r = c.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
        assert r.model == "m1" and r.choices[0].finish_reason == "stop"
        assert s.base_url() == f"{s.url}/only/v1"


def test_format_reset():
    assert format_reset(0.25) == "250ms"
    assert format_reset(1.0) == "1s"
    assert format_reset(360.0) == "6m0s"
    assert format_reset(1.5) == "1.5s"
