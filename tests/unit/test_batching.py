"""Batching strategies: how pairs are grouped into calls, their ids, prompts and the simulator's answers."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.core.classify.parse import answered_pairs, parse_batched, parse_week
from semtel_dagster.core.classify.plan import (
    WALL_PARALLEL,
    WALL_SEQUENTIAL,
    expected_request_ids,
    label_versions,
    local_answer,
    merge_stats,
    plan_requests,
    plan_units,
)
from semtel_dagster.core.classify.prompts import (
    load_classifiers,
    multi_classifier_label_version,
    multi_classifier_version,
    multi_conversation_version,
)
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.requests import request_id
from semtel_dagster.sim.labeler import label_request

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
WEEK = dt.date(2026, 11, 16)
TEXTS = {
    "c1": "User: my python function throws a KeyError, how do I fix the code?",
    "c2": "User: give me a recipe to bake bread with flour and yeast",
    "c3": "User: plan a three day trip itinerary to Rome with hotels",
}


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers(PROMPTS, names=["topic", "satisfaction", "intent"])


def _week():
    ids = sorted(TEXTS)
    clusters = pl.DataFrame(
        {
            "conversation_id": ids,
            "week_start": [WEEK] * 3,
            "representative_id": ids,
            "is_representative": [True] * 3,
            "cluster_size": [1] * 3,
            "method": ["exact"] * 3,
            "similarity": [1.0] * 3,
            "text_hash": ids,
        },
        schema=tables.CONVERSATION_CLUSTERS,
    )
    truncated = pl.DataFrame(
        {
            "conversation_id": ids,
            "week_start": [WEEK] * 3,
            "transcript": [TEXTS[i] for i in ids],
            "tokens_before": [20] * 3,
            "tokens_after": [20] * 3,
            "strategy": ["none"] * 3,
            "tokenizer": ["cl100k"] * 3,
        },
    )
    return clusters, truncated


@pytest.mark.parametrize("strategy,calls", [("single", 9), ("multi_classifier", 3), ("multi_conversation", 6)])
def test_units_cover_every_pair_once(classifiers, strategy, calls):
    units = plan_units(sorted(TEXTS), classifiers, strategy, batch_size=2)
    assert len(units) == calls
    pairs = [(c, n) for u in units for c in u.conversation_ids for n in u.classifiers]
    assert sorted(pairs) == sorted((c, n) for c in TEXTS for n in classifiers)


def test_a_batch_of_one_is_the_single_request(classifiers):
    clusters, _ = _week()
    expected = expected_request_ids(clusters, classifiers, "multi_conversation", batch_size=2)
    last = expected.filter(pl.col("representative_id") == "c3")
    assert (last.get_column("request_id") == last.get_column("single_request_id")).all()
    first = expected.filter(pl.col("representative_id") == "c1", pl.col("classifier") == "topic").row(0, named=True)
    assert first["single_request_id"] == request_id(["c1"], ["topic"], classifiers["topic"].version)
    assert first["request_id"] != first["single_request_id"]


def test_a_preanswered_pair_leaves_only_its_own_unit(classifiers):
    reps = sorted(TEXTS)
    before = plan_units(reps, classifiers, "multi_conversation", batch_size=2)
    after = plan_units(reps, classifiers, "multi_conversation", batch_size=2, preanswered={("c1", "topic")})
    assert [(u.conversation_ids, u.classifiers) for u in after if u not in before] == [(("c2",), ("topic",))]
    assert [(u.conversation_ids, u.classifiers) for u in before if u not in after] == [(("c1", "c2"), ("topic",))]
    # multi_classifier: the representative's call carries its other classifiers, under their own version
    (c1,) = [u for u in plan_units(reps, classifiers, "multi_classifier", 2, {("c1", "topic")}) if u.conversation_ids == ("c1",)]
    assert c1.classifiers == ("satisfaction", "intent")
    assert c1.prompt_version == multi_classifier_version([classifiers["satisfaction"], classifiers["intent"]])
    clusters, _ = _week()
    expected = expected_request_ids(clusters, classifiers, "multi_classifier", preanswered={("c1", "topic")})
    row = expected.filter(pl.col("representative_id") == "c1", pl.col("classifier") == "topic").row(0, named=True)
    assert row["request_id"] == row["single_request_id"] == request_id(["c1"], ["topic"], classifiers["topic"].version)
    assert expected.height == 9


def test_tasks_of_whole_chunks_plan_the_weeks_units(classifiers):
    """What the Spark engine relies on: a task holding any set of whole chunks (the last, short one
    included) cuts exactly the units of the week, pre-answered pairs or not."""
    reps = [f"r{i:02d}" for i in range(23)]  # chunks of 4: 0..4 full, 5 holds the 3 largest ids
    preanswered = {("r05", "topic"), ("r21", "intent"), ("r22", "satisfaction")}
    week = plan_units(reps, classifiers, "multi_conversation", 4, preanswered)
    tasks = [[0, 3, 5], [1, 2], [4]]
    per_task = [
        unit
        for chunks in tasks
        for unit in plan_units(
            [r for i, r in enumerate(reps) if i // 4 in chunks], classifiers, "multi_conversation", 4, preanswered
        )
    ]
    assert sorted(u.request_id for u in per_task) == sorted(u.request_id for u in week)


def test_labels_count_under_every_version_of_the_current_prompt(classifiers):
    versions = label_versions(classifiers)["topic"]
    topic = classifiers["topic"]
    assert versions == {topic.version, multi_conversation_version(topic), multi_classifier_label_version(topic)}
    assert len(set().union(*label_versions(classifiers).values())) == 3 * len(classifiers)


def test_label_versions_are_linear_in_classifiers(classifiers):
    """Sixteen classifiers: three versions each, in milliseconds (all subsets would be 16 * 2^15 digests)."""
    topic = classifiers["topic"]
    many = {f"c{i:02d}": replace(topic, name=f"c{i:02d}", version=f"v{i:02d}") for i in range(16)}
    started = time.perf_counter()
    versions = label_versions(many)
    assert time.perf_counter() - started < 0.05
    assert all(len(v) == 3 for v in versions.values()) and len(set().union(*versions.values())) == 48


def _answered(request) -> dict:
    """The ``llm_responses`` row of a request the simulator's labeler answered."""
    raw_text = json.dumps(label_request(request.messages, request.response_format))
    return {name: None for name in tables.LLM_RESPONSES} | {
        "request_id": request.request_id,
        "week_start": WEEK,
        "conversation_ids": list(request.conversation_ids),
        "classifiers": list(request.classifiers),
        "prompt_name": request.prompt_name,
        "prompt_version": request.prompt_version,
        "model": "m",
        "status": "ok",
        "finish_reason": "stop",
        "raw_text": raw_text,
        "created_at": dt.datetime(2026, 11, 17, tzinfo=dt.UTC),
        "strategy": request.strategy,
    }


