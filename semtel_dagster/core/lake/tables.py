"""Table contracts (docs/architecture.md): the Polars schema of every Delta table the pipeline writes.

Every table is partitioned by ``week_start`` (a Date). Writers cast to these schemas so that both
engines, and every rerun, produce identical column types.
"""

from __future__ import annotations

import polars as pl

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})

CONVERSATIONS = pl.Schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "source": pl.String,
        "started_at": pl.Datetime("us", "UTC"),
        "messages": pl.List(MESSAGE),
        "n_turns": pl.Int32,
        "n_chars": pl.Int64,
    }
)

INGEST_REJECTS = pl.Schema(
    {
        "week_start": pl.Date,
        "source": pl.String,
        "record_ref": pl.String,
        "reason": pl.String,
        "raw": pl.String,
    }
)

CONVERSATIONS_TRUNCATED = pl.Schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "transcript": pl.String,
        "tokens_before": pl.Int64,
        "tokens_after": pl.Int64,
        "strategy": pl.String,
        "tokenizer": pl.String,
        "compression": pl.String,  # "none" or "extractive" (truncate.compress_messages)
        "tokens_compressed": pl.Int64,  # after compression, before truncation
    }
)

CONVERSATION_CLUSTERS = pl.Schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "representative_id": pl.String,
        "is_representative": pl.Boolean,
        "cluster_size": pl.Int64,
        "method": pl.String,
        "similarity": pl.Float64,
        "text_hash": pl.String,
    }
)

# Final representatives' vectors from embedding dedupe, kept so later weeks can match them (core.reuse).
CONVERSATION_EMBEDDINGS = pl.Schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "embedder": pl.String,  # the model's name: vectors of different embedders are never compared
        "vector": pl.List(pl.Float32),
    }
)

LLM_RESPONSES = pl.Schema(
    {
        "request_id": pl.String,
        "week_start": pl.Date,
        "conversation_ids": pl.List(pl.String),
        "classifiers": pl.List(pl.String),
        "prompt_name": pl.String,
        "prompt_version": pl.String,
        "model": pl.String,
        "endpoint": pl.String,
        "status": pl.String,
        "error": pl.String,
        "finish_reason": pl.String,
        "raw_text": pl.String,
        "prompt_tokens": pl.Int64,
        "completion_tokens": pl.Int64,
        "latency_ms": pl.Float64,
        "attempts": pl.Int32,
        "rate_limited": pl.Int32,
        "created_at": pl.Datetime("us", "UTC"),
        "strategy": pl.String,
    }
)

CLASSIFICATIONS = pl.Schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "classifier": pl.String,
        "label": pl.String,
        "raw_label": pl.String,
        "cleaning": pl.String,
        "prompt_version": pl.String,
        "model": pl.String,
        "representative_id": pl.String,
        "request_id": pl.String,
    }
)

CLASSIFICATION_REJECTS = pl.Schema(
    {
        "request_id": pl.String,
        "week_start": pl.Date,
        "conversation_id": pl.String,
        "classifier": pl.String,
        "reason": pl.String,
        "raw_text": pl.String,
    }
)

WEEKLY_INSIGHTS = pl.Schema(
    {
        "week_start": pl.Date,
        "classifier": pl.String,
        "label": pl.String,
        "conversations": pl.Int64,
        "share": pl.Float64,
        "labeled_conversations": pl.Int64,
    }
)

TABLES: dict[str, pl.Schema] = {
    "conversations": CONVERSATIONS,
    "ingest_rejects": INGEST_REJECTS,
    "conversations_truncated": CONVERSATIONS_TRUNCATED,
    "conversation_clusters": CONVERSATION_CLUSTERS,
    "conversation_embeddings": CONVERSATION_EMBEDDINGS,
    "llm_responses": LLM_RESPONSES,
    "classifications": CLASSIFICATIONS,
    "classification_rejects": CLASSIFICATION_REJECTS,
    "weekly_insights": WEEKLY_INSIGHTS,
}


def conform(df: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Select and cast ``df`` to ``schema``: missing columns are a bug, so they raise."""
    missing = [name for name in schema if name not in df.columns]
    if missing:
        raise ValueError(f"missing columns {missing}; expected {list(schema)}")
    return df.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
