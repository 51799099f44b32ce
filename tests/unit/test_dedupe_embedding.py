"""Near-duplicate dedupe by embedding (core/dedupe.py): LSH leader clustering over exact clusters."""

import datetime as dt

import numpy as np
import polars as pl

from semtel_dagster.core import tables
from semtel_dagster.core.dedupe import cluster_embedding, cluster_exact, lsh_leaders

W = dt.date(2026, 11, 16)


def _frame(texts):
    return pl.DataFrame({"conversation_id": [f"c{i}" for i in range(len(texts))], "week_start": [W] * len(texts),
                         "transcript": texts})


def test_lsh_leaders_groups_near_copies_and_never_chains():
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((50, 64))
    rows = np.vstack([centers + 0.02 * rng.standard_normal((50, 64)) for _ in range(4)])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    leaders, sims = lsh_leaders(rows.astype(np.float32), 0.95)
    assert len(set(leaders.tolist())) == 50  # four noisy copies of 50 points
    assert (sims >= 0.95).all()
    assert np.allclose(np.einsum("ij,ij->i", rows, rows[leaders]), sims, atol=1e-5)
    assert (leaders <= np.arange(len(rows))).all()  # the leader is the earliest row


def test_lsh_leaders_keeps_distinct_points_apart():
    rows = np.eye(32, dtype=np.float32)
    leaders, _ = lsh_leaders(rows, 0.5)
    assert leaders.tolist() == list(range(32))


def test_cluster_embedding_merges_paraphrases_with_real_model(local_embedder):
    texts = [
        "User: How do I reset my password?",
        "User: how do I reset my password",  # exact duplicate after normalization
        "User: How can I reset my password?",  # paraphrase: embedding duplicate
        "User: Write a haiku about autumn leaves.",
    ]
    truncated = _frame(texts)
    clusters = cluster_embedding(cluster_exact(truncated), truncated, local_embedder.embed, 0.9).sort("conversation_id")
    assert clusters.schema == tables.CONVERSATION_CLUSTERS
    assert clusters["representative_id"].to_list() == ["c0", "c0", "c0", "c3"]
    assert clusters["method"].to_list() == ["exact_hash", "exact_hash", "embedding", "exact_hash"]
    assert clusters["cluster_size"].to_list() == [3, 3, 3, 1]
    assert 0.9 <= clusters["similarity"][2] < 1.0
    assert clusters["is_representative"].to_list() == [True, False, False, True]


def test_cluster_embedding_threshold_one_equals_exact(local_embedder):
    truncated = _frame(["User: a b c", "User: A, b c!", "User: something else"])
    exact = cluster_exact(truncated)
    assert cluster_embedding(exact, truncated, local_embedder.embed, 1.0).sort("conversation_id").equals(
        exact.sort("conversation_id"))
