"""One blocking gate per stage table: a great-expectations suite over the week's rows.

A failed blocking check stops downstream steps of the same run. The table itself is already written
by then, so the gates also guard reruns: the next run of a downstream asset reads what was written
and its own gate fails again until the cause is fixed.
"""


import datetime as dt

import great_expectations as gx
import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from semtel_dagster.checks import invariants
from semtel_dagster.checks.gx_suites import validate
from semtel_dagster.core.dispatch import STATUS_ERROR, STATUS_OK
from semtel_dagster.core.evaluate import label_drift, label_quality
from semtel_dagster.partitions import partition_week, weekly_partitions
from semtel_dagster.resources import LakeResource, PipelineSettings

E = gx.expectations
TRUNCATION_SLACK_TOKENS = 8  # re-encoding at the cut can merge or split a token or two


def _all_true(column: str) -> E.ExpectColumnValuesToBeInSet:
    return E.ExpectColumnValuesToBeInSet(column=column, value_set=[True])


def _result(frame: pl.DataFrame, suite: str, expectations: list) -> AssetCheckResult:
    outcome = validate(frame, suite, expectations)
    metadata = outcome.metadata()
    metadata["results"] = MetadataValue.json(metadata["results"])
    return AssetCheckResult(passed=outcome.success, severity=AssetCheckSeverity.ERROR, metadata=metadata)


def _gate(asset: str, description: str):
    return asset_check(asset=asset, blocking=True, partitions_def=weekly_partitions, description=description)


@_gate("conversations", "Ids present and unique, every row in this week, at least one turn.")
def conversations_gate(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    frame = lake.read_week("conversations", week).drop("messages")
    return _result(
        frame,
        "conversations",
        [
            E.ExpectColumnValuesToNotBeNull(column="conversation_id"),
            E.ExpectColumnValuesToBeUnique(column="conversation_id"),
            E.ExpectColumnValuesToBeInSet(column="week_start", value_set=[week]),
            E.ExpectColumnValuesToBeBetween(column="n_turns", min_value=1),
        ],
    )


@_gate("ingest_rejects", "Every rejected record says why and where it came from.")
def ingest_rejects_gate(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    frame = lake.read_week("ingest_rejects", week)
    return _result(
        frame,
        "ingest_rejects",
        [
            E.ExpectColumnValuesToNotBeNull(column="reason"),
            E.ExpectColumnValuesToNotBeNull(column="record_ref"),
            E.ExpectColumnValuesToBeInSet(column="week_start", value_set=[week]),
        ],
    )


@_gate("conversations_truncated", "Row conservation with conversations; transcripts within the token budget.")
def truncated_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings
) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    conversations = lake.read_week("conversations", week).get_column("conversation_id")
    truncated = lake.read_week("conversations_truncated", week).drop("transcript")
    frame = invariants.covers(conversations, truncated).with_columns(
        (pl.col("tokens_after") <= settings.max_transcript_tokens + TRUNCATION_SLACK_TOKENS).alias("within_budget"),
        (pl.col("tokens_after") <= pl.col("tokens_before") + TRUNCATION_SLACK_TOKENS).alias("not_grown"),
    )
    return _result(
        frame,
        "conversations_truncated",
        [
            E.ExpectColumnValuesToBeUnique(column="conversation_id"),
            _all_true("expected"),
            _all_true("produced"),
            _all_true("within_budget"),
            _all_true("not_grown"),
        ],
    )


@_gate("conversation_clusters", "Row conservation; every conversation maps to an existing representative.")
def clusters_gate(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    truncated = lake.read_week("conversations_truncated", week).get_column("conversation_id")
    clusters = invariants.representatives_known(lake.read_week("conversation_clusters", week))
    frame = invariants.covers(truncated, clusters)
    return _result(
        frame,
        "conversation_clusters",
        [
            E.ExpectColumnValuesToBeUnique(column="conversation_id"),
            _all_true("expected"),
            _all_true("produced"),
            _all_true("representative_known"),
            E.ExpectColumnValuesToBeBetween(column="cluster_size", min_value=1),
        ],
    )


@_gate("llm_responses", "Every needed request has exactly one recorded outcome (answer or final failure).")
def responses_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings
) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    frame = invariants.request_coverage(
        lake.read_week("conversation_clusters", week),
        lake.read_week("llm_responses", week),
        settings.load_classifiers(),
        settings.batching_strategy,
        settings.batch_size,
    )
    return _result(
        frame.filter(pl.col("expected")),
        "llm_responses",
        [
            E.ExpectColumnValuesToBeUnique(column="request_id"),
            _all_true("produced"),
            E.ExpectColumnValuesToBeInSet(column="status", value_set=[STATUS_OK, STATUS_ERROR]),
        ],
    )


@_gate("classifications", "Row conservation: each conversation x classifier has one label in its set, or a reject.")
def classifications_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings
) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    frame = invariants.label_coverage(
        lake.read_week("conversations", week).get_column("conversation_id"),
        lake.read_week("classifications", week),
        lake.read_week("classification_rejects", week),
        settings.load_classifiers(),
    )
    return _result(
        frame,
        "classifications",
        [
            E.ExpectCompoundColumnsToBeUnique(column_list=["conversation_id", "classifier"]),
            _all_true("expected"),
            E.ExpectColumnValuesToNotBeNull(column="outcome"),
            _all_true("label_in_set"),
        ],
    )


