"""Weekly insights (semtel_dagster.core.insights.aggregate)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from semtel_dagster.core.insights.aggregate import label_counts, weekly_insights
from semtel_dagster.core.lake import tables

W1 = dt.date(2024, 1, 1)
W2 = dt.date(2024, 1, 8)


def _labels(rows):
    return pl.DataFrame(
        [
            {
                "conversation_id": cid,
                "week_start": week,
                "classifier": clf,
                "label": label,
                "raw_label": label,
                "cleaning": "exact",
                "prompt_version": "v",
                "model": "m",
                "representative_id": cid,
                "request_id": "r" + cid + clf,
            }
            for cid, week, clf, label in rows
        ],
        schema=tables.CLASSIFICATIONS,
    )


def test_weekly_insights_counts_and_shares():
    rows = [(f"t{i}", W1, "topic", "math") for i in range(3)]
    rows += [("t3", W1, "topic", "travel")]
    rows += [(f"s{i}", W1, "satisfaction", "5") for i in range(2)]
    rows += [("w0", W2, "topic", "travel")]
    out = weekly_insights(label_counts(_labels(rows)))
    assert out.schema == tables.WEEKLY_INSIGHTS
    got = {
        (r["week_start"], r["classifier"], r["label"]): (r["conversations"], r["share"], r["labeled_conversations"])
        for r in out.iter_rows(named=True)
    }
    assert got == {
        (W1, "topic", "math"): (3, 0.75, 4),
        (W1, "topic", "travel"): (1, 0.25, 4),
        (W1, "satisfaction", "5"): (2, 1.0, 2),
        (W2, "topic", "travel"): (1, 1.0, 1),
    }
    shares = out.group_by("week_start", "classifier").agg(pl.col("share").sum(), pl.col("conversations").sum())
    for _, _, share, _count in shares.iter_rows():
        assert abs(share - 1.0) < 1e-12
    assert out.get_column("conversations").sum() == len(rows)
    # most frequent label first within a week and classifier
    w1_topic = out.filter((pl.col("week_start") == W1) & (pl.col("classifier") == "topic"))
    assert w1_topic.get_column("label").to_list() == ["math", "travel"]


def test_weekly_insights_empty():
    out = weekly_insights(label_counts(_labels([])))
    assert out.height == 0 and out.schema == tables.WEEKLY_INSIGHTS
