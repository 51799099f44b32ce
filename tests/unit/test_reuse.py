"""Which stored labels may answer this week's conversations (pure, no I/O)."""

import datetime as dt
import json
from pathlib import Path

import polars as pl

from semtel_dagster.core.classify.prompts import load_classifiers, multi_classifier_label_version
from semtel_dagster.core.classify.reuse import ENDPOINT, candidates, reused_answers
from semtel_dagster.core.llm.requests import request_id

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
LAST, THIS = dt.date(2026, 11, 9), dt.date(2026, 11, 16)


def _history(rows):
    clusters = pl.DataFrame(
        {"conversation_id": [r[0] for r in rows], "week_start": [r[2] for r in rows], "text_hash": [r[1] for r in rows]}
    )
    labels = pl.DataFrame(
        [(r[0], r[2], "topic", r[3], r[4], r[5]) for r in rows],
        schema=["conversation_id", "week_start", "classifier", "label", "prompt_version", "model"],
        orient="row",
    )
    return clusters, labels


def test_only_labels_of_the_current_prompt_version_and_a_pool_model_are_reused():
    classifiers = load_classifiers(PROMPTS, ["topic"])
    version = classifiers["topic"].version
    this_week = pl.DataFrame(
        {"conversation_id": ["n1", "n2", "n3", "n4"], "text_hash": ["h1", "h2", "h3", "h4"], "is_representative": [True] * 4}
    )
    history = _history(
        [
            ("o1", "h1", LAST, "math", version, "gpt"),  # reusable
            ("o2", "h2", LAST, "math", "old-version", "gpt"),  # prompt changed since
            ("o3", "h3", LAST, "math", version, "retired-model"),  # model no longer in the pool
            ("o4", "h4", LAST - dt.timedelta(weeks=1), "travel", version, "gpt"),
            ("o5", "h4", LAST, "science", version, "gpt"),  # the most recent week wins
        ]
    )
    found = candidates(this_week, *history)
    rows = reused_answers(found, classifiers, {"gpt"}, THIS)
    got = {r["conversation_ids"][0]: json.loads(r["raw_text"])["label"] for r in rows.iter_rows(named=True)}
    assert got == {"n1": "math", "n4": "science"}
    assert set(rows["endpoint"]) == {ENDPOINT} and set(rows["model"]) == {"gpt"}
    assert set(rows["request_id"]) == {request_id(["n1"], ["topic"], version), request_id(["n4"], ["topic"], version)}
    again = reused_answers(found, classifiers, {"gpt"}, THIS, answered_ids=set(rows["request_id"]))
    assert again.height == 0  # a rerun adds nothing


def test_labels_of_a_multi_classifier_call_are_reused_whoever_shared_it():
    """A label given beside any other classifiers carries one version, so next week accepts it."""
    classifiers = load_classifiers(PROMPTS, ["topic", "intent"])
    this_week = pl.DataFrame({"conversation_id": ["n1"], "text_hash": ["h1"], "is_representative": [True]})
    batched = multi_classifier_label_version(classifiers["topic"])
    found = candidates(this_week, *_history([("o1", "h1", LAST, "math", batched, "gpt")]))
    rows = reused_answers(found, classifiers, {"gpt"}, THIS)
    assert [json.loads(r["raw_text"])["label"] for r in rows.iter_rows(named=True)] == ["math"]
    assert rows["request_id"].to_list() == [request_id(["n1"], ["topic"], classifiers["topic"].version)]
