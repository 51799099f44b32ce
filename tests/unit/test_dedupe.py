"""Exact-duplicate clustering (semtel_dagster.core.prepare.dedupe)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.dedupe import (
    METHOD_EXACT,
    METHOD_NONE,
    cluster_exact,
    normalize_text,
    singleton_clusters,
    text_hash,
)

W1 = dt.date(2024, 1, 1)
W2 = dt.date(2024, 1, 8)


@pytest.mark.parametrize(
    "a,b",
    [
        ("Hello World", "hello world"),
        ("Hello   World\n\n", "  hello world"),
        ("Hello, World!", "hello world"),
        ("How do I sort a list?", "how do i sort a list"),
        ("ＨＥＬＬＯ", "hello"),  # NFKC full-width
        ("Straße", "STRASSE"),  # casefold
    ],
)
def test_normalization_ignores_case_whitespace_punctuation(a, b):
    assert normalize_text(a) == normalize_text(b)
    assert text_hash(a) == text_hash(b)


@pytest.mark.parametrize("a,b", [("hello world", "hello there"), ("sort a list", "sort the list"), ("1 2", "12")])
def test_different_words_differ(a, b):
    assert text_hash(a) != text_hash(b)


def test_normalize_text_output():
    assert normalize_text("  Hi,  THERE!!\tYou ") == "hi there you"
    assert len(text_hash("x")) == 32


def _truncated(rows):
    return pl.DataFrame(
        [
            {
                "conversation_id": cid,
                "week_start": week,
                "transcript": text,
                "tokens_before": 1,
                "tokens_after": 1,
                "strategy": "none",
                "tokenizer": "cl100k_base",
            }
            for cid, week, text in rows
        ],
        schema=tables.CONVERSATIONS_TRUNCATED,
    )


def test_cluster_exact():
    truncated = _truncated(
        [
            ("c3", W1, "User: How do I sort a list?"),
            ("c1", W1, "user: how do i sort a list"),
            ("c2", W1, "User:   How do I sort a LIST ?!"),
            ("c4", W1, "User: bake bread"),
            ("c5", W1, "User: something else"),
            ("c9", W1, "User: Bake bread."),
            # same text in another week is its own cluster
            ("c0", W2, "User: How do I sort a list?"),
        ]
    )
    clusters = cluster_exact(truncated)
    assert clusters.schema == tables.CONVERSATION_CLUSTERS
    assert clusters.height == truncated.height
    assert sorted(clusters.get_column("conversation_id")) == sorted(truncated.get_column("conversation_id"))
    by_id = {r["conversation_id"]: r for r in clusters.iter_rows(named=True)}
    assert {cid: by_id[cid]["representative_id"] for cid in by_id} == {
        "c1": "c1",
        "c2": "c1",
        "c3": "c1",
        "c4": "c4",
        "c9": "c4",
        "c5": "c5",
        "c0": "c0",
    }
    assert {cid: by_id[cid]["cluster_size"] for cid in by_id} == {
        "c1": 3,
        "c2": 3,
        "c3": 3,
        "c4": 2,
        "c9": 2,
        "c5": 1,
        "c0": 1,
    }
    assert {cid for cid, r in by_id.items() if r["is_representative"]} == {"c1", "c4", "c5", "c0"}
    # every row maps to a representative that is itself in the input, in the same week
    ids = set(by_id)
    for row in by_id.values():
        rep = by_id[row["representative_id"]]
        assert row["representative_id"] in ids
        assert rep["is_representative"] and rep["week_start"] == row["week_start"]
        assert rep["text_hash"] == row["text_hash"]
        assert row["method"] == METHOD_EXACT and row["similarity"] == 1.0
    # one representative per cluster, and cluster sizes add up
    reps = clusters.filter(pl.col("is_representative"))
    assert reps.get_column("cluster_size").sum() == clusters.height
    assert reps.select("week_start", "text_hash").is_unique().all()


def test_cluster_exact_all_singletons_and_deterministic():
    truncated = _truncated([(f"c{i}", W1, f"User: question number {i}") for i in range(5)])
    clusters = cluster_exact(truncated)
    assert clusters.get_column("is_representative").all()
    assert (clusters.get_column("representative_id") == clusters.get_column("conversation_id")).all()
    assert (clusters.get_column("cluster_size") == 1).all()
    # rerun on shuffled input chooses the same representatives
    again = cluster_exact(truncated.sample(fraction=1.0, shuffle=True, seed=3))
    assert again.sort("conversation_id").equals(clusters.sort("conversation_id"))


def test_cluster_exact_empty():
    out = cluster_exact(_truncated([]))
    assert out.height == 0
    assert out.schema == tables.CONVERSATION_CLUSTERS


def test_singleton_clusters_send_every_conversation_and_keep_the_hash():
    truncated = pl.DataFrame(
        {"conversation_id": ["b", "a", "c"], "week_start": [W1] * 3, "transcript": ["Hello World", "hello world", "other"]}
    )
    exact, none = cluster_exact(truncated), singleton_clusters(truncated)
    assert exact["is_representative"].sum() == 2
    assert none.schema == tables.CONVERSATION_CLUSTERS
    assert none["is_representative"].all() and (none["representative_id"] == none["conversation_id"]).all()
    assert none["cluster_size"].to_list() == [1, 1, 1] and set(none["method"]) == {METHOD_NONE}
    assert none["text_hash"].to_list() == exact["text_hash"].to_list()  # later weeks can still reuse its labels
