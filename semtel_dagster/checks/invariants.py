"""Frames that make cross-table invariants checkable column by column (no GX, no Dagster).

Each function joins a stage's output with what it must account for and adds boolean columns such as
``expected``/``produced``; a gate then expects those columns to be all true. Written once with
narwhals (``core.frames``): given Polars frames they return a Polars frame, given Spark DataFrames a
lazy Spark DataFrame whose joins and group-bys run on the cluster, so GX's Spark engine validates it
without the week ever reaching the driver.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import narwhals.stable.v2 as nw
import polars as pl

from semtel_dagster.core.classify.plan import batch_width, expected_request_ids, preanswered_pairs
from semtel_dagster.core.classify.prompts import Classifier
from semtel_dagster.core.lake import tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame

# both sides of a join are eager, or both lazy
FrameT = TypeVar("FrameT", nw.DataFrame[Any], nw.LazyFrame[Any])


def covers(expected, produced, key: str = "conversation_id"):
    """Full join of the expected ids (``key`` of ``expected``) with produced rows: ``expected`` and ``produced`` flags."""
    return _covers(nw.from_native(expected), nw.from_native(produced), key).to_native()


def _covers(expected: FrameT, produced: FrameT, key: str) -> FrameT:
    wanted = expected.select(key).unique().with_columns(nw.lit(True).alias("expected"))
    joined = wanted.join(produced.with_columns(nw.lit(True).alias("produced")), on=key, how="full")
    return joined.with_columns(
        nw.coalesce(key, f"{key}_right").alias(key),
        nw.col("expected").fill_null(False),
        nw.col("produced").fill_null(False),
    ).drop(f"{key}_right")


@nw.narwhalify
def truncation_coverage(conversations, truncated, max_tokens: int, slack: int):
    """Row conservation with ``conversations``; per row, tokens within the budget and never grown (``slack`` tokens)."""
    after = nw.col("tokens_after")
    return _covers(conversations, truncated, "conversation_id").with_columns(
        (after <= max_tokens + slack).alias("within_budget"),
        (after <= nw.col("tokens_before") + slack).alias("not_grown"),
    )


@nw.narwhalify
def representatives_known(clusters):
    """``representative_known``: the representative is one of the week's conversations (a join, never a list)."""
    known = clusters.select(nw.col("conversation_id").alias("representative_id")).unique()
    known = known.with_columns(nw.lit(True).alias("representative_known"))
    return clusters.join(known, on="representative_id", how="left").with_columns(nw.col("representative_known").fill_null(False))


@nw.narwhalify
def embedding_coverage(clusters, embeddings, embedded: bool):
    """One vector per final representative when the week was deduplicated by embedding, none otherwise;
    ``dims`` (vector length) for the gate to expect a single value."""
    reps = clusters.filter(nw.col("is_representative") & nw.lit(embedded))
    vectors = embeddings.select("conversation_id", "embedder", nw.col("vector").list.len().alias("dims"))
    return _covers(reps, vectors, "conversation_id")


def request_coverage(
    clusters,
    responses,
    classifiers: dict[str, Classifier],
    strategy: str = "single",
    batch_size: int = 8,
):
    """Every request the week needs, joined with its recorded answer (answers of old prompt versions and
    follow-ups are left out). Ids come from ``core.classify``; on Spark per task of whole batches, the
    tasks classify and parse use (``spark_engine.map_batches``)."""
    needed = partial(_needed_requests, classifiers=classifiers, strategy=strategy, batch_size=batch_size)
    expected: pl.DataFrame | SparkDataFrame
    if isinstance(clusters, pl.DataFrame):
        expected = needed(clusters, responses)
    else:
        from semtel_dagster.engines.spark_engine import map_batches

        empty = needed(tables.empty(tables.CONVERSATION_CLUSTERS), tables.empty(tables.LLM_RESPONSES))
        expected = map_batches(clusters, responses, batch_width(strategy, batch_size), needed, empty.schema)
    answers = nw.from_native(responses).select("request_id", "status")
    return _covers(nw.from_native(expected), answers, "request_id").filter(nw.col("expected")).to_native()


def _needed_requests(clusters: pl.DataFrame, responses: pl.DataFrame, **plan) -> pl.DataFrame:
    """The week's request ids; pairs a call-saving step answered (read from the answers) need no call."""
    return expected_request_ids(clusters, **plan, preanswered=preanswered_pairs(responses, plan["classifiers"]))


