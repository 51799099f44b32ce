"""Cross-week label reuse: a conversation whose text was already classified in an earlier week is
answered from that stored label instead of a new LLM call.

The match is the exact normalized-text hash of ``conversation_clusters`` (the same key exact dedupe
uses within a week), and a stored label is reused only when its prompt version is the classifier's
current one and its model is a model of today's pool, so a prompt edit or a model change re-asks
everything. Reused answers are written as ``llm_responses`` rows under the request id the LLM call
would have had (endpoint ``label_reuse``, the original model, zero tokens), so parsing, fan-out, gates
and resume need no special case.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from semtel_dagster.core import tables
from semtel_dagster.core.dispatch import STATUS_OK, request_id
from semtel_dagster.core.prompts import Classifier

ENDPOINT = "label_reuse"


def reused_answers(
    clusters: pl.DataFrame,
    earlier_clusters: pl.DataFrame,
    earlier_classifications: pl.DataFrame,
    classifiers: dict[str, Classifier],
    models: set[str],
    week_start: dt.date,
    answered_ids: set[str] = frozenset(),
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """``llm_responses`` rows for this week's representatives whose text has a reusable stored label.

    When several earlier conversations share the text, the most recent week's label wins (ties: the
    smallest conversation id), so the choice is deterministic.
    """
    stored = (
        earlier_clusters.select("conversation_id", "text_hash")
        .join(
            earlier_classifications.filter(pl.col("model").is_in(sorted(models))).select(
                "conversation_id", "week_start", "classifier", "label", "prompt_version", "model"
            ),
            on="conversation_id",
        )
        .join(
            pl.DataFrame(
                {"classifier": list(classifiers), "prompt_version": [c.version for c in classifiers.values()]}
            ),
            on=["classifier", "prompt_version"],
        )
        .sort(["week_start", "conversation_id"], descending=[True, False])
        .unique(subset=["text_hash", "classifier"], keep="first", maintain_order=True)
    )
    reps = clusters.filter(pl.col("is_representative")).select("conversation_id", "text_hash")
    matches = reps.join(stored.drop("conversation_id", "week_start"), on="text_hash").sort("conversation_id", "classifier")
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = []
    for cid, _, classifier, label, version, model in matches.iter_rows():
        rid = request_id([cid], [classifier], version)
        if rid in answered_ids:
            continue
        rows.append({
            "request_id": rid, "week_start": week_start, "conversation_ids": [cid], "classifiers": [classifier],
            "prompt_name": classifier, "prompt_version": version, "model": model, "endpoint": ENDPOINT,
            "status": STATUS_OK, "error": None, "finish_reason": "stop", "raw_text": json.dumps({"label": label}),
            "prompt_tokens": 0, "completion_tokens": 0, "latency_ms": 0.0, "attempts": 0, "rate_limited": 0,
            "created_at": now, "strategy": ENDPOINT,
        })
    return pl.DataFrame(rows, schema=tables.LLM_RESPONSES) if rows else tables.empty(tables.LLM_RESPONSES)
