"""Matching this week's representatives to earlier weeks' by embedding (core.reuse, pure, no I/O)."""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

from semtel_dagster.core.classify.parse import parse_batched
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.classify.reuse import (
    ENDPOINT,
    best_matches,
    bucket_matches,
    candidates,
    embedding_candidates,
    match_embeddings,
    reused_answers,
)
from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.dedupe import lsh_keys, vector_matrix

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
LAST, EARLIER, THIS = dt.date(2026, 11, 9), dt.date(2026, 11, 2), dt.date(2026, 11, 16)
DIMS = 32


def _unit(rng, n=1):
    v = rng.standard_normal((n, DIMS))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _at_cosine(base, other, cosine):
    """A unit vector at exactly ``cosine`` from ``base`` (towards ``other``)."""
    ortho = other - (other @ base) * base
    ortho /= np.linalg.norm(ortho)
    return cosine * base + np.sqrt(1 - cosine**2) * ortho


def _rows(ids, week, vectors, embedder="m"):
    return tables.conform(
        pl.DataFrame(
            {
                "conversation_id": ids,
                "week_start": [week] * len(ids),
                "embedder": [embedder] * len(ids),
                "vector": pl.Series(np.asarray(vectors, dtype=np.float32)).cast(pl.List(pl.Float32)),
            }
        ),
        tables.CONVERSATION_EMBEDDINGS,
    )


def _pairs(matches):
    return {r["conversation_id"]: (r["source_id"], r["source_week"]) for r in matches.iter_rows(named=True)}


def test_threshold_is_respected():
    rng = np.random.default_rng(1)
    base, other = _unit(rng, 2)
    stored = _rows(["o1"], LAST, [base])
    queries = _rows(["near", "far"], THIS, [_at_cosine(base, other, 0.97), _at_cosine(base, other, 0.93)])
    matches = match_embeddings(queries, stored, 0.95)
    assert _pairs(matches) == {"near": ("o1", LAST)}
    assert 0.95 <= matches["similarity"][0] < 1
    assert match_embeddings(queries, stored, 0.9).height == 2


def test_best_match_wins_and_ties_go_to_the_smallest_id_then_the_latest_week():
    rng = np.random.default_rng(2)
    base, other, third = _unit(rng, 3)
    query = _at_cosine(base, other, 0.99)
    aside = third - (third @ other) * other  # o1 leans away from the query's side of base
    stored = pl.concat(
        [
            _rows(["o9"], LAST, [base]),  # the most similar
            _rows(["o1"], LAST, [_at_cosine(base, aside, 0.97)]),  # above the threshold, but less similar
            _rows(["t2", "t1"], LAST, [query, query]),  # ... unless an identical vector ties: smallest id
            _rows(["t1"], EARLIER, [query]),  # the same id a week before: the latest week wins
        ]
    )
    assert _pairs(match_embeddings(_rows(["q"], THIS, [query]), stored, 0.95)) == {"q": ("t1", LAST)}
    assert _pairs(
        match_embeddings(_rows(["q"], THIS, [query]), stored.filter(pl.col("conversation_id").str.starts_with("o")), 0.95)
    ) == {"q": ("o9", LAST)}


def test_no_match_across_embedders():
    rng = np.random.default_rng(3)
    vector = _unit(rng)
    stored = _rows(["o1"], LAST, vector, embedder="other-model")
    assert match_embeddings(_rows(["q"], THIS, vector, embedder="m"), stored, 0.5).height == 0
    assert match_embeddings(_rows(["q"], THIS, vector, embedder="other-model"), stored, 0.5).height == 1


