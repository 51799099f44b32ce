"""Minimum group size (semtel_dagster.core.insights.privacy) on weekly_insights and weekly_crosstabs."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

from semtel_dagster.core.insights.aggregate import PAIR_COUNTS, label_counts, pair_counts, weekly_crosstabs, weekly_insights
from semtel_dagster.core.insights.privacy import SUPPRESSED, hidden_in_crosstab, hidden_in_distribution
from semtel_dagster.core.lake import tables

WEEK = dt.date(2026, 11, 2)
K = 10


def _counts(classifier: str, counts: dict[str, int]) -> pl.DataFrame:
    rows = [(WEEK, classifier, label, n) for label, n in counts.items()]
    return pl.DataFrame(rows, schema=dict(label_counts(pl.DataFrame(schema=tables.CLASSIFICATIONS)).schema), orient="row")


def _published(frame: pl.DataFrame) -> dict[str, tuple]:
    return {
        r["label"]: (r["conversations"], r["suppressed_labels"], r["labeled_conversations"]) for r in frame.iter_rows(named=True)
    }


def test_small_labels_merge_with_the_next_smallest_so_none_can_be_subtracted_out():
    out = weekly_insights(_counts("topic", {"coding": 50, "travel": 30, "law": 3}), K)
    # law alone in the bucket would be total - coding - travel: travel joins it
    assert _published(out) == {"coding": (50, 0, 83), SUPPRESSED: (33, 2, 83)}
    assert out.get_column("share").sum() == pytest.approx(1.0)
    assert out.schema == tables.WEEKLY_INSIGHTS


def test_labels_at_the_minimum_are_published_and_a_week_under_it_publishes_no_count():
    assert _published(weekly_insights(_counts("topic", {"coding": 10, "travel": 12}), K)) == {
        "coding": (10, 0, 22),
        "travel": (12, 0, 22),
    }
    assert _published(weekly_insights(_counts("topic", {"coding": 4, "travel": 3}), K)) == {SUPPRESSED: (None, 2, None)}
    assert _published(weekly_insights(_counts("topic", {"coding": 60, "travel": 2}), 1)) == {
        "coding": (60, 0, 62),
        "travel": (2, 0, 62),
    }


def test_distribution_bucket_reaches_the_minimum():
    counts = {"a": 40, "b": 4, "c": 3, "d": 12}
    hidden = hidden_in_distribution(counts, K)
    assert hidden == {"b", "c", "d"}  # b + c = 7 < 10: the smallest other label joins
    assert sum(counts[label] for label in hidden) >= K


@pytest.mark.parametrize("seed", range(40))
def test_crosstab_never_hides_a_single_cell_of_a_row_or_column(seed):
    rng = random.Random(seed)
    rows, columns = [f"r{i}" for i in range(rng.randint(2, 6))], [f"c{j}" for j in range(rng.randint(2, 6))]
    cells = {(r, c): rng.choice([rng.randint(1, 9), rng.randint(10, 80)]) for r in rows for c in columns if rng.random() < 0.85}
    hidden = hidden_in_crosstab(cells, K)
    assert {cell for cell, n in cells.items() if n < K} <= hidden
    for axis in (0, 1):
        for line in {cell[axis] for cell in cells}:
            members = [cell for cell in cells if cell[axis] == line]
            hid = [cell for cell in members if cell in hidden]
            assert len(hid) != 1 or len(members) == 1, (axis, line, cells, hidden)

    frame = pl.DataFrame(
        [(WEEK, "satisfaction", r, "topic", c, n) for (r, c), n in cells.items()], schema=PAIR_COUNTS, orient="row"
    )
    out = weekly_crosstabs(frame, K)
    assert out.schema == tables.WEEKLY_CROSSTABS
    published = out.get_column("conversations").drop_nulls()
    assert (published >= K).all()
    withheld = out.filter(pl.col("conversations").is_null())
    assert withheld.height <= 1 and withheld.get_column("conversations").sum() == 0
    if withheld.height == 0:
        assert published.sum() == sum(cells.values())  # nothing lost: merged, not dropped
    buckets = out.filter((pl.col("suppressed_cells") > 0) & pl.col("conversations").is_not_null())
    assert (buckets.get_column("suppressed_cells") >= 2).all()  # a published bucket never equals one cell


def test_pair_counts_count_conversations_both_classifiers_labeled():
    rows = [("c1", "satisfaction", "5"), ("c1", "topic", "coding"), ("c2", "satisfaction", "1"), ("c2", "topic", "coding")]
    rows += [("c3", "topic", "travel")]  # satisfaction rejected for c3: not in the cross-tab
    labels = pl.DataFrame([{"conversation_id": c, "week_start": WEEK, "classifier": k, "label": v} for c, k, v in rows])
    out = pair_counts(labels, [("satisfaction", "topic")])
    got = {(r["label_a"], r["label_b"]): r["conversations"] for r in out.iter_rows(named=True)}
    assert got == {("5", "coding"): 1, ("1", "coding"): 1}
    table = weekly_crosstabs(out, 1)
    assert table.get_column("labeled_both").unique().to_list() == [2]
    assert table.get_column("share").sum() == pytest.approx(1.0)
