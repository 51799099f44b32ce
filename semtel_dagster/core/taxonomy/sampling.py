"""Which conversations a taxonomy is discovered from, and which it is checked on.

A taxonomy drawn from one busy week or from short chats only misses what the rest of the traffic asks,
so the sample is stratified over weeks and over length (terciles of the conversation's characters):
every week x length stratum keeps its share. Rows are ranked by a seeded hash of their id
(``metrics.stratified_sample``), so the same input gives the same sample anywhere. The held-out sample,
labelled with the draft for the report, is drawn the same way from the conversations not sampled.
"""

from __future__ import annotations

import polars as pl

from semtel_dagster.core.evaluation.metrics import stratified_sample

STRATUM = "stratum"
LENGTHS = ("short", "medium", "long")


def with_strata(conversations: pl.DataFrame) -> pl.DataFrame:
    """``stratum`` = ``<week_start>/<length tercile>``; terciles are cut on this input's ``n_chars``."""
    chars = conversations.get_column("n_chars").cast(pl.Float64)
    low, high = (chars.quantile(q, "nearest") or 0.0 for q in (1 / 3, 2 / 3))
    length = (
        pl.when(pl.col("n_chars") <= low)
        .then(pl.lit(LENGTHS[0]))
        .when(pl.col("n_chars") <= high)
        .then(pl.lit(LENGTHS[1]))
        .otherwise(pl.lit(LENGTHS[2]))
    )
    return conversations.with_columns(pl.concat_str(pl.col("week_start").cast(pl.String), pl.lit("/"), length).alias(STRATUM))


def discovery_samples(conversations: pl.DataFrame, n: int, holdout: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(about ``n`` conversations to discover from, about ``holdout`` others to check the draft on), both
    stratified over week x length; each keeps its ``stratum`` column."""
    if n < 1:
        raise ValueError("the sample needs at least one conversation (n >= 1)")
    if not conversations.height:
        raise ValueError("no conversations to sample from")
    strata = with_strata(conversations)
    sample = stratified_sample(strata, STRATUM, n, seed)
    rest = strata.join(sample.select("conversation_id"), on="conversation_id", how="anti")
    held = stratified_sample(rest, STRATUM, holdout, seed + 1) if holdout > 0 and rest.height else rest.clear()
    return sample, held


def stratum_counts(frame: pl.DataFrame) -> dict[str, int]:
    return dict(frame.group_by(STRATUM).len().sort(STRATUM).iter_rows())
