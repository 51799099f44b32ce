"""Structured-output modes (semtel_dagster.core.llm.structured) and their use in the dispatch payload."""

from __future__ import annotations

from pathlib import Path

import pytest

from semtel_dagster.core.classify.prompts import load_classifiers, multi_classifier_response_format
from semtel_dagster.core.llm.endpoints import Endpoint, EndpointsFileError, parse_endpoints
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.structured import STRUCTURED_OUTPUT_MODES, single_choice, structured_fields
from semtel_dagster.core.llm.transport import chat_body

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers(PROMPTS, names=["topic", "intent"])


def test_each_mode_in_its_dialect(classifiers):
    topic = classifiers["topic"]
    rf = topic.response_format()
    schema = rf["json_schema"]["schema"]
    assert structured_fields("json_schema", rf) == {"response_format": rf}
    assert structured_fields("json_object_schema", rf) == {"response_format": {"type": "json_object", "schema": schema}}
    assert structured_fields("json_object", rf) == {"response_format": {"type": "json_object"}}
    assert structured_fields("guided", rf) == {"guided_choice": list(topic.labels)}
    assert structured_fields("none", rf) == {}


def test_guided_json_for_several_fields(classifiers):
    rf = multi_classifier_response_format(list(classifiers.values()))
    fields = structured_fields("guided", rf)
    assert fields == {"guided_json": rf["json_schema"]["schema"]}
    assert set(fields["guided_json"]["properties"]) == {"topic", "intent"}


def test_no_response_format_asks_nothing():
    for mode in STRUCTURED_OUTPUT_MODES:
        assert structured_fields(mode, None) == {}


def test_single_choice_only_for_one_enum_field():
    assert single_choice({"properties": {"label": {"type": "string", "enum": ["a", "b"]}}}) == ["a", "b"]
    assert single_choice({"properties": {"label": {"type": "string"}}}) is None
    assert single_choice({"properties": {"a": {"enum": ["x"]}, "b": {"enum": ["y"]}}}) is None
    assert single_choice(None) is None


def test_endpoint_mode_default_and_validation():
    base = {"name": "a", "base_url": "http://h/v1", "model": "m"}
    (endpoint,) = parse_endpoints({"endpoints": [base]}).endpoints
    assert endpoint.structured_output == "json_schema"
    (endpoint,) = parse_endpoints({"endpoints": [{**base, "structured_output": "json_object_schema"}]}).endpoints
    assert endpoint.structured_output == "json_object_schema"
    with pytest.raises(EndpointsFileError, match=r"endpoints\.0\.structured_output"):
        parse_endpoints({"endpoints": [{**base, "structured_output": "grammar"}]})
    with pytest.raises(EndpointsFileError, match="replaced by structured_output"):
        parse_endpoints({"endpoints": [{**base, "structured_outputs": False}]})


@pytest.mark.parametrize("mode", STRUCTURED_OUTPUT_MODES)
def test_payload_follows_the_endpoint_mode(classifiers, mode):
    topic = classifiers["topic"]
    request = LLMRequest(
        request_id="r",
        week_start=None,
        conversation_ids=("c",),
        classifiers=("topic",),
        prompt_name="topic",
        prompt_version=topic.version,
        messages=topic.messages("User: hi"),
        response_format=topic.response_format(),
        max_tokens=topic.max_tokens,
        temperature=0.0,
        prompt_tokens=100,
    )
    endpoint = Endpoint(name="a", base_url="http://h/v1", model="m", structured_output=mode)
    payload = chat_body(request, endpoint)
    assert payload["model"] == "m" and payload["messages"] == request.messages
    assert {k: v for k, v in payload.items() if k not in ("model", "messages", "max_tokens", "temperature")} == (
        structured_fields(mode, request.response_format)
    )
