"""The weekly report's model: movers, drill-down ids and engagement at the minimum group size."""

import datetime as dt

import polars as pl

from semtel_dagster.core.insights.aggregate import label_counts, pair_counts, weekly_crosstabs, weekly_insights
from semtel_dagster.core.insights.privacy import SUPPRESSED
from semtel_dagster.core.insights.report import WEEK_TABLES, ReportInputs, build_report, render_markdown
from semtel_dagster.core.lake import tables

WEEK = dt.date(2026, 11, 16)
BEFORE = WEEK - dt.timedelta(weeks=1)
K = 10


def _labels(week: dt.date, classifier: str, counts: dict[str, int]) -> list[dict]:
    rows, i = [], 0
    for label, n in counts.items():
        for _ in range(n):
            rows.append({"conversation_id": f"{week}-{i:04d}", "week_start": week, "classifier": classifier, "label": label})
            i += 1
    return rows


def _inputs() -> ReportInputs:
    # topic: a jumps 20 -> 40, b falls 50 -> 30; c and d are small, and e joins them in <suppressed> this week
    rows = _labels(BEFORE, "topic", {"a": 20, "b": 50, "e": 12, "c": 5, "d": 5})
    rows += _labels(WEEK, "topic", {"a": 40, "b": 30, "e": 12, "c": 4, "d": 3})
    rows += _labels(BEFORE, "intent", {"ask": 40, "do": 40}) + _labels(WEEK, "intent", {"ask": 12, "do": 65})
    classifications = tables.conform(
        pl.DataFrame(rows).with_columns(
            raw_label=pl.col("label"),
            cleaning=pl.lit("exact"),
            prompt_version=pl.lit("v"),
            model=pl.lit("m"),
            representative_id=pl.col("conversation_id"),
            request_id=pl.col("conversation_id"),
        ),
        tables.CLASSIFICATIONS,
    )
    insights = weekly_insights(label_counts(classifications), K)
    this_week = classifications.filter(pl.col("week_start") == WEEK)
    ids = this_week.filter(pl.col("classifier") == "topic").get_column("conversation_id")
    conversations = pl.DataFrame(
        {
            "conversation_id": ids,
            "week_start": [WEEK] * ids.len(),
            # ratings on every conversation of a, on 9 of b (under the minimum), on all of <suppressed> (19)
            "rating": [5.0] * 40 + [2.0] * 9 + [None] * 21 + [3.0] * 19,
        }
    )
    frames = {name: tables.empty(tables.TABLES[name]) for name in WEEK_TABLES}
    frames["classifications"] = this_week
    frames["conversations"] = tables.conform(
        conversations.with_columns(
            source=pl.lit("t"),
            started_at=pl.lit(dt.datetime(2026, 11, 16, tzinfo=dt.UTC)),
            messages=pl.lit(None, tables.CONVERSATIONS["messages"]),
            n_turns=pl.lit(2),
            n_chars=pl.lit(10),
        ),
        tables.CONVERSATIONS,
    )
    frames["weekly_crosstabs"] = weekly_crosstabs(pair_counts(this_week, [("topic", "intent")]), K)
    frames["ingest_rejects"] = tables.conform(
        pl.DataFrame({"reason": ["broken JSON"] * 12 + ["oversized"] * 11 + ["empty"] * 2 + ["no user"] * 1}).with_columns(
            week_start=pl.lit(WEEK), source=pl.lit("f"), record_ref=pl.lit("f:1"), raw=pl.lit("")
        ),
        tables.INGEST_REJECTS,
    )
    return ReportInputs(WEEK, (BEFORE, WEEK), insights, frames)


def test_movers_are_the_significant_changes_largest_first():
    report = build_report(_inputs(), K)
    assert [(m.classifier, m.label) for m in report.movers][:2] == [("intent", "ask"), ("intent", "do")]
    assert {(m.classifier, m.label) for m in report.movers} == {
        ("intent", "ask"),
        ("intent", "do"),
        ("topic", "a"),
        ("topic", "b"),
    }
    assert report.comparisons == 4  # the <suppressed> bucket is never tested
    markdown = render_markdown(report)
    assert "intent: ask down from 50.0% to 15.6%" in markdown


def test_a_suppressed_cell_shows_no_count_under_the_minimum_and_no_ids():
    report = build_report(_inputs(), K)
    topic = next(d for d in report.distributions if d.classifier == "topic")
    rows = {r.label: r for r in topic.rows}
    assert set(rows) == {"a", "b", SUPPRESSED}  # c (4) and d (3) are under the minimum, e (12) joins them
    assert (rows[SUPPRESSED].conversations, rows[SUPPRESSED].suppressed_labels) == (19, 3)
    assert rows[SUPPRESSED].ids == () and rows[SUPPRESSED].ids_total == 0
    assert rows["a"].ids_total == 40 and len(rows["a"].ids) == 40
    assert set(topic.trend) == {"a", "b"}
    for heatmap in report.heatmaps:
        assert all(n is None or n >= K for row in heatmap.counts for n in row)
        assert all(SUPPRESSED not in cell and total >= K for cell, (_, total) in heatmap.ids.items())


def test_engagement_groups_under_the_minimum_are_left_out():
    report = build_report(_inputs(), K)
    ratings = next(t for t in report.engagement if t.classifier == "topic" and t.metric == "rating")
    assert [(c.label, c.n, c.value) for c in ratings.cells] == [("a", 40, 5.0), (SUPPRESSED, 19, 3.0)]  # b: 9 ratings


def test_reject_reasons_are_suppressed_like_a_distribution():
    report = build_report(_inputs(), K)
    # empty (2) and no user (1) are under the minimum; oversized (11) joins them so neither is total minus the rest
    assert report.quality.ingest_rejects == (("broken JSON", 12), (SUPPRESSED, 14))


def test_charts_without_matplotlib_name_the_eval_extra(monkeypatch):
    import sys

    import pytest

    from semtel_dagster.core.insights.charts import Charts
    from semtel_dagster.extras import MissingExtra

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without the extra sees
    with pytest.raises(MissingExtra, match=r"the weekly report charts needs the 'eval' extra.*semtel\[eval\]"):
        Charts()