@nw.narwhalify
def label_coverage(conversations, classifications, rejects, classifiers: dict[str, Classifier]):
    """conversation x classifier pairs with their outcome (label or reject) and whether the label is in set."""
    ids = conversations.select("conversation_id")
    expected = nw.concat([ids.with_columns(nw.lit(name).alias("classifier")) for name in classifiers]).with_columns(
        nw.lit(True).alias("expected")
    )
    outcomes = nw.concat(
        [
            classifications.select("conversation_id", "classifier", "label", nw.lit("label").alias("outcome")),
            rejects.select(
                "conversation_id", "classifier", nw.lit(None, nw.String).alias("label"), nw.lit("reject").alias("outcome")
            ),
        ]
    )
    keys = ["conversation_id", "classifier"]
    in_set = nw.any_horizontal(
        *[(nw.col("classifier") == name) & nw.col("label").is_in(list(c.labels)) for name, c in classifiers.items()],
        ignore_nulls=True,
    )
    return (
        expected.join(outcomes, on=keys, how="full")
        .with_columns(*[nw.coalesce(key, f"{key}_right").alias(key) for key in keys])
        .drop(*[f"{key}_right" for key in keys])
        .with_columns(
            nw.col("expected").fill_null(False),
            (in_set | (nw.col("outcome") == "reject")).alias("label_in_set"),
        )
    )


@nw.narwhalify
def insight_totals(insights, classifications, min_group_size: int = 1):
    """Per classifier: do insight counts add up to the labeled conversations, and shares to one? A
    classifier whose every count is withheld (under the minimum group size) adds up to nothing."""
    labeled = classifications.group_by("classifier").agg(nw.len().cast(nw.Int64).alias("labeled"))
    totals = insights.group_by("classifier").agg(
        nw.col("conversations").sum().alias("counted"), nw.col("share").sum().alias("share_total")
    )
    withheld = (nw.col("counted").fill_null(0) == 0) & (nw.col("labeled").fill_null(0) < min_group_size)
    return (
        labeled.join(totals, on="classifier", how="full")
        .with_columns(nw.coalesce("classifier", "classifier_right").alias("classifier"))
        .drop("classifier_right")
        .with_columns(
            ((nw.col("labeled").fill_null(0) == nw.col("counted").fill_null(0)) | withheld).alias("counts_match"),
            (((nw.col("share_total").fill_null(0) - 1).abs() < 1e-9) | withheld).alias("shares_sum_to_one"),
        )
    )


@nw.narwhalify
def crosstab_totals(crosstabs, classifications, pairs, min_group_size: int = 1):
    """Per classifier pair: cells add up to the conversations both classifiers labeled (counted from
    ``classifications``, on its engine), as each row's ``labeled_both`` says, less what a withheld
    bucket holds; a pair labeled on fewer conversations than the minimum group size publishes no count."""
    labels = classifications.select("conversation_id", "classifier")
    parts = []
    for a, b in pairs:
        both = labels.filter(nw.col("classifier") == a).join(labels.filter(nw.col("classifier") == b), on="conversation_id")
        cells = crosstabs.filter((nw.col("classifier_a") == a) & (nw.col("classifier_b") == b)).select(
            nw.col("conversations").sum().fill_null(0).cast(nw.Int64).alias("counted"),
            nw.col("labeled_both").max().fill_null(0).cast(nw.Int64).alias("stated"),
            nw.col("conversations").is_null().cast(nw.Int64).sum().alias("withheld"),
        )
        expected = both.select(nw.len().cast(nw.Int64).alias("expected"))
        parts.append(expected.join(cells, how="cross").with_columns(nw.lit(f"{a} x {b}").alias("pair")))
    expected, counted, stated = nw.col("expected"), nw.col("counted"), nw.col("stated")
    small, withheld = expected < min_group_size, nw.col("withheld").fill_null(0) > 0
    return nw.concat(parts).with_columns(
        (
            (small & (counted == 0) & (stated == 0))  # no count of the pair may be published, its total neither
            | (~small & withheld & (counted < expected) & (stated == expected))  # a withheld bucket holds the rest
            | (~small & ~withheld & (counted == expected) & (stated == expected))
        ).alias("adds_up")
    )


@nw.narwhalify
def published_cells(published, count: str, merged: str, total: str, min_group_size: int):
    """Per published row: is every number at least the minimum group size (or withheld), and does a
    bucket whose count is published merge at least two cells (complementary suppression)?"""
    return published.select(
        (nw.col(count).is_null() | (nw.col(count) >= min_group_size)).alias("count_at_least_minimum"),
        (nw.col(total).is_null() | (nw.col(total) >= min_group_size)).alias("total_at_least_minimum"),
        ((nw.col(merged) == 0) | (nw.col(merged) >= 2) | nw.col(count).is_null()).alias("bucket_of_two_or_more"),
    )
