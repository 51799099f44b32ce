"""Cross-week label reuse: a conversation whose text was already classified in an earlier week is
answered from that stored label instead of a new LLM call.

The match is the exact normalized-text hash of ``conversation_clusters`` (the same key exact dedupe
uses within a week), and a stored label is reused only when it was given under the classifier's
current prompt (alone or batched, ``core.classify.label_versions``) by a model of today's pool, so a
prompt edit or a model change re-asks everything. Reused answers are written as ``llm_responses`` rows
under the single request id of their pair (endpoint ``label_reuse``, the original model, zero tokens),
so parsing, fan-out, gates and resume need no special case; under a batched strategy the pair is
pre-answered and leaves its batch (``core.classify``).

Two steps, so a distributed engine can do the first as its own join: ``candidates`` matches this
week's representatives with every stored label of the same text (joins only), ``reused_answers`` picks
one per pair and writes the rows (per representative, so any partition by representative works).

Optionally (``reuse_match: embedding``) a representative with no earlier conversation of the same text
is matched by embedding: to the most similar final representative of the earlier weeks
(``conversation_embeddings``, same embedder) with cosine >= threshold, whose labels then count as
candidates like an exact match's. Candidates are the earlier rows sharing one of its LSH buckets
(``core.dedupe.lsh_keys``), never all pairs: ``bucket_matches`` scans buckets (whole buckets in, so
Spark runs it per task after a shuffle by key) and ``best_matches`` keeps one match per representative.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from semtel_dagster.core.classify.plan import STRATEGY_REUSE, label_versions, local_answer
from semtel_dagster.core.classify.prompts import Classifier
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.requests import request_id
from semtel_dagster.core.prepare.dedupe import lsh_keys, vector_matrix

ENDPOINT = STRATEGY_REUSE

# One stored label of an earlier conversation with the same text as this week's representative.
CANDIDATES = pl.Schema(
    {
        "conversation_id": pl.String,  # this week's representative
        "classifier": pl.String,
        "label": pl.String,
        "prompt_version": pl.String,
        "model": pl.String,
        "source_id": pl.String,  # the earlier conversation
        "source_week": pl.Date,
        "similarity": pl.Float64,  # cosine of an embedding match; null for the same text
    }
)

# The earlier representative an embedding match found for this week's representative.
MATCHES = pl.Schema({"conversation_id": pl.String, "source_id": pl.String, "source_week": pl.Date, "similarity": pl.Float64})
_BLOCK = 256  # query rows per matrix product inside a bucket: bounds memory on templated text


def candidates(clusters: pl.DataFrame, earlier_clusters: pl.DataFrame, earlier_classifications: pl.DataFrame) -> pl.DataFrame:
    """Every stored label whose conversation's text equals a representative's text this week."""
    stored = earlier_clusters.select("conversation_id", "week_start", "text_hash").join(
        earlier_classifications.select("conversation_id", "week_start", "classifier", "label", "prompt_version", "model"),
        on=["conversation_id", "week_start"],
    )
    reps = clusters.filter(pl.col("is_representative")).select("conversation_id", "text_hash")
    matched = reps.join(stored.rename({"conversation_id": "source_id", "week_start": "source_week"}), on="text_hash")
    return tables.conform(matched.with_columns(similarity=pl.lit(None, pl.Float64)), CANDIDATES)


def embedding_candidates(
    found: pl.DataFrame,
    embeddings: pl.DataFrame,
    earlier_embeddings: pl.DataFrame,
    earlier_classifications: pl.DataFrame,
    threshold: float,
) -> pl.DataFrame:
    """``CANDIDATES`` by embedding for this week's representatives (``embeddings``) that ``found`` (the
    exact candidates) has none for: the stored labels of each one's best earlier match."""
    queries = embeddings.join(found.select("conversation_id").unique(), on="conversation_id", how="anti")
    return match_labels(match_embeddings(queries, earlier_embeddings, threshold), earlier_classifications)