def test_any_split_into_whole_buckets_and_any_row_order_give_the_same_matches():
    """What the Spark engine relies on: buckets scanned on different tasks, rows in any order."""
    rng = np.random.default_rng(4)
    base = _unit(rng, 300)
    noisy = base + 0.05 * rng.standard_normal(base.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    queries = _rows([f"n{i:03d}" for i in range(300)], THIS, noisy)
    stored = _rows([f"o{i:03d}" for i in range(300)], LAST, base)
    whole = match_embeddings(queries, stored, 0.95)
    assert whole.height > 100 and (whole["similarity"] >= 0.95).all()

    rows = pl.concat([queries.with_columns(query=pl.lit(True)), stored.with_columns(query=pl.lit(False))])
    rows = rows.sample(fraction=1.0, shuffle=True, seed=5)  # another order of arrival
    keys = lsh_keys(vector_matrix(rows["vector"]))
    flat, positions = keys.ravel(), np.repeat(np.arange(rows.height), keys.shape[1])
    parts = [bucket_matches(rows, flat[flat % 2 == side], positions[flat % 2 == side], 0.95) for side in (0, 1)]
    assert best_matches(pl.concat(parts)).equals(whole)
    assert match_embeddings(queries, stored, 0.95).equals(whole)  # and again: deterministic


def test_embedding_candidates_skip_exact_matches_and_record_the_cosine():
    classifiers = load_classifiers(PROMPTS, ["topic"])
    version = classifiers["topic"].version
    rng = np.random.default_rng(6)
    base, other = _unit(rng, 2)
    near = _at_cosine(base, other, 0.98)
    this_week = pl.DataFrame({"conversation_id": ["n1", "n2"], "text_hash": ["h1", "h2"], "is_representative": [True, True]})
    earlier_clusters = pl.DataFrame({"conversation_id": ["o1"], "week_start": [LAST], "text_hash": ["h1"]})
    labels = pl.DataFrame(
        [("o1", LAST, "topic", "math", version, "gpt"), ("o2", LAST, "topic", "travel", version, "gpt")],
        schema=["conversation_id", "week_start", "classifier", "label", "prompt_version", "model"],
        orient="row",
    )
    exact = candidates(this_week, earlier_clusters, labels)
    # n1 has the same text as o1 (exact), though its vector is nearest o2: the exact match stands
    found = embedding_candidates(
        exact, _rows(["n1", "n2"], THIS, [near, near]), _rows(["o1", "o2"], LAST, [other, base]), labels, 0.95
    )
    assert found["conversation_id"].to_list() == ["n2"] and found["source_id"].to_list() == ["o2"]

    rows = reused_answers(pl.concat([exact, found]), classifiers, {"gpt"}, THIS)
    answers = {r["conversation_ids"][0]: json.loads(r["raw_text"]) for r in rows.iter_rows(named=True)}
    assert answers["n1"] == {"label": "math"}  # exact reuse: unchanged
    assert answers["n2"]["label"] == "travel" and answers["n2"]["reused_from"] == "o2"
    assert abs(answers["n2"]["cosine"] - 0.98) < 1e-5
    assert set(rows["endpoint"]) == {ENDPOINT} and rows["error"].is_null().all()
    reused = rows.filter(pl.col("conversation_ids").list.first() == "n2")["raw_text"][0]
    [parsed] = parse_batched(reused, ["n2"], ["topic"], classifiers).values()
    assert parsed.label == "travel"  # the parser reads the label and nothing else


def test_embeddings_gate_frame_flags_missing_extra_and_mixed_vectors():
    from semtel_dagster.checks.invariants import embedding_coverage

    clusters = pl.DataFrame({"conversation_id": ["a", "b", "c"], "is_representative": [True, True, False]})
    vectors = _rows(["a", "c"], THIS, np.eye(2)).with_columns(
        pl.when(pl.col("conversation_id") == "c")
        .then(pl.lit([1.0, 0.0, 0.0], pl.List(pl.Float32)))
        .otherwise("vector")
        .alias("vector")
    )
    flags = embedding_coverage(clusters, vectors, True).sort("conversation_id")
    assert flags.select("conversation_id", "expected", "produced").rows() == [
        ("a", True, True),
        ("b", True, False),
        ("c", False, True),
    ]
    assert flags["dims"].drop_nulls().n_unique() == 2  # two lengths: the gate's single-value rule fails
    assert not embedding_coverage(clusters, vectors.clear(), False).height  # exact dedupe: no vectors expected, none written
