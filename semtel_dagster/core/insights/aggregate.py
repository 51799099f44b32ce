"""Weekly insights: how many conversations carry each label, per classifier."""

from __future__ import annotations

import polars as pl

from semtel_dagster.core.lake import tables


def weekly_insights(classifications: pl.DataFrame) -> pl.DataFrame:
    """Conversations and share per label; share is over the conversations labeled by that classifier."""
    counts = (
        classifications.group_by("week_start", "classifier", "label")
        .agg(pl.len().cast(pl.Int64).alias("conversations"))
        .with_columns(pl.col("conversations").sum().over("week_start", "classifier").alias("labeled_conversations"))
        .with_columns((pl.col("conversations") / pl.col("labeled_conversations")).alias("share"))
        .sort("week_start", "classifier", "conversations", "label", descending=[False, False, True, False])
    )
    return tables.conform(counts, tables.WEEKLY_INSIGHTS)
