"""Materialization metadata the Dagster UI understands: row counts, column schema, samples, distributions."""

import hashlib
import os

import polars as pl
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from semtel_dagster.core.classify.prompts import default_prompts_dir
from semtel_dagster.core.lake import tables
from semtel_dagster.core.lake.frames import value_counts
from semtel_dagster.core.llm.budget import budget_summary
from semtel_dagster.engines import Written

_CELL_CHARS = 80


# Bumped when a stage's logic changes what it writes, so the UI marks the stage's weeks as stale.
STAGE_VERSION = "1"
STAGE_VERSIONS = {"truncate": "2"}  # 2: transcripts scrubbed of PII, redactions counted
OWNERS = [os.environ.get("SEMTEL_OWNER", "team:semtel")]


def prompts_version() -> str:
    """Hash of every classifier's version (each a hash of its .prompty file's bytes, ``core.classify.prompts``),
    read without loading the prompts: a prompt edit makes the classify and parse weeks stale."""
    digest = hashlib.sha256()
    for path in sorted(default_prompts_dir().glob("*.prompty")):
        digest.update(f"{path.stem}:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}\n".encode())
    return digest.hexdigest()[:12]


def catalog(stage: str, *, llm: bool = False, prompts: bool = False) -> dict:
    """Kinds, owners, tags and code version of a stage's assets, as ``@asset``/``AssetSpec`` keywords.
    The engine kind is the one this code location runs (``SEMTEL_ENGINE``)."""
    engine = os.environ.get("SEMTEL_ENGINE", "polars")
    return {
        "kinds": {"delta", engine, *(["openai"] if llm else [])},
        "owners": OWNERS,
        "tags": {"stage": stage, "partitioned": "weekly"},
        "code_version": prompts_version() if prompts else STAGE_VERSIONS.get(stage, STAGE_VERSION),
    }


def table_schema(frame: pl.DataFrame, table: str | None = None) -> TableSchema:
    """Columns with their type and, for the pipeline's tables, the contract's description."""
    described = tables.DESCRIPTIONS.get(table, {}) if table is not None else {}
    return TableSchema(
        columns=[TableColumn(name, str(dtype), description=described.get(name)) for name, dtype in frame.schema.items()]
    )


def _number(value: object) -> str | int | float | None:
    if isinstance(value, float):
        return round(value, 4)
    return value if value is None or isinstance(value, str | int) else str(value)


def _kind(values: list) -> str:
    if any(isinstance(v, float) for v in values):
        return "float"
    if all(isinstance(v, bool) for v in values):
        return "bool"
    return "int" if all(isinstance(v, int) for v in values) else "string"


def records_table(rows: list[dict]) -> MetadataValue:
    """Rows of equal keys as a UI table (floats rounded), instead of raw JSON."""
    if not rows:
        return MetadataValue.text("(none)")
    columns = list(rows[0])
    kinds = {c: _kind([r[c] for r in rows]) for c in columns}
    return MetadataValue.table(
        records=[TableRecord({c: str(r[c]) if kinds[c] == "string" else _number(r[c]) for c in columns}) for r in rows],
        schema=TableSchema(columns=[TableColumn(c, kinds[c]) for c in columns]),
    )


def counts_table(counts: dict, key: str, value: str = "rows") -> MetadataValue:
    return records_table([{key: str(k), value: int(v)} for k, v in counts.items()])


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
        "dagster/column_schema": table_schema(written.preview, written.table),
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
        "cached_tokens": MetadataValue.int(totals["cached_tokens"]),  # of prompt_tokens, from the provider's prompt cache
        "dispatch_seconds": MetadataValue.float(round(totals["wall_seconds"], 2)),
        "timeouts": MetadataValue.int(totals["timeouts"]),
        "queue_timeouts": MetadataValue.int(totals["queue_timeouts"]),
        "work_timeouts": MetadataValue.int(totals["work_timeouts"]),
        "stall_timeouts": MetadataValue.int(totals["stall_timeouts"]),
        "hedged_requests": MetadataValue.int(totals["hedges"]),
        "budget": records_table(
            [{k: "unset" if v is None else v for k, v in budget_summary(totals, budget_tokens, budget_cost).items()}]
        ),
        "per_endpoint": records_table([{"endpoint": name, **stats} for name, stats in sorted(totals["endpoints"].items())]),
        "prompt_versions": records_table([{"classifier": name, "version": c.version} for name, c in classifiers.items()]),
    }
