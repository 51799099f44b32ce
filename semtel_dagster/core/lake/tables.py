"""Table contracts (docs/architecture.md): the Polars schema of every Delta table the pipeline writes.

Every table is partitioned by ``week_start`` (a Date). Writers cast to these schemas so that both
engines, and every rerun, produce identical column types.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from polars._typing import PolarsDataType

from semtel_dagster.core.prepare.scrub import KINDS


def schema(columns: Mapping[str, PolarsDataType]) -> pl.Schema:
    """A ``pl.Schema`` from columns that mix dtype classes and instances (``pl.String``, ``pl.List(...)``),
    typed so the checker accepts the mix that ``pl.Schema``'s own signature rejects."""
    return pl.Schema(columns)


MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})

# Optional engagement signals a landing record may carry (core.ingest.conversation): nullable, and null
# where a source sends none, so lakes and producers without them keep working unchanged.
ENGAGEMENT = pl.Schema(
    {
        "rating": pl.Float64,
        "thumbs_up": pl.Boolean,
        "session_seconds": pl.Float64,
        "returned_next_week": pl.Boolean,
    }
)

CONVERSATIONS = schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "source": pl.String,
        "started_at": pl.Datetime("us", "UTC"),
        "messages": pl.List(MESSAGE),
        "n_turns": pl.Int32,
        "n_chars": pl.Int64,
        **ENGAGEMENT,
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

# What truncation writes (core.prepare.truncate); the table adds the scrubber's counts (core.prepare.scrub).
TRUNCATED_TRANSCRIPTS = pl.Schema(
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

REDACTIONS = pl.Struct({kind: pl.Int32 for kind in KINDS})  # per type: values replaced by a placeholder
CONVERSATIONS_TRUNCATED = schema({**TRUNCATED_TRANSCRIPTS, "redactions": REDACTIONS})

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
CONVERSATION_EMBEDDINGS = schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "embedder": pl.String,  # the model's name: vectors of different embedders are never compared
        "vector": pl.List(pl.Float32),
    }
)

LLM_RESPONSES = schema(
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
        "cached_tokens": pl.Int64,
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
        "suppressed_labels": pl.Int64,
    }
)

