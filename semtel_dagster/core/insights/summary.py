"""What a run produced, read back from the lake: rows per table, LLM usage, label distributions."""

from __future__ import annotations

import datetime as dt

import polars as pl

from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm.requests import STATUS_OK


def pipeline_summary(lake_root: str, week: dt.date) -> dict:
    frames = {name: delta.read_weeks(delta.table_uri(lake_root, name), schema, [week]) for name, schema in tables.TABLES.items()}
    responses = frames["llm_responses"]
    insights = frames["weekly_insights"]
    return {
        "rows": {name: frame.height for name, frame in frames.items()},
        "llm": {
            "requests": responses.height,
            "http_attempts": int(responses["attempts"].sum() or 0),
            "retries": int((responses["attempts"] - 1).sum() or 0),
            "rate_limited": int(responses["rate_limited"].sum() or 0),
            "failed": responses.filter(pl.col("status") != STATUS_OK).height,
            "prompt_tokens": int(responses["prompt_tokens"].sum() or 0),
            "completion_tokens": int(responses["completion_tokens"].sum() or 0),
        },
        "labels": {
            classifier: [
                (label, count, None if share is None else round(share, 4))  # None: withheld, under the minimum group size
                for label, count, share in group.select("label", "conversations", "share").iter_rows()
            ]
            for (classifier,), group in insights.sort("classifier").group_by("classifier", maintain_order=True)
        },
    }