def match_embeddings(queries: pl.DataFrame, stored: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """``MATCHES`` of ``queries`` among ``stored`` (both ``conversation_embeddings`` rows), whole in memory."""
    stored = stored.join(queries.select("embedder").unique(), on="embedder", how="semi")
    rows = pl.concat([queries.with_columns(query=pl.lit(True)), stored.with_columns(query=pl.lit(False))])
    parts = [tables.empty(MATCHES)]
    for _, group in rows.group_by("embedder"):  # only vectors of one embedder are comparable
        keys = lsh_keys(vector_matrix(group["vector"]))
        parts.append(bucket_matches(group, keys.ravel(), np.repeat(np.arange(group.height), keys.shape[1]), threshold))
    return best_matches(pl.concat(parts))


def bucket_matches(rows: pl.DataFrame, keys: np.ndarray, positions: np.ndarray, threshold: float) -> pl.DataFrame:
    """Per LSH bucket, each query row's most similar stored row with cosine >= ``threshold``, as ``MATCHES``.

    ``rows`` (one embedder; ``conversation_embeddings`` columns and ``query``) are unique by id and week;
    entry ``i`` puts ``rows[positions[i]]`` in bucket ``keys[i]``. Rows are put in one canonical order
    first (stored: id, then latest week) and each bucket is one product in that order with one BLAS
    thread, so any engine holding a whole bucket computes the very same cosines and picks the same row.
    """
    order = (
        rows.with_row_index("_row")
        .sort(["query", "conversation_id", "week_start"], descending=[True, False, True])["_row"]
        .to_numpy()
    )
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    rows, positions = rows[order], rank[np.asarray(positions, dtype=np.int64)]
    vectors = vector_matrix(rows["vector"]).astype(np.float64)
    is_query = rows["query"].to_numpy()
    sort = np.lexsort((positions, keys))
    keys, positions = np.asarray(keys)[sort], positions[sort]
    bounds = np.flatnonzero(np.diff(keys)) + 1
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    with threadpool_limits(1, user_api="blas"):
        for members in np.split(positions, bounds):
            queries, stored = members[is_query[members]], members[~is_query[members]]
            for start in range(0, len(queries) if len(stored) else 0, _BLOCK):
                block = queries[start : start + _BLOCK]
                sims = vectors[block] @ vectors[stored].T
                best = sims.argmax(axis=1)  # first maximum: the smallest id, then the latest week
                cosine = sims[np.arange(len(block)), best]
                hit = cosine >= threshold
                found.append((block[hit], stored[best[hit]], cosine[hit]))
    query, source, cosine = (np.concatenate(p) for p in zip(*found)) if found else (np.zeros(0, np.int64),) * 3
    return pl.DataFrame(
        {
            "conversation_id": rows["conversation_id"].gather(query),
            "source_id": rows["conversation_id"].gather(source),
            "source_week": rows["week_start"].gather(source),
            "similarity": cosine.astype(np.float64),
        },
        schema=MATCHES,
    )


def best_matches(matches: pl.DataFrame) -> pl.DataFrame:
    """One ``MATCHES`` row per representative: the best cosine over its buckets (ties: the smallest id,
    then the latest week). All of a representative's rows in, its answer out (Spark: per task)."""
    return (
        matches.sort(["similarity", "source_id", "source_week"], descending=[True, False, True])
        .unique(subset="conversation_id", keep="first", maintain_order=True)
        .sort("conversation_id")
    )


def match_labels(matches: pl.DataFrame, earlier_classifications: pl.DataFrame) -> pl.DataFrame:
    """``CANDIDATES``: every stored label of each match's earlier conversation, with the match's cosine."""
    labels = earlier_classifications.select(
        pl.col("conversation_id").alias("source_id"),
        pl.col("week_start").alias("source_week"),
        "classifier",
        "label",
        "prompt_version",
        "model",
    )
    return tables.conform(matches.join(labels, on=["source_id", "source_week"]), CANDIDATES)


def reused_answers(
    found: pl.DataFrame,
    classifiers: dict[str, Classifier],
    models: Collection[str],
    week_start: dt.date,
    answered_ids: Collection[str] = frozenset(),
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """``llm_responses`` rows for the representatives in ``found`` (``candidates``) with a reusable label.

    When several earlier conversations share the text, the most recent week's label wins (ties: the
    smallest conversation id), so the choice is deterministic. Requests in ``answered_ids`` are skipped.
    """
    accepted = pl.DataFrame(
        [(name, version) for name, versions in label_versions(classifiers).items() for version in sorted(versions)],
        schema={"classifier": pl.String, "prompt_version": pl.String},
        orient="row",
    )
    chosen = (
        found.filter(pl.col("model").is_in(sorted(models)) & pl.col("label").is_not_null())
        .join(accepted, on=["classifier", "prompt_version"])
        .sort(["source_week", "source_id"], descending=[True, False])
        .unique(subset=["conversation_id", "classifier"], keep="first", maintain_order=True)
        .sort("conversation_id", "classifier")
    )
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    columns = ("conversation_id", "classifier", "label", "model", "source_id", "similarity")
    for cid, classifier, label, model, source, cosine in chosen.select(columns).iter_rows():
        # an embedding match says whose label it is and how close (the parser reads only "label")
        answer = {"label": label} if cosine is None else {"label": label, "reused_from": source, "cosine": round(cosine, 6)}
        version = classifiers[classifier].version  # the pair's single request under today's prompt
        rid = request_id([cid], [classifier], version)
        if rid in answered_ids:
            continue
        rows.append(local_answer(week_start, cid, classifier, version, model, answer, ENDPOINT, now))
    return pl.DataFrame(rows, schema=tables.LLM_RESPONSES) if rows else tables.empty(tables.LLM_RESPONSES)