def test_a_multi_classifier_label_carries_its_classifiers_version_whoever_shared_the_call(classifiers):
    """The call's id names every classifier in it (reruns resume); each label's version names only its own."""
    clusters, truncated = _week()
    reused = local_answer(
        WEEK,
        "c1",
        "topic",
        classifiers["topic"].version,
        "m",
        {"label": "programming"},
        "label_reuse",
        dt.datetime(2026, 11, 17, tzinfo=dt.UTC),
    )
    weeks = {}
    for preanswered, extra in [(set(), []), ({("c1", "topic")}, [reused])]:
        plan = plan_requests(clusters, truncated, classifiers, set(), strategy="multi_classifier", preanswered=preanswered)
        responses = pl.DataFrame([*extra, *(_answered(r) for r in plan.to_send)], schema=tables.LLM_RESPONSES)
        labels = parse_week(clusters, responses, classifiers, "multi_classifier")[0].filter(pl.col("conversation_id") == "c1")
        decoded = answered_pairs(responses, classifiers).filter(pl.col("representative_id") == "c1")  # next week's view
        assert (
            decoded.sort("classifier")
            .select("classifier", "prompt_version")
            .equals(labels.sort("classifier").select("classifier", "prompt_version"))
        )
        weeks[frozenset(preanswered)] = labels
    alone, shared = weeks.values()
    assert alone.get_column("request_id").n_unique() == 1 and shared.get_column("request_id").n_unique() == 2
    assert set(alone.get_column("request_id")) != set(shared.get_column("request_id"))
    for name in ("satisfaction", "intent"):
        version = multi_classifier_label_version(classifiers[name])
        for labels in (alone, shared):
            assert labels.filter(pl.col("classifier") == name).get_column("prompt_version").to_list() == [version]
        assert version in label_versions(classifiers)[name]


