"""Parsing answers into labels and fanning them out (semtel_dagster.core.classify.parse)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.core.classify.parse import (
    CLEAN_EXACT,
    CLEAN_NORMALIZED,
    ParseFailure,
    clean_label,
    parse_answer,
    parse_week,
)
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.requests import STATUS_ERROR, STATUS_OK, request_id

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
WEEK = dt.date(2024, 1, 1)


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers(PROMPTS, names=["topic", "satisfaction"])


@pytest.mark.parametrize(
    "raw,label",
    [
        ('{"label": "math"}', "math"),
        ('  {"label":"math", "why": "numbers"}\n', "math"),
        ('Sure! Here is my answer: {"label": "cooking_food"} Hope that helps.', "cooking_food"),
        ('```json\n{"label": "travel"}\n```', "travel"),
        ('```\n{\n  "label": "science"\n}\n```', "science"),
        ('answer: {"label": "math"', "math"),
        ("{label: math}", "math"),
    ],
)
def test_parse_answer_recovers(classifiers, raw, label):
    assert parse_answer(raw, classifiers["topic"]).label == label


@pytest.mark.parametrize(
    "raw,reason",
    [
        (None, "empty"),
        ("", "empty"),
        ("   \n", "empty"),
        ("I cannot decide", "no JSON"),
        ('{"labels": "math"}', "no `label`"),
        ('["math", "travel"]', "no `label`"),
        ('{"label": null}', "null"),
        ('{"label": "math" "x"', "malformed"),
    ],
)
def test_parse_answer_failures(classifiers, raw, reason):
    with pytest.raises(ParseFailure, match=reason):
        parse_answer(raw, classifiers["topic"])


def test_clean_label(classifiers):
    topic = classifiers["topic"]
    exact = clean_label("programming", topic)
    assert (exact.label, exact.raw_label, exact.cleaning) == ("programming", "programming", CLEAN_EXACT)
    parsed = clean_label("Programming ", topic)
    assert (parsed.label, parsed.raw_label, parsed.cleaning) == ("programming", "Programming ", CLEAN_NORMALIZED)
    assert clean_label("DATA-ANALYSIS", topic).label == "data_analysis"
    assert clean_label("data analysis", topic).label == "data_analysis"
    assert clean_label('"Cooking_Food."', topic).label == "cooking_food"
    assert clean_label("3", classifiers["satisfaction"]).cleaning == CLEAN_EXACT


@pytest.mark.parametrize("raw", ["programmer", "astrology", "", "data", "3", "unknown", "N/A"])
def test_clean_label_rejects_out_of_set(classifiers, raw):
    with pytest.raises(ParseFailure, match="not in the topic label set"):
        clean_label(raw, classifiers["topic"])


def _clusters(mapping: dict[str, str]) -> pl.DataFrame:
    """conversation_id -> representative_id."""
    sizes = {rep: list(mapping.values()).count(rep) for rep in set(mapping.values())}
    return pl.DataFrame(
        [
            {
                "conversation_id": cid,
                "week_start": WEEK,
                "representative_id": rep,
                "is_representative": cid == rep,
                "cluster_size": sizes[rep],
                "method": "exact_hash",
                "similarity": 1.0,
                "text_hash": "h" + rep,
            }
            for cid, rep in mapping.items()
        ],
        schema=tables.CONVERSATION_CLUSTERS,
    )


def _response(classifiers, rep, name, status=STATUS_OK, raw_text=None, error=None, version=None):
    version = version or classifiers[name].version
    return {
        "request_id": request_id([rep], [name], version),
        "week_start": WEEK,
        "conversation_ids": [rep],
        "classifiers": [name],
        "prompt_name": name,
        "prompt_version": version,
        "model": "gpt-4o-mini",
        "endpoint": "sim",
        "status": status,
        "error": error,
        "finish_reason": "stop" if status == STATUS_OK else None,
        "raw_text": raw_text,
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "latency_ms": 1.0,
        "attempts": 1,
        "rate_limited": 0,
        "created_at": dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
    }


def _week(classifiers):
    clusters = _clusters({"a": "a", "a2": "a", "a3": "a", "b": "b", "c": "c", "d": "d", "d2": "d"})
    responses = pl.DataFrame(
        [
            _response(classifiers, "a", "topic", raw_text='{"label": "Programming"}'),
            _response(classifiers, "a", "satisfaction", raw_text='{"label": "4"}'),
            _response(classifiers, "b", "topic", raw_text='{"label": "astrology"}'),  # out of set
            # b satisfaction: missing
            _response(classifiers, "c", "topic", status=STATUS_ERROR, error="HTTP 500 from sim: boom"),
            _response(classifiers, "c", "satisfaction", raw_text="I cannot decide"),
            _response(classifiers, "d", "topic", raw_text='```json\n{"label": "math"}\n```'),
            # answered by an older prompt version: does not count for the current one
            _response(classifiers, "d", "satisfaction", raw_text='{"label": "5"}', version="oldversion00"),
        ],
        schema=tables.LLM_RESPONSES,
    )
    return clusters, responses


def test_parse_week_fan_out_and_reasons(classifiers):
    clusters, responses = _week(classifiers)
    labels, rejects = parse_week(clusters, responses, classifiers)
    assert labels.schema == tables.CLASSIFICATIONS
    assert rejects.schema == tables.CLASSIFICATION_REJECTS

    got = {(r["conversation_id"], r["classifier"]): r for r in labels.iter_rows(named=True)}
    assert {k: v["label"] for k, v in got.items()} == {
        ("a", "topic"): "programming",
        ("a2", "topic"): "programming",
        ("a3", "topic"): "programming",
        ("a", "satisfaction"): "4",
        ("a2", "satisfaction"): "4",
        ("a3", "satisfaction"): "4",
        ("d", "topic"): "math",
        ("d2", "topic"): "math",
    }
    assert got[("a2", "topic")]["representative_id"] == "a"
    assert got[("a2", "topic")]["raw_label"] == "Programming"
    assert got[("a2", "topic")]["cleaning"] == CLEAN_NORMALIZED
    assert got[("a", "satisfaction")]["cleaning"] == CLEAN_EXACT
    assert got[("a", "topic")]["prompt_version"] == classifiers["topic"].version
    assert got[("a", "topic")]["model"] == "gpt-4o-mini"
    assert got[("a3", "topic")]["request_id"] == request_id(["a"], ["topic"], classifiers["topic"].version)

    reasons = {(r["conversation_id"], r["classifier"]): r["reason"] for r in rejects.iter_rows(named=True)}
    assert "not in the topic label set" in reasons[("b", "topic")]
    assert reasons[("b", "satisfaction")] == "no response recorded"
    assert reasons[("c", "topic")] == "request failed: HTTP 500 from sim: boom"
    assert reasons[("c", "satisfaction")] == "no JSON object in answer"
    assert reasons[("d", "satisfaction")] == reasons[("d2", "satisfaction")] == "no response recorded"
    raw = {(r["conversation_id"], r["classifier"]): r["raw_text"] for r in rejects.iter_rows(named=True)}
    assert raw[("c", "satisfaction")] == "I cannot decide"
    assert raw[("b", "satisfaction")] is None
    assert rejects.get_column("request_id").null_count() == 0


def test_parse_week_conservation(classifiers):
    clusters, responses = _week(classifiers)
    labels, rejects = parse_week(clusters, responses, classifiers)
    assert labels.height + rejects.height == clusters.height * len(classifiers)
    pairs = pl.concat([labels.select("conversation_id", "classifier"), rejects.select("conversation_id", "classifier")])
    assert pairs.is_unique().all()
    assert set(pairs.iter_rows()) == {(cid, name) for cid in clusters.get_column("conversation_id") for name in classifiers}
    assert set(labels.get_column("week_start")) | set(rejects.get_column("week_start")) == {WEEK}


def test_parse_week_without_responses(classifiers):
    clusters = _clusters({"x": "x", "y": "x"})
    labels, rejects = parse_week(clusters, pl.DataFrame(schema=tables.LLM_RESPONSES), classifiers)
    assert labels.height == 0
    assert rejects.height == 4
    assert set(rejects.get_column("reason")) == {"no response recorded"}


def test_parse_week_duplicate_responses_keep_conservation(classifiers):
    clusters = _clusters({"x": "x", "y": "x"})
    responses = pl.DataFrame(
        [
            _response(classifiers, "x", "topic", status=STATUS_ERROR, error="HTTP 500"),
            _response(classifiers, "x", "topic", raw_text='{"label": "math"}'),
            _response(classifiers, "x", "satisfaction", raw_text='{"label": "3"}'),
        ],
        schema=tables.LLM_RESPONSES,
    )
    labels, rejects = parse_week(clusters, responses, classifiers)
    assert labels.height + rejects.height == clusters.height * len(classifiers)