WEEKLY_CROSSTABS = pl.Schema(
    {
        "week_start": pl.Date,
        "classifier_a": pl.String,
        "label_a": pl.String,
        "classifier_b": pl.String,
        "label_b": pl.String,
        "conversations": pl.Int64,
        "share": pl.Float64,
        "labeled_both": pl.Int64,
        "suppressed_cells": pl.Int64,
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
    "weekly_crosstabs": WEEKLY_CROSSTABS,
}


# Not a weekly asset: the ledger of provider batches, appended to before anything is done with a batch
# (intent, then its file id, then its batch id, then each status seen), so a rerun polls what an earlier
# run submitted instead of submitting it again. The latest row per batch_key is the batch's state.
LLM_BATCHES = schema(
    {
        "batch_key": pl.String,
        "week_start": pl.Date,
        "endpoint": pl.String,
        "model": pl.String,
        "request_ids": pl.List(pl.String),
        "prompt_tokens": pl.Int64,
        "bytes": pl.Int64,
        "input_file_id": pl.String,
        "batch_id": pl.String,
        "status": pl.String,
        "completed": pl.Int64,
        "failed": pl.Int64,
        "output_file_id": pl.String,
        "error_file_id": pl.String,
        "error": pl.String,
        "updated_at": pl.Datetime("us", "UTC"),
    }
)
LEDGERS: dict[str, pl.Schema] = {"llm_batches": LLM_BATCHES}


_WEEK = "Monday (UTC) of the week the conversation started: the partition key"

# Column descriptions for the catalog (the UI's column schema). Every column of TABLES is described.
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "conversations": {
        "conversation_id": "Id from the source, unique within the week",
        "week_start": _WEEK,
        "source": "Where the record came from (landing file or source field)",
        "started_at": "When the conversation started (UTC)",
        "messages": "Turns in order: role (user, assistant, system) and content",
        "n_turns": "Number of messages",
        "n_chars": "Characters over all messages",
        "rating": "User's rating of the conversation, as the source sent it (null: none given)",
        "thumbs_up": "True for a thumbs up, false for a thumbs down (null: no feedback)",
        "session_seconds": "Length of the session in seconds (null: not sent)",
        "returned_next_week": "Whether the user came back the following week (null: not known)",
    },
    "ingest_rejects": {
        "week_start": _WEEK,
        "source": "Landing file the record came from",
        "record_ref": "file:line (or row) of the rejected record",
        "reason": "Why it was rejected",
        "raw": "The record as landed, truncated",
    },
    "conversations_truncated": {
        "conversation_id": "The conversation",
        "week_start": _WEEK,
        "transcript": "Transcript sent to classifiers, within the token budget",
        "tokens_before": "Tokens of the full transcript",
        "tokens_after": "Tokens after compression and truncation",
        "strategy": "How it was cut (none, head_tail, head, tail, turns)",
        "tokenizer": "Encoding the tokens were counted with",
        "compression": "none or extractive",
        "tokens_compressed": "Tokens after compression, before truncation",
        "redactions": "PII values replaced by a typed placeholder before truncation, per type "
        "(email, phone, card, ip, iban, secret, url_credentials, name); null when scrub_pii is off, name null "
        "unless scrub_names",
    },
    "conversation_clusters": {
        "conversation_id": "The conversation",
        "week_start": _WEEK,
        "representative_id": "Conversation whose labels this one receives",
        "is_representative": "True for the one conversation per cluster sent to the LLM",
        "cluster_size": "Conversations in the cluster",
        "method": "exact (normalized-text hash) or embedding (cosine)",
        "similarity": "Cosine to the representative (1 for exact)",
        "text_hash": "Hash of the normalized transcript",
    },
    "conversation_embeddings": {
        "conversation_id": "A final representative",
        "week_start": _WEEK,
        "embedder": "Model the vector comes from; vectors of different models are never compared",
        "vector": "Sentence embedding of the transcript",
    },
    "llm_responses": {
        "request_id": "Deterministic id of the request (conversations, classifiers, prompt version)",
        "week_start": _WEEK,
        "conversation_ids": "Conversations the request asked about",
        "classifiers": "Classifiers the request asked for",
        "prompt_name": "Prompt file used",
        "prompt_version": "Hash of the prompt file",
        "model": "Model that answered",
        "endpoint": "Endpoint that answered (or label_reuse / embedding_classifier)",
        "status": "ok, or error after the last attempt",
        "error": "Final error, secrets redacted",
        "finish_reason": "Why the model stopped (stop, length, ...)",
        "raw_text": "The model's answer as received",
        "prompt_tokens": "Prompt tokens the endpoint reported",
        "completion_tokens": "Completion tokens the endpoint reported",
        "cached_tokens": "Of prompt_tokens, those the endpoint served from its prompt cache (null: not reported)",
        "latency_ms": "Time of the successful attempt",
        "attempts": "HTTP attempts, retries included",
        "rate_limited": "Attempts refused with 429",
        "created_at": "When the answer was recorded (UTC)",
        "strategy": "Batching strategy of the request",
    },
    "classifications": {
        "conversation_id": "The conversation",
        "week_start": _WEEK,
        "classifier": "Classifier (prompt file name)",
        "label": "Label from the classifier's set",
        "raw_label": "Label as the model wrote it",
        "cleaning": "How raw_label became label (exact, case, fuzzy, ...)",
        "prompt_version": "Hash of the classifier's prompt file, alone or under a batched template",
        "model": "Model that answered",
        "representative_id": "Conversation whose answer this label comes from",
        "request_id": "Request that answered",
    },
    "classification_rejects": {
        "request_id": "Request whose answer gave no valid label",
        "week_start": _WEEK,
        "conversation_id": "The conversation",
        "classifier": "Classifier",
        "reason": "Why no label could be recovered",
        "raw_text": "The answer, truncated",
    },
    "weekly_insights": {
        "week_start": _WEEK,
        "classifier": "Classifier",
        "label": "Label",
        "conversations": "Conversations with this label (null: a bucket under the minimum group size, withheld)",
        "share": "Share of the classifier's labeled conversations",
        "labeled_conversations": "Conversations the classifier labeled this week (null when under the minimum group size)",
        "suppressed_labels": "Labels merged into this <suppressed> row (minimum group size); 0 for a label's own row",
    },
    "llm_batches": {
        "batch_key": "Local key of the batch: a hash of its endpoint and request ids, known before upload",
        "week_start": _WEEK,
        "endpoint": "Endpoint whose batch API holds the batch",
        "model": "Model of that endpoint",
        "request_ids": "llm_responses request ids in the batch file (its custom_id values)",
        "prompt_tokens": "Prompt tokens of the file as estimated locally (counted against the enqueued-token limit)",
        "bytes": "Size of the JSONL file",
        "input_file_id": "Provider file id of the uploaded JSONL (null until uploaded)",
        "batch_id": "Provider batch id (null until created)",
        "status": "planned, uploaded, then the provider's status (validating ... completed), then collected",
        "completed": "Items the provider answered (request_counts.completed)",
        "failed": "Items the provider failed (request_counts.failed)",
        "output_file_id": "Provider file of the answers",
        "error_file_id": "Provider file of the failed items",
        "error": "Why the batch failed, secrets redacted",
        "updated_at": "When this state was recorded (UTC)",
    },
    "weekly_crosstabs": {
        "week_start": _WEEK,
        "classifier_a": "Row classifier",
        "label_a": "Its label (<suppressed>: rows too small to publish, merged)",
        "classifier_b": "Column classifier",
        "label_b": "Its label (<suppressed>: the row's cells too small to publish, merged)",
        "conversations": "Conversations with both labels (null: a bucket under the minimum group size, withheld)",
        "share": "Share of the conversations both classifiers labeled",
        "labeled_both": "Conversations both classifiers labeled this week",
        "suppressed_cells": "Cells merged into this <suppressed> cell; 0 for a cell of its own",
    },
}


def conform(df: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Select and cast ``df`` to ``schema``: missing columns are a bug, so they raise, except the optional
    engagement columns, which are null where a frame was built without them."""
    df = df.with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in ENGAGEMENT.items() if name in schema and name not in df.columns
    )
    missing = [name for name in schema if name not in df.columns]
    if missing:
        raise ValueError(f"missing columns {missing}; expected {list(schema)}")
    return df.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def empty(schema: pl.Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
