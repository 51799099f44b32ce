"""Cross-table invariant frames (semtel_dagster.checks.invariants)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.checks import invariants
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.lake import tables

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
WEEK = dt.date(2024, 1, 1)


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers(PROMPTS, names=["topic", "satisfaction"])


def test_covers_flags_missing_and_extra_ids():
    produced = pl.DataFrame({"conversation_id": ["a", "b", "z"], "x": [1, 2, 3]})
    frame = invariants.covers(pl.DataFrame({"conversation_id": ["a", "b", "c", "a"]}), produced)
    flags = {r["conversation_id"]: (r["expected"], r["produced"]) for r in frame.iter_rows(named=True)}
    assert flags == {"a": (True, True), "b": (True, True), "c": (True, False), "z": (False, True)}
    assert frame.filter(pl.col("conversation_id") == "a").get_column("x").to_list() == [1]


def test_covers_all_good_and_custom_key():
    frame = invariants.covers(
        pl.DataFrame({"request_id": ["r1", "r2"]}), pl.DataFrame({"request_id": ["r2", "r1"]}), key="request_id"
    )
    assert frame.get_column("expected").all() and frame.get_column("produced").all()
    assert frame.height == 2


def _labels(rows):
    return pl.DataFrame(
        [
            {
                "conversation_id": cid,
                "week_start": WEEK,
                "classifier": clf,
                "label": label,
                "raw_label": label,
                "cleaning": "exact",
                "prompt_version": "v",
                "model": "m",
                "representative_id": cid,
                "request_id": "r",
            }
            for cid, clf, label in rows
        ],
        schema=tables.CLASSIFICATIONS,
    )


def _rejects(rows):
    return pl.DataFrame(
        [
            {"request_id": "r", "week_start": WEEK, "conversation_id": cid, "classifier": clf, "reason": "x", "raw_text": None}
            for cid, clf in rows
        ],
        schema=tables.CLASSIFICATION_REJECTS,
    )


def test_label_coverage(classifiers):
    frame = invariants.label_coverage(
        pl.DataFrame({"conversation_id": ["a", "b", "c"]}),
        _labels(
            [
                ("a", "topic", "math"),
                ("a", "satisfaction", "7"),
                ("b", "topic", "politics"),
                ("b", "satisfaction", "3"),
                ("ghost", "topic", "math"),
            ]
        ),
        _rejects([("c", "topic")]),
        classifiers,
    )
    rows = {(r["conversation_id"], r["classifier"]): r for r in frame.iter_rows(named=True)}
    assert rows[("a", "topic")]["label_in_set"] is True
    assert rows[("a", "satisfaction")]["label_in_set"] is False  # "7" is not a satisfaction label
    assert rows[("b", "topic")]["label_in_set"] is False  # out of set
    assert rows[("b", "satisfaction")]["label_in_set"] is True
    assert rows[("c", "topic")]["outcome"] == "reject" and rows[("c", "topic")]["label_in_set"] is True
    assert rows[("c", "satisfaction")]["outcome"] is None  # neither labeled nor rejected: a gap
    assert rows[("ghost", "topic")]["expected"] is False
    assert all(rows[k]["expected"] for k in rows if k[0] != "ghost")
    assert frame.height == 7


def test_label_coverage_clean_week(classifiers):
    frame = invariants.label_coverage(
        pl.DataFrame({"conversation_id": ["a"]}),
        _labels([("a", "topic", "other")]),
        _rejects([("a", "satisfaction")]),
        classifiers,
    )
    assert frame.get_column("expected").all()
    assert frame.get_column("label_in_set").all()
    assert frame.get_column("outcome").null_count() == 0
    assert frame.select("conversation_id", "classifier").is_unique().all()


def test_insight_totals():
    labels = pl.DataFrame({"classifier": ["topic"] * 3 + ["satisfaction"]})
    insights = pl.DataFrame(
        {"classifier": ["topic", "topic", "satisfaction"], "conversations": [2, 1, 2], "share": [2 / 3, 1 / 3, 1.0]}
    )
    frame = invariants.insight_totals(insights, labels)
    got = {r["classifier"]: (r["counts_match"], r["shares_sum_to_one"]) for r in frame.iter_rows(named=True)}
    assert got == {"topic": (True, True), "satisfaction": (False, True)}


def test_truncation_coverage_flags_budget_and_growth():
    conversations = pl.DataFrame({"conversation_id": ["a", "b", "c"]})
    truncated = pl.DataFrame({"conversation_id": ["a", "b"], "tokens_before": [50, 10], "tokens_after": [50, 30]})
    frame = invariants.truncation_coverage(conversations, truncated, max_tokens=40, slack=2)
    rows = {r["conversation_id"]: (r["produced"], r["within_budget"], r["not_grown"]) for r in frame.iter_rows(named=True)}
    assert rows == {"a": (True, False, True), "b": (True, True, False), "c": (False, None, None)}


def test_representatives_known_is_false_for_unknown_and_missing_representatives():
    clusters = pl.DataFrame({"conversation_id": ["a", "b", "c", "d"], "representative_id": ["a", "a", "zz", None]})
    frame = invariants.representatives_known(clusters)
    assert dict(frame.select("conversation_id", "representative_known").iter_rows()) == {
        "a": True,
        "b": True,
        "c": False,
        "d": False,
    }
