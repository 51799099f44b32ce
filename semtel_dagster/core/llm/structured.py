"""Structured outputs in each server's dialect: one JSON schema, five ways of asking for it.

Requests carry the OpenAI ``response_format`` (``{"type": "json_schema", "json_schema": {...}}``); servers
differ in what they accept. llama.cpp and llama-cpp-python refuse ``json_schema`` (HTTP 500) but enforce
``{"type": "json_object", "schema": ...}`` with a grammar; vLLM also takes ``guided_json`` /
``guided_choice`` as top-level body fields; some servers only know plain JSON mode; some nothing.
"""

from __future__ import annotations

from typing import Literal, get_args

StructuredOutput = Literal["json_schema", "json_object_schema", "json_object", "guided", "none"]
STRUCTURED_OUTPUT_MODES: tuple[StructuredOutput, ...] = get_args(StructuredOutput)


def response_schema(response_format: dict | None) -> dict | None:
    """The JSON schema inside an OpenAI ``json_schema`` response_format (None when there is none)."""
    if not response_format or response_format.get("type") != "json_schema":
        return None
    return (response_format.get("json_schema") or {}).get("schema")


def single_choice(schema: dict | None) -> list[str] | None:
    """The label set when the schema asks for exactly one enum-valued field (a single-label answer)."""
    if not schema:
        return None
    properties = schema.get("properties") or {}
    if len(properties) != 1:
        return None
    (field,) = properties.values()
    enum = field.get("enum") if isinstance(field, dict) else None
    return list(enum) if enum else None


def structured_fields(mode: StructuredOutput, response_format: dict | None) -> dict:
    """The body fields that ask ``mode``'s server for ``response_format``'s JSON (empty: ask for nothing)."""
    schema = response_schema(response_format)
    if response_format is None or mode == "none":
        return {}
    if mode == "json_schema":
        return {"response_format": response_format}
    if mode == "json_object":
        return {"response_format": {"type": "json_object"}}
    if schema is None:  # a response_format without a schema: JSON mode is the closest every dialect has
        return {"response_format": {"type": "json_object"}} if mode == "json_object_schema" else {}
    if mode == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if mode == "guided":
        choices = single_choice(schema)
        return {"guided_choice": choices} if choices is not None else {"guided_json": schema}
    raise ValueError(f"unknown structured_output mode {mode!r}; expected one of {', '.join(STRUCTURED_OUTPUT_MODES)}")
