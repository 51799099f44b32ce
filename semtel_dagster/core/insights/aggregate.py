"""Weekly insights and cross-tabs: how many conversations carry each label (or pair of labels).

Engines count (``label_counts``, ``pair_counts``: small frames whatever the week's size); the
published tables are made from the counts here, where every cell goes through the minimum group
size (``core.insights.privacy``).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from semtel_dagster.core.insights.privacy import SUPPRESSED, hidden_in_crosstab, hidden_in_distribution
from semtel_dagster.core.lake import tables

LABEL_COUNTS = pl.Schema({"week_start": pl.Date, "classifier": pl.String, "label": pl.String, "conversations": pl.Int64})
PAIR_COUNTS = pl.Schema(list(tables.WEEKLY_CROSSTABS.items())[:6])  # week, the two classifiers and labels, count
_MERGED = {"suppressed_labels": pl.Int64}  # labels merged into a row: 0 for a label's own row
# Default cross-tabs: what satisfaction, expertise and intent look like per topic, and how complex knowledge work is.
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("satisfaction", "topic"),
    ("user_expertise", "topic"),
    ("task_complexity", "knowledge_work"),
    ("intent", "topic"),
)


def label_counts(classifications: pl.DataFrame) -> pl.DataFrame:
    """Conversations per week, classifier and label."""
    counts = classifications.group_by("week_start", "classifier", "label").agg(pl.len().alias("conversations"))
    return tables.conform(counts, LABEL_COUNTS)


def pair_counts(classifications: pl.DataFrame, pairs: Sequence[tuple[str, str]]) -> pl.DataFrame:
    """Conversations per week and pair of labels, for each (classifier A, classifier B) pair: a
    conversation counts where both classifiers labeled it."""
    labels = classifications.select("conversation_id", "week_start", "classifier", "label")
    parts = []
    for a, b in pairs:
        left = labels.filter(pl.col("classifier") == a).rename({"classifier": "classifier_a", "label": "label_a"})
        right = labels.filter(pl.col("classifier") == b).rename({"classifier": "classifier_b", "label": "label_b"})
        both = left.join(right, on=["conversation_id", "week_start"])
        parts.append(both.group_by(*PAIR_COUNTS.names()[:-1]).agg(pl.len().alias("conversations")))
    return tables.conform(pl.concat(parts) if parts else tables.empty(PAIR_COUNTS), PAIR_COUNTS)


def weekly_insights(counts: pl.DataFrame, min_group_size: int = 1) -> pl.DataFrame:
    """Conversations and share per label, share over the conversations the classifier labeled; labels
    under ``min_group_size`` are merged into one ``<suppressed>`` row per classifier."""
    rows: list[tuple] = []
    for (week, classifier), group in counts.group_by("week_start", "classifier"):
        by_label = dict(group.select("label", "conversations").iter_rows())
        total = sum(by_label.values())
        hidden = hidden_in_distribution(by_label, min_group_size)
        rows += [(week, classifier, label, n, 0, total) for label, n in by_label.items() if label not in hidden]
        if hidden:
            merged = sum(by_label[label] for label in hidden)
            published = merged >= min_group_size  # under it, every label is hidden and so is the total
            rows.append((week, classifier, SUPPRESSED, merged if published else None, len(hidden), total if published else None))
    frame = pl.DataFrame(rows, schema={**LABEL_COUNTS, **_MERGED, "labeled_conversations": pl.Int64}, orient="row")
    frame = frame.with_columns(share=pl.col("conversations") / pl.col("labeled_conversations"))
    ordered = frame.sort(
        "week_start", "classifier", "conversations", "label", descending=[False, False, True, False], nulls_last=True
    )
    return tables.conform(ordered, tables.WEEKLY_INSIGHTS)


def weekly_crosstabs(counts: pl.DataFrame, min_group_size: int = 1) -> pl.DataFrame:
    """Conversations and share per pair of labels (share over the conversations both classifiers
    labeled). Hidden cells (``privacy.hidden_in_crosstab``) of a row are merged into that row's
    ``<suppressed>`` column; rows whose hidden cells are one cell or under the minimum share one
    ``<suppressed>`` x ``<suppressed>`` cell, withheld (null) unless it protects its cells too."""
    rows: list[tuple] = []
    keys = ("week_start", "classifier_a", "classifier_b")
    for (week, a, b), group in counts.group_by(*keys):
        cells = {(la, lb): n for la, lb, n in group.select("label_a", "label_b", "conversations").iter_rows()}
        total = sum(cells.values())
        hidden = hidden_in_crosstab(cells, min_group_size)
        out = [(la, lb, n, 0) for (la, lb), n in cells.items() if (la, lb) not in hidden]
        per_row: dict[str, list[int]] = {}
        for la, lb in hidden:
            per_row.setdefault(la, []).append(cells[(la, lb)])
        own = {la: merged for la, merged in per_row.items() if _protects(merged, min_group_size)}
        out += [(la, SUPPRESSED, sum(merged), len(merged)) for la, merged in own.items()]
        rest = [n for la, merged in per_row.items() if la not in own for n in merged]
        if rest:
            out.append((SUPPRESSED, SUPPRESSED, sum(rest) if _protects(rest, min_group_size) else None, len(rest)))
        stated = total if total >= min_group_size else None
        rows += [(week, a, la, b, lb, n, cells_merged, stated) for la, lb, n, cells_merged in out]
    frame = pl.DataFrame(rows, schema={**PAIR_COUNTS, "suppressed_cells": pl.Int64, "labeled_both": pl.Int64}, orient="row")
    frame = frame.with_columns(share=pl.col("conversations") / pl.col("labeled_both"))
    ordered = frame.sort(
        "week_start", "classifier_a", "classifier_b", "label_a", "conversations", descending=[False] * 4 + [True], nulls_last=True
    )
    return tables.conform(ordered, tables.WEEKLY_CROSSTABS)


def _protects(merged: list[int], min_group_size: int) -> bool:
    """A bucket may publish its count when it reveals no cell: two or more of them, at the minimum together."""
    return len(merged) >= 2 and sum(merged) >= min_group_size
