"""Frames that make cross-table invariants checkable column by column (pure Polars, no GX, no Dagster).

Each function joins a stage's output with what it must account for and adds boolean columns such as
``accounted_for``; a gate then expects those columns to be all true.
"""

from __future__ import annotations

import polars as pl

from semtel_dagster.core.classify import expected_request_ids
from semtel_dagster.core.prompts import Classifier


def covers(ids: pl.Series, produced: pl.DataFrame, key: str = "conversation_id") -> pl.DataFrame:
    """Full join of expected ids with produced rows: ``expected`` and ``produced`` flags per id."""
    expected = pl.DataFrame({key: ids}).unique().with_columns(pl.lit(True).alias("expected"))
    return expected.join(produced.with_columns(pl.lit(True).alias("produced")), on=key, how="full", coalesce=True).with_columns(
        pl.col("expected").fill_null(False), pl.col("produced").fill_null(False)
    )


def representatives_known(clusters: pl.DataFrame) -> pl.DataFrame:
    ids = set(clusters.get_column("conversation_id").to_list())
    return clusters.with_columns(pl.col("representative_id").is_in(sorted(ids)).alias("representative_known"))


def request_coverage(
    clusters: pl.DataFrame,
    responses: pl.DataFrame,
    classifiers: dict[str, Classifier],
    strategy: str = "single",
    batch_size: int = 8,
) -> pl.DataFrame:
    """Every request the week needs, joined with its recorded answer (old prompt versions and follow-ups
    are kept as extra rows)."""
    expected = expected_request_ids(clusters, classifiers, strategy, batch_size).get_column("request_id").unique()
    return covers(expected, responses.select("request_id", "status"), key="request_id")


def label_coverage(
    conversation_ids: pl.Series,
    classifications: pl.DataFrame,
    rejects: pl.DataFrame,
    classifiers: dict[str, Classifier],
) -> pl.DataFrame:
    """conversation x classifier pairs with their outcome (label or reject) and whether the label is in set."""
    expected = pl.DataFrame({"conversation_id": conversation_ids}).join(
        pl.DataFrame({"classifier": list(classifiers)}), how="cross"
    ).with_columns(pl.lit(True).alias("expected"))
    outcomes = pl.concat(
        [
            classifications.select("conversation_id", "classifier", "label", pl.lit("label").alias("outcome")),
            rejects.select("conversation_id", "classifier", pl.lit(None, pl.String).alias("label"), pl.lit("reject").alias("outcome")),
        ]
    )
    label_sets = pl.DataFrame(
        [(name, label) for name, c in classifiers.items() for label in c.labels],
        schema={"classifier": pl.String, "label": pl.String},
        orient="row",
    ).with_columns(pl.lit(True).alias("label_in_set"))
    joined = expected.join(outcomes, on=["conversation_id", "classifier"], how="full", coalesce=True)
    return joined.join(label_sets, on=["classifier", "label"], how="left").with_columns(
        pl.col("expected").fill_null(False),
        (pl.col("label_in_set").fill_null(False) | (pl.col("outcome") == "reject")).alias("label_in_set"),
    )


def insight_totals(insights: pl.DataFrame, classifications: pl.DataFrame) -> pl.DataFrame:
    """Per classifier: do insight counts add up to the labeled conversations, and shares to one?"""
    labeled = classifications.group_by("classifier").agg(pl.len().cast(pl.Int64).alias("labeled"))
    totals = insights.group_by("classifier").agg(
        pl.col("conversations").sum().alias("counted"), pl.col("share").sum().alias("share_total")
    )
    return labeled.join(totals, on="classifier", how="full", coalesce=True).with_columns(
        (pl.col("labeled").fill_null(0) == pl.col("counted").fill_null(0)).alias("counts_match"),
        ((pl.col("share_total").fill_null(0) - 1).abs() < 1e-9).alias("shares_sum_to_one"),
    )
