"""Near-duplicate dedupe by embedding (core/dedupe.py): LSH buckets, bucket edges, greedy leaders."""

import datetime as dt

import numpy as np
import polars as pl

from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.dedupe import (
    bucket_edges,
    cluster_embedding,
    cluster_exact,
    lsh_keys,
    near_duplicates,
    resolve_edges,
    resolve_leaders,
    scan_bucket,
)

W = dt.date(2026, 11, 16)


def _frame(texts):
    return pl.DataFrame(
        {"conversation_id": [f"c{i}" for i in range(len(texts))], "week_start": [W] * len(texts), "transcript": texts}
    )


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float64)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _noisy_copies(seed=1, centers=50, copies=4, dims=64, noise=0.02):
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((centers, dims))
    return _unit(np.vstack([points + noise * rng.standard_normal((centers, dims)) for _ in range(copies)]))


def _ids(n):
    return pl.Series([f"c{i:04d}" for i in range(n)])


def test_near_duplicates_groups_near_copies_within_threshold_of_the_representative():
    rows = _noisy_copies()
    ids = _ids(len(rows))
    moved = near_duplicates(ids, rows, 0.95)
    representative = dict(zip(ids, ids))
    representative.update(zip(moved["conversation_id"], moved["representative_id"]))
    assert len(set(representative.values())) == 50  # four noisy copies of 50 points
    index = {c: i for i, c in enumerate(ids)}
    for member, rep, sim in moved.iter_rows():
        assert rep < member and rep not in set(moved["conversation_id"])  # the smallest id, itself a leader
        assert sim >= 0.95
        assert abs(float(rows[index[member]] @ rows[index[rep]]) - sim) < 1e-5


def test_no_chaining_a_member_never_joins_through_another_member():
    angle = np.radians(15)  # neighbours: cos 0.966; two steps apart: cos 0.866
    rows = _unit([[np.cos(k * angle), np.sin(k * angle), 0.0] for k in range(3)])
    moved = near_duplicates(_ids(3), rows, 0.95)
    assert moved.rows() == [("c0001", "c0000", moved["similarity"][0])]  # c0002 stays its own representative


def test_distinct_points_stay_apart():
    assert near_duplicates(_ids(32), np.eye(32, dtype=np.float32), 0.5).height == 0


def test_deterministic_and_keys_do_not_depend_on_the_batch():
    rows = _noisy_copies(seed=3)
    assert near_duplicates(_ids(len(rows)), rows, 0.95).equals(near_duplicates(_ids(len(rows)), rows, 0.95))
    together = lsh_keys(rows)
    assert np.array_equal(together, np.vstack([lsh_keys(rows[i : i + 7]) for i in range(0, len(rows), 7)]))
    assert together.shape == (len(rows), 6) and len(np.unique(together)) > 6  # unique per table: 6 ranges
    assert all(len(set(together[:, t] >> 12)) == 1 for t in range(6))


def test_resolve_joins_the_most_similar_earlier_leader_ties_to_the_smallest_id():
    # 0 and 1 lead (no edge between them); 2 is close to both, closer to 1; 3 ties between 0 and 1;
    # 4 is closest to 2, a member, so it joins its best leader neighbour 0 instead.
    src = np.array([2, 2, 3, 3, 4, 4])
    dst = np.array([0, 1, 0, 1, 2, 0])
    sim = np.array([0.96, 0.97, 0.96, 0.96, 0.99, 0.955])
    leader, similarity = resolve_leaders(5, src, dst, sim)
    assert leader.tolist() == [0, 1, 1, 0, 0]
    assert similarity.tolist() == [1.0, 1.0, 0.97, 0.96, 0.955]


def _components(n, src, dst):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(src, dst):
        parent[find(a)] = find(b)
    return np.array([find(x) for x in range(n)])


def test_resolve_per_component_equals_resolve_on_the_whole_graph():
    rows = _noisy_copies(seed=5, centers=40, copies=6, noise=0.1)
    keys = lsh_keys(rows)
    src, dst, sim = bucket_edges(keys.ravel(), np.repeat(np.arange(len(rows)), keys.shape[1]), rows, 0.9)
    ids = _ids(len(rows))
    edges = pl.DataFrame({"src": ids.gather(src), "dst": ids.gather(dst), "similarity": sim})
    component = _components(len(rows), src, dst)[src]
    assert len(set(component)) > 5  # several components, some with more than one edge
    whole = resolve_edges(edges).sort("conversation_id")
    assert whole.height > 40
    parts = [resolve_edges(edges.filter(pl.Series(component == c))) for c in np.unique(component)]
    assert pl.concat(parts).sort("conversation_id").equals(whole)
    assert resolve_edges(edges.sample(fraction=1.0, shuffle=True, seed=1)).sort("conversation_id").equals(whole)


def test_bucket_cap_bounds_comparisons():
    far = np.eye(80, dtype=np.float32)  # row 0, then 79 distinct leaders, then a copy of row 0
    bucket = np.vstack([far, far[:1]])
    src, dst, _ = scan_bucket(bucket, 0.9, max_bucket=64)
    assert len(src) == 0  # row 0 is older than the 64 newest local leaders: not compared, no edge
    src, dst, _ = scan_bucket(bucket, 0.9, max_bucket=128)
    assert (src.tolist(), dst.tolist()) == ([80], [0])
    copies = np.repeat(far[:1], 300, axis=0)  # templated text: every row matches every earlier one
    src, dst, _ = scan_bucket(copies, 0.9, max_bucket=64)
    assert src.tolist() == list(range(1, 300)) and set(dst.tolist()) == {0}  # members are never compared with
    leaders = np.eye(70, dtype=np.float32)  # 70 distinct local leaders, then a row near all of them (cos 0.12)
    src, dst, _ = scan_bucket(np.vstack([leaders, _unit(np.ones((1, 70)))]), 0.1, max_bucket=8)
    assert src.tolist() == [70] * 8 and dst.tolist() == list(range(62, 70))  # only the 8 newest are compared


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
    assert (
        cluster_embedding(exact, truncated, local_embedder.embed, 1.0)
        .sort("conversation_id")
        .equals(exact.sort("conversation_id"))
    )
