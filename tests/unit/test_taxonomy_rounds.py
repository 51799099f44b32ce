"""Rounds stop when the label names settle (or at the budget); an unusable answer keeps the labels."""

import json

import polars as pl
import pytest

from semtel_dagster.core.taxonomy.labels import Label, parse_labels, settled, slug, tidy, with_other
from semtel_dagster.core.taxonomy.rounds import grow, minibatches, review
from semtel_dagster.core.taxonomy.tasks import SCHEMA_PREFIX, load_tasks

PROMPTS = load_tasks()


def _summaries(n: int) -> pl.DataFrame:
    return pl.DataFrame({"conversation_id": [f"c{i:03d}" for i in range(n)], "summary": [f"summary {i}" for i in range(n)]})


def _answer(*names: str) -> str:
    return json.dumps({"labels": [{"name": n, "definition": f"About {n}.", "example": n} for n in names]})


class Scripted:
    """Answers the rounds in order from a script (what a model said, replayed), counting the requests."""

    def __init__(self, answers):
        self.answers, self.steps = list(answers), []

    def __call__(self, requests, step):
        self.steps.append(step)
        (request,) = requests
        assert request.response_format["json_schema"]["name"] == SCHEMA_PREFIX + step
        return {request.request_id: self.answers.pop(0)} if self.answers else {}


def test_settled_needs_the_same_names_for_patience_rounds_running():
    assert not settled([("a", "b"), ("a", "b")], patience=2)
    assert settled([("a", "b"), ("b", "a"), ("a", "b")], patience=2)
    assert not settled([("a",), ("a", "b"), ("a", "b")], patience=2)
    assert settled([("x",), ("a", "b"), ("a", "b")], patience=1)


def test_rounds_stop_once_names_are_unchanged_two_rounds_running():
    ask = Scripted([_answer("a", "b"), _answer("a", "c"), _answer("c", "a"), _answer("a", "c"), _answer("z")])
    evolution = grow(minibatches(_summaries(200), 20, 1), PROMPTS, 5, ask, lambda: False, max_rounds=12)
    assert ask.steps == ["generate", "update", "update", "update"]
    assert [r.added for r in evolution.rounds] == [("a", "b"), ("c",), (), ()]
    assert evolution.rounds[1].removed == ("b",)
    assert "unchanged for 2 rounds" in evolution.stopped and [x.name for x in evolution.labels] == ["a", "c"]


def test_a_bad_answer_keeps_the_labels_and_the_budget_stops_the_rounds():
    ask = Scripted([_answer("a", "b"), "I cannot help with that", _answer("a", "b", "c")])
    spent = iter([False, False, True])
    evolution = grow(minibatches(_summaries(100), 10, 1), PROMPTS, 5, ask, lambda: next(spent), max_rounds=12)
    assert len(evolution.rounds) == 3 and "labels kept" in evolution.rounds[1].note
    assert evolution.rounds[1].names == ("a", "b") and evolution.stopped == "budget reached after round 3"


def test_review_caps_the_size_and_records_merges():
    grown = grow(minibatches(_summaries(20), 20, 1), PROMPTS, 6, Scripted([_answer("a", "b", "c")]), lambda: False, max_rounds=1)
    answer = json.loads(_answer("a", "b_c", "d", "e"))
    answer |= {"merged": [{"from": ["b", "c"], "into": "b_c"}], "split": [{"from": "a", "into": ["a1", "a2"]}]}
    reviewed = review(grown, PROMPTS["review"], 3, Scripted([json.dumps(answer)]), lambda: False)
    assert [x.name for x in reviewed.labels] == ["a", "b_c", "d"]
    assert reviewed.merged == [{"from": ["b", "c"], "into": "b_c"}] and reviewed.split == [{"from": "a", "into": ["a1", "a2"]}]


def test_label_names_are_slugged_deduplicated_and_other_comes_last_once():
    labels = parse_labels(_answer("Travel Planning", "travel-planning", "Other", "Code & Data"))
    assert [x.name for x in labels] == ["travel_planning", "code_data"]
    assert slug("  Big Data?? ") == "big_data"
    final = with_other(tidy([Label("a", "A."), Label("other", "x")]))
    assert [x.name for x in final] == ["a", "other"]


def test_minibatches_are_seeded_and_cover_every_summary_once():
    batches = minibatches(_summaries(53), 10, 3)
    assert [b.height for b in batches] == [10, 10, 10, 10, 10, 3]
    ids = [cid for b in batches for cid in b["conversation_id"]]
    assert sorted(ids) == sorted(_summaries(53)["conversation_id"]) and ids != sorted(ids)
    with pytest.raises(ValueError):
        minibatches(_summaries(3), 0, 1)