@_gate("classification_rejects", "Every reject names its request and reason.")
def classification_rejects_gate(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    return _result(
        lake.read_week("classification_rejects", week),
        "classification_rejects",
        [E.ExpectColumnValuesToNotBeNull(column="reason"), E.ExpectColumnValuesToNotBeNull(column="request_id")],
    )


@_gate("weekly_insights", "Counts add up to the labeled conversations and shares to one, per classifier.")
def insights_gate(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    frame = invariants.insight_totals(
        lake.read_week("weekly_insights", week), lake.read_week("classifications", week)
    )
    return _result(frame, "weekly_insights", [_all_true("counts_match"), _all_true("shares_sum_to_one")])


STAGE_GATES = [
    conversations_gate,
    ingest_rejects_gate,
    truncated_gate,
    clusters_gate,
    responses_gate,
    classifications_gate,
    classification_rejects_gate,
    insights_gate,
]


@_gate("classifications", "Quality gate: parse-failure rate and reject share per classifier under the configured thresholds.")
def classification_quality_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings
) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    frame = label_quality(lake.read_week("classifications", week), lake.read_week("classification_rejects", week))
    return _result(
        frame,
        "classification_quality",
        [
            E.ExpectColumnValuesToBeBetween(column="parse_failure_rate", min_value=0.0, max_value=settings.max_parse_failure_rate),
            E.ExpectColumnValuesToBeBetween(column="reject_share", min_value=0.0, max_value=settings.max_reject_share),
        ],
    )


@asset_check(
    asset="classifications",
    blocking=False,
    partitions_def=weekly_partitions,
    description="Warning: a label distribution moved more than the threshold (Jensen-Shannon) since the previous week.",
)
def label_drift_warning(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings
) -> AssetCheckResult:
    week = partition_week(context.partition_key)
    previous = week - dt.timedelta(days=7)
    frame = label_drift(lake.read_week("classifications", week), lake.read_week("classifications", previous))
    result = _result(
        frame,
        "label_drift",
        [E.ExpectColumnValuesToBeBetween(column="js_divergence", min_value=0.0, max_value=settings.drift_warn_js)],
    )
    metadata = {**result.metadata, "previous_week": MetadataValue.text(previous.isoformat())}
    metadata["js_divergence"] = MetadataValue.json(dict(frame.select("classifier", "js_divergence").iter_rows()))
    return AssetCheckResult(passed=result.passed, severity=AssetCheckSeverity.WARN, metadata=metadata)


QUALITY_CHECKS = [classification_quality_gate, label_drift_warning]
