"""Duplicate clustering: conversations in one cluster share one LLM call; labels fan out.

Exact first: normalization removes differences that never change a label (case, whitespace,
punctuation), so copy-pasted prompts asked by many users collapse to one representative. Then,
optionally, near-duplicates: exact representatives whose embeddings are within a cosine threshold
merge, found with random-hyperplane LSH so the cost grows near-linearly with the week. The
representative of a cluster is its smallest ``conversation_id``: deterministic, so reruns choose the
same one; ``cluster_size`` keeps aggregates weighted by every member.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import numpy as np
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


METHOD_EMBEDDING = "embedding"


def lsh_leaders(vectors: np.ndarray, threshold: float, *, bits: int = 12, tables: int = 6,
                max_bucket: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Greedy leader clustering with random-hyperplane LSH: ``(leader index, similarity)`` per row.

    Rows are visited in order; a row joins the most similar earlier leader that shares one of its
    ``tables`` buckets when the cosine is at least ``threshold``, else it becomes a leader. Only
    leaders are indexed, so a bucket holds distinct texts; a row compares with at most the
    ``max_bucket`` newest leaders of each bucket, so the cost stays linear even on templated text
    (a missed match only costs a call, never a wrong merge). Every member is within ``threshold``
    of its own leader (no chaining). Rows must be L2-normalized.
    """
    n = len(vectors)
    leaders = np.arange(n)
    similarity = np.ones(n, dtype=np.float64)
    if n == 0:
        return leaders, similarity
    planes = np.random.default_rng(seed).standard_normal((vectors.shape[1], bits * tables)).astype(np.float32)
    signs = (vectors @ planes > 0).reshape(n, tables, bits)
    keys = (signs * (1 << np.arange(bits))).sum(axis=2) + (np.arange(tables) << bits)  # unique per table
    index: dict[int, list[int]] = {}
    for i in range(n):
        candidates = {j for key in keys[i].tolist() for j in index.get(key, ())[-max_bucket:]}
        if candidates:
            cand = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
            sims = vectors[cand] @ vectors[i]
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                leaders[i], similarity[i] = cand[best], float(sims[best])
                continue
        for key in keys[i].tolist():
            index.setdefault(key, []).append(i)
    return leaders, similarity


def cluster_embedding(
    exact: pl.DataFrame,
    truncated: pl.DataFrame,
    embed: Callable[[list[str]], np.ndarray],
    threshold: float,
) -> pl.DataFrame:
    """Merge exact-hash clusters whose representatives are near-duplicates by embedding.

    Only exact representatives are embedded (copies cost nothing). Rows whose cluster changed get
    method ``embedding`` and the cosine of their exact representative to the new representative.
    """
    reps = (
        exact.filter(pl.col("is_representative"))
        .select("conversation_id", "week_start")
        .join(truncated.select("conversation_id", "transcript"), on="conversation_id", how="left")
        .sort("week_start", "conversation_id")  # leaders are the smallest ids, as in exact dedupe
    )
    mapping = []
    for (week,), group in reps.group_by("week_start", maintain_order=True):
        ids = group["conversation_id"].to_list()
        leaders, sims = lsh_leaders(embed(group["transcript"].fill_null("").to_list()), threshold)
        mapping += [(week, ids[i], ids[leader], float(sim)) for i, (leader, sim) in enumerate(zip(leaders, sims))]
    merged = pl.DataFrame(
        mapping, schema={"week_start": pl.Date, "exact_rep": pl.String, "new_rep": pl.String, "rep_similarity": pl.Float64},
        orient="row",
    )
    clusters = (
        exact.join(merged, left_on=["week_start", "representative_id"], right_on=["week_start", "exact_rep"], how="left")
        .with_columns(
            pl.col("new_rep").fill_null(pl.col("representative_id")).alias("representative_id"),
            pl.when(pl.col("new_rep") != pl.col("representative_id"))
            .then(pl.lit(METHOD_EMBEDDING)).otherwise(pl.col("method")).alias("method"),
            pl.when(pl.col("new_rep") != pl.col("representative_id"))
            .then(pl.col("rep_similarity")).otherwise(pl.col("similarity")).alias("similarity"),
        )
        .with_columns(
            pl.len().over("week_start", "representative_id").cast(pl.Int64).alias("cluster_size"),
            (pl.col("conversation_id") == pl.col("representative_id")).alias("is_representative"),
        )
    )
    return tables.conform(clusters, tables.CONVERSATION_CLUSTERS)
