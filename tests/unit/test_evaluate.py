"""Evaluation metrics (semtel_dagster.core.evaluation.metrics) against hand-computed values."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from semtel_dagster.core.evaluation.metrics import (
    cohen_kappa,
    confusion_matrix,
    jensen_shannon,
    label_drift,
    label_quality,
    macro_f1,
    raw_agreement,
    stratified_sample,
)
from semtel_dagster.core.insights.aggregate import label_counts, weekly_insights


def test_kappa_and_agreement_by_hand():
    # 2x2 table: both yes 20, a yes/b no 5, a no/b yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert raw_agreement(a, b) == pytest.approx(0.7)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == 1.0
    assert cohen_kappa(["x"] * 4, ["x"] * 4) == 1.0
    assert confusion_matrix(a, b, ["yes", "no"]) == [[20, 5], [10, 15]]


def test_jensen_shannon_bounds():
    assert jensen_shannon([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert 0 < jensen_shannon([0.7, 0.3], [0.4, 0.6]) < 1


def test_macro_f1_by_hand():
    truth = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "b"]
    # F1(a) = 2*1/(2+0+1) = 2/3; F1(b) = 2*2/(4+1+0) = 4/5
    assert macro_f1(truth, pred) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert math.isnan(macro_f1([], []))


def test_stratified_sample_is_fixed_and_proportional():
    frame = pl.DataFrame({"conversation_id": [f"c{i}" for i in range(300)], "topic": ["x"] * 200 + ["y"] * 90 + ["z"] * 10})
    first = stratified_sample(frame, "topic", 30, seed=1)
    assert first.equals(stratified_sample(frame, "topic", 30, seed=1))
    counts = dict(first.group_by("topic").len().iter_rows())
    assert counts == {"x": 20, "y": 9, "z": 1}
    assert not first.equals(stratified_sample(frame, "topic", 30, seed=2))


def test_label_quality_and_drift():
    labels = pl.DataFrame({"classifier": ["topic"] * 8 + ["intent"] * 10, "label": ["math"] * 8 + ["asking"] * 10})
    rejects = pl.DataFrame(
        {"classifier": ["topic", "topic"], "reason": ["label 'x' is not in the topic label set", "request failed: HTTP 500"]}
    )
    quality = {r["classifier"]: r for r in label_quality(labels, rejects).iter_rows(named=True)}
    assert quality["topic"]["pairs"] == 10
    assert quality["topic"]["parse_failure_rate"] == pytest.approx(0.1)
    assert quality["topic"]["reject_share"] == pytest.approx(0.2)
    assert quality["intent"]["reject_share"] == 0.0
    previous = pl.DataFrame({"classifier": ["topic"] * 4 + ["intent"] * 2, "label": ["travel"] * 4 + ["asking"] * 2})
    in_week = pl.lit(dt.date(2026, 11, 2)).alias("week_start")  # drift compares two weeks of weekly_insights
    insights, earlier = (weekly_insights(label_counts(frame.with_columns(in_week))) for frame in (labels, previous))
    drift = dict(label_drift(insights, earlier).select("classifier", "js_divergence").iter_rows())
    assert drift == {"intent": 0.0, "topic": pytest.approx(1.0)}