def test_merge_stats_adds_rounds_and_takes_the_slowest_task():
    one = {"requests": 2, "prompt_tokens": 10, "wall_seconds": 1.5, "endpoints": {"a": {"ok": 2}}}
    two = {"requests": 3, "prompt_tokens": 5, "wall_seconds": 2.0, "endpoints": {"a": {"ok": 1}, "b": {"ok": 2}}}
    rounds, tasks = merge_stats([one, two], WALL_SEQUENTIAL), merge_stats([one, two], WALL_PARALLEL)
    assert rounds["wall_seconds"] == 3.5 and tasks["wall_seconds"] == 2.0
    for total in (rounds, tasks):
        assert total["requests"] == 5 and total["prompt_tokens"] == 15
        assert total["endpoints"] == {"a": {"ok": 3}, "b": {"ok": 2}}
    with pytest.raises(ValueError):
        merge_stats([one], "sum")


def test_followups_and_resume(classifiers):
    clusters, truncated = _week()
    plan = plan_requests(clusters, truncated, classifiers, set(), strategy="multi_classifier", followups={("c2", "topic")})
    sent = list(plan.to_send)
    assert plan.sending == len(sent) and [r.strategy for r in sent] == ["multi_classifier"] * 3 + ["followup"]
    answered = {r.request_id for r in sent[:2]}
    again = plan_requests(clusters, truncated, classifiers, answered, strategy="multi_classifier")
    assert again.answered == 2 and again.sending == 1 and len(list(again.to_send)) == 1


@pytest.mark.parametrize("strategy", ["single", "multi_classifier", "multi_conversation"])
@pytest.mark.parametrize("structured", [True, False])
def test_simulator_answers_every_shape_parseably(classifiers, strategy, structured):
    clusters, truncated = _week()
    plan = plan_requests(clusters, truncated, classifiers, set(), strategy=strategy, batch_size=3, structured=structured)
    labels = {}
    for request in plan.to_send:
        assert (request.response_format is not None) == structured
        answer = label_request(request.messages, request.response_format)
        outcome = parse_batched(json.dumps(answer), list(request.conversation_ids), list(request.classifiers), classifiers)
        labels.update({pair: parsed.label for pair, parsed in outcome.items()})
    assert len(labels) == 9
    assert labels[("c1", "topic")] == "programming"
    assert labels[("c2", "topic")] == "cooking_food"
    assert labels[("c3", "topic")] == "travel"


def test_llm_responses_written_before_the_strategy_column_still_work(tmp_path):
    """The `strategy` column is additive: older tables read it as null and accept new rows."""
    from semtel_dagster.core.lake.delta import append, read_weeks

    row = {name: None for name in tables.LLM_RESPONSES} | {"request_id": "r1", "week_start": WEEK, "status": "ok"}
    old_schema = pl.Schema({k: v for k, v in tables.LLM_RESPONSES.items() if k != "strategy"})
    append(str(tmp_path), pl.DataFrame([row], schema=tables.LLM_RESPONSES).drop("strategy"), old_schema)
    append(
        str(tmp_path),
        pl.DataFrame([row | {"request_id": "r2", "strategy": "single"}], schema=tables.LLM_RESPONSES),
        tables.LLM_RESPONSES,
    )
    frame = read_weeks(str(tmp_path), tables.LLM_RESPONSES, [WEEK]).sort("request_id")
    assert frame.get_column("strategy").to_list() == [None, "single"]
