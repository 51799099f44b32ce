"""Duplicate clustering: conversations in one cluster share one LLM call; labels fan out.

Exact first: normalization removes differences that never change a label (case, whitespace,
punctuation), so copy-pasted prompts asked by many users collapse to one representative. Then,
optionally, near-duplicates: exact representatives whose embeddings are within a cosine threshold
merge. Random-hyperplane LSH puts rows in buckets; each bucket is scanned on its own (bounded work,
so the cost grows near-linearly with the week) and yields candidate edges; one greedy pass over the
edge graph in id order picks leaders. Buckets and connected components are independent, which is
what lets the Spark engine run both steps on different tasks and still match this engine exactly.
The representative of a cluster is its smallest ``conversation_id``: deterministic, so reruns choose
the same one; ``cluster_size`` keeps aggregates weighted by every member.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from semtel_dagster.core.lake import tables

METHOD_EXACT = "exact_hash"

_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:32]


def normalize_texts(texts: pl.Series) -> pl.Series:
    """``normalize_text`` of every row: ASCII rows (NFKC and casefold change nothing there, and ``\\w`` is
    ``[A-Za-z0-9_]``) in Polars expressions, the rest through the Unicode rules row by row."""
    ascii_only = ~texts.str.contains(r"[^\x00-\x7F]").fill_null(True)
    fast = texts.str.to_lowercase().str.replace_all(r"[^a-z0-9_]+", " ").str.strip_chars(" ")
    if ascii_only.all():
        return fast
    slow = texts.filter(~ascii_only).map_elements(normalize_text, return_dtype=pl.String)
    return fast.scatter((~ascii_only).arg_true(), slow)


_HASH_ROWS = 50_000  # texts held as Python strings at once while hashing


def text_hashes(texts: pl.Series) -> pl.Series:
    """``text_hash`` of every row (the same values, so later weeks still match stored hashes)."""
    digests = [
        None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        for start in range(0, len(texts), _HASH_ROWS)
        for text in normalize_texts(texts.slice(start, _HASH_ROWS)).to_list()
    ]
    return pl.Series("text_hash", digests, dtype=pl.String)


HASHED = pl.Schema({"conversation_id": pl.String, "week_start": pl.Date, "text_hash": pl.String})


def hashed_texts(truncated: pl.DataFrame) -> pl.DataFrame:
    """``HASHED`` rows of ``conversations_truncated`` rows: what exact clusters are made of (row-local)."""
    return truncated.select("conversation_id", "week_start").with_columns(text_hashes(truncated.get_column("transcript")))


def cluster_exact(truncated: pl.DataFrame) -> pl.DataFrame:
    """One ``conversation_clusters`` row per input row; every row maps to a representative."""
    return clusters_by_hash(hashed_texts(truncated))


def clusters_by_hash(hashed: pl.DataFrame) -> pl.DataFrame:
    """Exact clusters of rows already hashed (``conversation_id``, ``week_start``, ``text_hash``): the
    smallest id of each hash is its representative."""
    clusters = hashed.with_columns(
        pl.col("conversation_id").min().over("week_start", "text_hash").alias("representative_id"),
        pl.len().over("week_start", "text_hash").cast(pl.Int64).alias("cluster_size"),
    ).with_columns(
        (pl.col("conversation_id") == pl.col("representative_id")).alias("is_representative"),
        pl.lit(METHOD_EXACT).alias("method"),
        pl.lit(1.0).alias("similarity"),
    )
    return tables.conform(clusters, tables.CONVERSATION_CLUSTERS)


METHOD_NONE = "none"


def singleton_clusters(truncated: pl.DataFrame) -> pl.DataFrame:
    """Every conversation its own representative (no dedupe: evaluations and the savings baseline measure
    the classifiers on every conversation); the text hash is kept so later weeks can still reuse labels."""
    return cluster_exact(truncated).with_columns(
        pl.col("conversation_id").alias("representative_id"),
        pl.lit(True).alias("is_representative"),
        pl.lit(1, pl.Int64).alias("cluster_size"),
        pl.lit(METHOD_NONE).alias("method"),
    )


METHOD_EMBEDDING = "embedding"

# LSH settings both engines share: the same seed and sizes give every row the same buckets anywhere.
LSH_BITS, LSH_TABLES, LSH_SEED = 12, 6, 0
MAX_BUCKET = 64  # newest local leaders a row meets per bucket (64 merges as much as a global leader index did)
_BLOCK = 256  # rows per matrix product inside a bucket: bounds memory on templated text
EDGES = pl.Schema({"src": pl.String, "dst": pl.String, "similarity": pl.Float64})  # dst: the earlier id
MOVES = pl.Schema({"conversation_id": pl.String, "representative_id": pl.String, "similarity": pl.Float64})


def lsh_keys(vectors: np.ndarray, *, bits: int = LSH_BITS, tables: int = LSH_TABLES, seed: int = LSH_SEED) -> np.ndarray:
    """``tables`` random-hyperplane bucket keys per row (int64, unique across tables).

    Projections are float64, so rounding that depends on the batch (Spark computes keys per partition,
    the Polars engine over the whole week) is far too small to flip a sign.
    """
    planes = np.random.default_rng(seed).standard_normal((vectors.shape[1], bits * tables))
    signs = (np.asarray(vectors, dtype=np.float64) @ planes > 0).reshape(len(vectors), tables, bits)
    return (signs * (1 << np.arange(bits))).sum(axis=2) + (np.arange(tables) << bits)


def scan_bucket(
    vectors: np.ndarray, threshold: float, *, max_bucket: int = MAX_BUCKET
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of one bucket: ``(row, earlier local leader, cosine)`` with cosine >= ``threshold``.

    Rows (in id order) are compared with the ``max_bucket`` newest local leaders only, so the cost per
    row is bounded even on templated text; a row with no edge becomes a local leader. Keeping only
    leaders makes one bucket's leaders distinct texts. Rows must be L2-normalized.
    """
    src: list[int] = []
    dst: list[int] = []
    sim: list[float] = []
    leaders: list[int] = []
    for start in range(0, len(vectors), _BLOCK):
        block = vectors[start : start + _BLOCK]
        window = leaders[-max_bucket:]
        cols = np.array(window + list(range(start, start + len(block))), dtype=np.int64)
        sims = block @ vectors[cols].T  # every comparison the block may need, in one product
        hits = sims >= threshold
        hits[:, len(window) :] &= np.tri(len(block), k=-1, dtype=bool)  # only earlier rows of the block
        possible = hits.any(axis=1).tolist()
        local = list(range(len(window)))  # columns of the current leaders, oldest first
        for k in range(len(block)):
            if possible[k]:
                compared = np.array(local[-max_bucket:])
                found = compared[hits[k, compared]]
                if len(found):
                    src += [start + k] * len(found)
                    dst += cols[found].tolist()
                    sim += sims[k, found].tolist()
                    continue
            local.append(len(window) + k)
            leaders.append(start + k)
    return np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(sim, dtype=np.float64)


