"""Materialization metadata the Dagster UI understands: row counts, column schema, samples, distributions."""

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema

from semtel_dagster.core.lake.frames import value_counts
from semtel_dagster.core.llm.budget import budget_summary
from semtel_dagster.engines import Written

_CELL_CHARS = 80


def table_schema(frame: pl.DataFrame) -> TableSchema:
    return TableSchema(columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])


def _cell(value: object) -> str:
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def markdown_table(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in frame.iter_rows())


def table_metadata(written: Written, uri: str) -> dict:
    """Row count, schema and sample from what the engine measured at commit (no read of the week here)."""
    return {
        "dagster/row_count": MetadataValue.int(written.rows),
        "dagster/column_schema": table_schema(written.preview),
        "dagster/uri": MetadataValue.path(uri),
        "sample": MetadataValue.md(markdown_table(written.preview)) if written.rows else MetadataValue.text("(empty)"),
        "delta_version": MetadataValue.int(written.version),
    }


def label_distribution(classifications) -> dict:
    """One markdown table per classifier: label, conversations, share (counted where the week lives)."""
    counts = value_counts(classifications, "classifier", "label").rename({"len": "conversations"})
    metadata = {}
    for (classifier,), group in counts.group_by("classifier"):
        table = (
            group.select("label", "conversations")
            .with_columns((pl.col("conversations") / pl.col("conversations").sum()).round(4).alias("share"))
            .sort("conversations", "label", descending=[True, False])
        )
        metadata[f"labels/{classifier}"] = MetadataValue.md(markdown_table(table))
    return dict(sorted(metadata.items()))


def dispatch_metadata(totals: dict, classifiers: dict, budget_tokens: int | None, budget_cost: float | None) -> dict:
    """Per-run LLM totals (``DispatchStats.as_dict()``, summed over rounds or Spark tasks) for the UI."""
    return {
        "http_requests": MetadataValue.int(totals["requests"]),
        "retries": MetadataValue.int(totals["retries"]),
        "rate_limited": MetadataValue.int(totals["rate_limited"]),
        "failed_requests": MetadataValue.int(totals["errors"]),
        "prompt_tokens": MetadataValue.int(totals["prompt_tokens"]),
        "completion_tokens": MetadataValue.int(totals["completion_tokens"]),
        "dispatch_seconds": MetadataValue.float(totals["wall_seconds"]),
        "timeouts": MetadataValue.int(totals["timeouts"]),
        "hedged_requests": MetadataValue.int(totals["hedges"]),
        "budget": MetadataValue.json(budget_summary(totals, budget_tokens, budget_cost)),
        "per_endpoint": MetadataValue.json(totals["endpoints"]),
        "prompt_versions": MetadataValue.json({name: c.version for name, c in classifiers.items()}),
    }
