"""Exact-duplicate clustering: conversations with the same normalized text share one LLM call.

Normalization removes differences that never change a label (case, whitespace, punctuation), so
copy-pasted prompts asked by many users collapse to one representative. The representative of a
cluster is its smallest ``conversation_id``: deterministic, so reruns choose the same one.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import polars as pl

from semtel_dagster.core import tables

METHOD_EXACT = "exact_hash"

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:32]


def cluster_exact(truncated: pl.DataFrame) -> pl.DataFrame:
    """One ``conversation_clusters`` row per input row; every row maps to a representative."""
    hashed = truncated.select(
        "conversation_id",
        "week_start",
        pl.col("transcript").map_elements(text_hash, return_dtype=pl.String).alias("text_hash"),
    )
    clusters = hashed.with_columns(
        pl.col("conversation_id").min().over("week_start", "text_hash").alias("representative_id"),
        pl.len().over("week_start", "text_hash").cast(pl.Int64).alias("cluster_size"),
    ).with_columns(
        (pl.col("conversation_id") == pl.col("representative_id")).alias("is_representative"),
        pl.lit(METHOD_EXACT).alias("method"),
        pl.lit(1.0).alias("similarity"),
    )
    return tables.conform(clusters, tables.CONVERSATION_CLUSTERS)