def bucket_edges(
    keys: np.ndarray, rows: np.ndarray, vectors: np.ndarray, threshold: float, *, max_bucket: int = MAX_BUCKET
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``scan_bucket`` over every bucket: entry ``i`` puts row ``rows[i]`` (a position into ``vectors``,
    in id order) in bucket ``keys[i]``. Returns ``(row, earlier row, cosine)``; a pair found in several
    buckets appears once per bucket."""
    order = np.lexsort((rows, keys))
    keys, rows = np.asarray(keys)[order], np.asarray(rows)[order]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    starts, stops = np.r_[0, bounds], np.r_[bounds, len(keys)]
    parts = []
    # One BLAS thread: threads make these small products 10x slower on a busy machine, and cosines then
    # never depend on a thread count, so both engines compute the very same edges.
    with threadpool_limits(1, user_api="blas"):
        for a, b in zip(starts[stops - starts > 1].tolist(), stops[stops - starts > 1].tolist()):
            members = rows[a:b]
            src, dst, sim = scan_bucket(vectors[members], threshold, max_bucket=max_bucket)
            parts.append((members[src], members[dst], sim))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    src, dst, sim = (np.concatenate(p) for p in zip(*parts))
    return src, dst, sim


def resolve_leaders(n: int, src: np.ndarray, dst: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global greedy over the edge graph: ``(leader, cosine)`` per row ``0..n-1`` (id order).

    In id order, a row joins the most similar earlier neighbour (``dst < src``) that is itself a
    leader (tie: smallest id), else it leads. Leaders never join, so every member is within the
    threshold of its own leader (no chaining). The answer depends only on each connected component, so
    Spark resolves components on different tasks and gets the whole-graph answer.
    """
    leader = np.arange(n)
    similarity = np.ones(n, dtype=np.float64)
    is_leader = np.ones(n, dtype=bool)
    order = np.lexsort((dst, -sim, src))  # by row, then best cosine, then smallest neighbour
    for s, d, w in zip(src[order].tolist(), dst[order].tolist(), sim[order].tolist()):
        if is_leader[s] and is_leader[d]:  # rows are settled in id order: every d < s is final
            leader[s], similarity[s], is_leader[s] = d, w, False
    return leader, similarity


def near_duplicate_edges(
    ids: pl.Series, vectors: np.ndarray, keys: np.ndarray, rows: np.ndarray, threshold: float
) -> pl.DataFrame:
    """``bucket_edges`` as ``EDGES`` of ids (``ids`` sorted, ``rows`` positions into them)."""
    src, dst, sim = bucket_edges(keys, rows, vectors, threshold)
    return pl.DataFrame({"src": ids.gather(src), "dst": ids.gather(dst), "similarity": sim}, schema=EDGES)


def resolve_edges(edges: pl.DataFrame) -> pl.DataFrame:
    """``resolve_leaders`` over ``EDGES``: the ``MOVES`` of the rows that join another row. Whole
    components in, the whole-graph answer out."""
    ids = pl.concat([edges["src"], edges["dst"]]).unique().sort()
    leader, sim = resolve_leaders(
        len(ids),
        ids.search_sorted(edges["src"]).to_numpy(),
        ids.search_sorted(edges["dst"]).to_numpy(),
        edges["similarity"].to_numpy(),
    )
    moved = leader != np.arange(len(ids))
    return pl.DataFrame(
        {"conversation_id": ids.filter(moved), "representative_id": ids.gather(leader[moved]), "similarity": sim[moved]},
        schema=MOVES,
    )


def near_duplicates(ids: pl.Series, vectors: np.ndarray, threshold: float) -> pl.DataFrame:
    """``MOVES`` of one week's exact representatives (``ids`` sorted, rows L2-normalized)."""
    keys = lsh_keys(vectors)
    rows = np.repeat(np.arange(len(ids)), keys.shape[1])
    return resolve_edges(near_duplicate_edges(ids, vectors, keys.ravel(), rows, threshold))


def cluster_embedding(
    exact: pl.DataFrame,
    truncated: pl.DataFrame,
    embed: Callable[[list[str]], np.ndarray],
    threshold: float,
) -> pl.DataFrame:
    """Merge exact-hash clusters whose representatives are near-duplicates by embedding."""
    return merge_near_duplicates(exact, embed_representatives(exact, truncated, embed), threshold)


def embed_representatives(exact: pl.DataFrame, truncated: pl.DataFrame, embed: Callable[[list[str]], np.ndarray]) -> pl.DataFrame:
    """``(conversation_id, week_start, vector)`` of the exact representatives, sorted by week and id: only
    they are embedded (copies cost nothing), and the vectors are kept for ``representative_embeddings``."""
    reps = (
        exact.filter(pl.col("is_representative"))
        .select("conversation_id", "week_start")
        .join(truncated.select("conversation_id", "transcript"), on="conversation_id", how="left")
        .sort("week_start", "conversation_id")  # leaders are the smallest ids, as in exact dedupe
    )
    parts = [
        group.select("conversation_id", "week_start").with_columns(
            vector=pl.Series(embed(group["transcript"].fill_null("").to_list())).cast(pl.List(pl.Float32))
        )
        for _, group in reps.group_by("week_start", maintain_order=True)
    ]
    schema = tables.schema({"conversation_id": pl.String, "week_start": pl.Date, "vector": pl.List(pl.Float32)})
    return pl.concat(parts) if parts else tables.empty(schema)


def vector_matrix(vectors: pl.Series) -> np.ndarray:
    """A ``list[float32]`` column as a 2-D float32 array (one row per entry, all of one length)."""
    return vectors.explode().to_numpy().astype(np.float32, copy=False).reshape(len(vectors), -1)


def merge_near_duplicates(exact: pl.DataFrame, embedded: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """``cluster_embedding`` from the representatives' vectors (``embed_representatives``).

    Rows whose cluster changed get method ``embedding`` and the cosine of their exact representative to
    the new representative.
    """
    moved = [
        near_duplicates(group["conversation_id"], vector_matrix(group["vector"]), threshold).with_columns(
            week_start=pl.lit(week, pl.Date)
        )
        for (week,), group in embedded.group_by("week_start", maintain_order=True)
    ]
    merged = pl.concat(moved) if moved else tables.empty(tables.schema({**MOVES, "week_start": pl.Date}))
    merged = merged.rename({"conversation_id": "exact_rep", "representative_id": "new_rep", "similarity": "rep_similarity"})
    moved_row = pl.col("new_rep").is_not_null()
    clusters = (
        exact.join(merged, left_on=["week_start", "representative_id"], right_on=["week_start", "exact_rep"], how="left")
        .with_columns(
            pl.col("new_rep").fill_null(pl.col("representative_id")).alias("representative_id"),
            pl.when(moved_row).then(pl.lit(METHOD_EMBEDDING)).otherwise(pl.col("method")).alias("method"),
            pl.when(moved_row).then(pl.col("rep_similarity")).otherwise(pl.col("similarity")).alias("similarity"),
        )
        .with_columns(
            pl.len().over("week_start", "representative_id").cast(pl.Int64).alias("cluster_size"),
            (pl.col("conversation_id") == pl.col("representative_id")).alias("is_representative"),
        )
    )
    return tables.conform(clusters, tables.CONVERSATION_CLUSTERS)


def representative_embeddings(clusters: pl.DataFrame, embedded: pl.DataFrame, embedder: str) -> pl.DataFrame:
    """``conversation_embeddings`` rows: the vectors of the final representatives, the only conversations
    whose labels are their own (later weeks reuse them by embedding, ``core.reuse``)."""
    reps = clusters.filter(pl.col("is_representative")).select("conversation_id", "week_start")
    return tables.conform(
        embedded.join(reps, on=["conversation_id", "week_start"]).with_columns(embedder=pl.lit(embedder)).sort("conversation_id"),
        tables.CONVERSATION_EMBEDDINGS,
    )
