"""One blocking gate per stage table: a great-expectations suite over the week's rows.

A failed blocking check stops downstream steps of the same run. The table itself is already written
by then, so the gates also guard reruns: the next run of a downstream asset reads what was written
and its own gate fails again until the cause is fixed.

Each gate reads the week from the run's engine: a Polars frame, or on Spark a DataFrame over the
committed files that the invariants and GX process on the cluster. The suites are defined once, here.
"""

import datetime as dt

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from semtel_dagster.checks import invariants
from semtel_dagster.checks.gx_suites import validate
from semtel_dagster.core.evaluation.metrics import label_drift, label_quality
from semtel_dagster.core.llm.requests import STATUS_ERROR, STATUS_OK
from semtel_dagster.engines import Engine
from semtel_dagster.partitions import partition_week, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings


class _Expectations:
    """``great_expectations.expectations``, imported when a check first runs: importing GX takes about
    2 s, which every code-location load (UI, each run) would otherwise pay."""

    def __getattr__(self, name: str):
        import great_expectations as gx

        return getattr(gx.expectations, name)


E = _Expectations()
TRUNCATION_SLACK_TOKENS = 8  # re-encoding at the cut can merge or split a token or two


def _all_true(column: str):
    return E.ExpectColumnValuesToBeInSet(column=column, value_set=[True])


def _week(context: AssetCheckExecutionContext, lake: LakeResource, engine: EngineResource) -> tuple[dt.date, Engine]:
    """The partition's week, and the run's engine to read it where it lives (never Polars on a Spark run)."""
    return partition_week(context.partition_key), engine.for_lake(lake.root)


def _is_empty(frame) -> bool:
    return frame.is_empty() if isinstance(frame, pl.DataFrame) else frame.isEmpty()


def nothing_to_check(reason: str, **metadata) -> AssetCheckResult:
    """A check that had nothing to look at says so: a warning with the reason, never Passed, and not
    a blocking failure (severity WARN lets an allowed empty week flow downstream)."""
    return AssetCheckResult(
        passed=False,
        severity=AssetCheckSeverity.WARN,
        metadata={"skipped": MetadataValue.text(reason), "rows": MetadataValue.int(0), **metadata},
        description=f"skipped: {reason}",
    )


def _result(frame, suite: str, expectations: list, empty_means_skipped: bool = True) -> AssetCheckResult:
    """The suite's outcome; on a week with no rows (``empty_means_skipped``) a skipped warning instead,
    since every expectation holds vacuously on nothing. Tables that are legitimately empty (rejects,
    vectors under exact dedupe) pass ``False``."""
    if empty_means_skipped and _is_empty(frame):
        return nothing_to_check(f"no rows to validate for {suite} this week")
    outcome = validate(frame, suite, expectations)
    metadata = outcome.metadata()
    metadata["results"] = MetadataValue.json(metadata["results"])
    return AssetCheckResult(
        passed=outcome.success,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=f"great-expectations on {outcome.engine}",
    )


def _gate(asset: str, description: str):
    return asset_check(asset=asset, blocking=True, partitions_def=weekly_partitions, description=description)


@_gate("conversations", "Ids present and unique, every row in this week, at least one turn.")
def conversations_gate(context: AssetCheckExecutionContext, lake: LakeResource, engine: EngineResource) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = source.read("conversations", week).drop("messages")
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
def ingest_rejects_gate(context: AssetCheckExecutionContext, lake: LakeResource, engine: EngineResource) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = source.read("ingest_rejects", week)
    return _result(
        frame,
        "ingest_rejects",
        [
            E.ExpectColumnValuesToNotBeNull(column="reason"),
            E.ExpectColumnValuesToNotBeNull(column="record_ref"),
            E.ExpectColumnValuesToBeInSet(column="week_start", value_set=[week]),
        ],
        empty_means_skipped=False,
    )


@_gate("conversations_truncated", "Row conservation with conversations; transcripts within the token budget.")
def truncated_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = invariants.truncation_coverage(
        source.read("conversations", week).select("conversation_id"),
        source.read("conversations_truncated", week).drop("transcript"),
        settings.max_transcript_tokens,
        TRUNCATION_SLACK_TOKENS,
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
def clusters_gate(context: AssetCheckExecutionContext, lake: LakeResource, engine: EngineResource) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    truncated = source.read("conversations_truncated", week).select("conversation_id")
    frame = invariants.covers(truncated, invariants.representatives_known(source.read("conversation_clusters", week)))
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


@_gate("conversation_embeddings", "One vector per final representative (none under exact dedupe), one embedder, one length.")
def embeddings_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = invariants.embedding_coverage(
        source.read("conversation_clusters", week),
        source.read("conversation_embeddings", week),
        settings.dedupe_method == "embedding",
    )
    return _result(
        frame,
        "conversation_embeddings",
        [
            E.ExpectColumnValuesToBeUnique(column="conversation_id"),
            _all_true("expected"),
            _all_true("produced"),
            E.ExpectColumnUniqueValueCountToBeBetween(column="embedder", max_value=1),
            E.ExpectColumnUniqueValueCountToBeBetween(column="dims", max_value=1),
            E.ExpectColumnValuesToBeBetween(column="dims", min_value=1),
        ],
        empty_means_skipped=settings.dedupe_method == "embedding",
    )


@_gate("llm_responses", "Every needed request has exactly one recorded outcome (answer or final failure).")
def responses_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = invariants.request_coverage(
        source.read("conversation_clusters", week),
        source.read("llm_responses", week),
        settings.load_classifiers(),
        settings.batching_strategy,
        settings.batch_size,
    )
    return _result(
        frame,
        "llm_responses",
        [
            E.ExpectColumnValuesToBeUnique(column="request_id"),
            _all_true("produced"),
            E.ExpectColumnValuesToBeInSet(column="status", value_set=[STATUS_OK, STATUS_ERROR]),
        ],
    )


@_gate("classifications", "Row conservation: each conversation x classifier has one label in its set, or a reject.")
def classifications_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = invariants.label_coverage(
        source.read("conversations", week).select("conversation_id"),
        source.read("classifications", week),
        source.read("classification_rejects", week),
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
def classification_rejects_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    return _result(
        source.read("classification_rejects", week),
        "classification_rejects",
        [E.ExpectColumnValuesToNotBeNull(column="reason"), E.ExpectColumnValuesToNotBeNull(column="request_id")],
        empty_means_skipped=False,
    )


@_gate("weekly_insights", "Counts add up to the labeled conversations and shares to one, per classifier.")
def insights_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = invariants.insight_totals(
        source.read("weekly_insights", week), source.read("classifications", week), settings.min_group_size
    )
    return _result(frame, "weekly_insights", [_all_true("counts_match"), _all_true("shares_sum_to_one")])


@_gate("weekly_crosstabs", "Per classifier pair, the cells add up to the conversations both classifiers labeled.")
def crosstabs_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    pairs = settings.pairs_run(settings.load_classifiers())
    if not pairs:
        return nothing_to_check("no configured classifier pair runs: nothing is cross-tabulated")
    frame = invariants.crosstab_totals(
        source.read("weekly_crosstabs", week), source.read("classifications", week), pairs, settings.min_group_size
    )
    return _result(frame, "weekly_crosstabs", [_all_true("adds_up")])


def _minimum_group_size(asset: str, count: str, merged: str, total: str):
    """A blocking check that no published number of ``asset`` is under the minimum group size."""

    @asset_check(
        name="min_group_size",
        asset=asset,
        blocking=True,
        partitions_def=weekly_partitions,
        description=f"Privacy: every published count of {asset} holds at least min_group_size conversations, "
        "and every <suppressed> bucket merges two or more cells.",
    )
    def check(
        context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
    ) -> AssetCheckResult:
        week, source = _week(context, lake, engine)
        frame = invariants.published_cells(source.read(asset, week), count, merged, total, settings.min_group_size)
        result = _result(
            frame,
            f"{asset}_min_group_size",
            [_all_true("count_at_least_minimum"), _all_true("total_at_least_minimum"), _all_true("bucket_of_two_or_more")],
        )
        metadata = {**result.metadata, "min_group_size": MetadataValue.int(settings.min_group_size)}
        return AssetCheckResult(passed=result.passed, severity=result.severity, metadata=metadata, description=result.description)

    return check


STAGE_GATES = [
    conversations_gate,
    ingest_rejects_gate,
    truncated_gate,
    clusters_gate,
    embeddings_gate,
    responses_gate,
    classifications_gate,
    classification_rejects_gate,
    insights_gate,
    crosstabs_gate,
    _minimum_group_size("weekly_insights", "conversations", "suppressed_labels", "labeled_conversations"),
    _minimum_group_size("weekly_crosstabs", "conversations", "suppressed_cells", "labeled_both"),
]


@_gate("classifications", "Quality gate: parse-failure rate and reject share per classifier under the configured thresholds.")
def classification_quality_gate(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    frame = label_quality(source.read("classifications", week), source.read("classification_rejects", week))
    return _result(
        frame,
        "classification_quality",
        [
            E.ExpectColumnValuesToBeBetween(
                column="parse_failure_rate", min_value=0.0, max_value=settings.max_parse_failure_rate
            ),
            E.ExpectColumnValuesToBeBetween(column="reject_share", min_value=0.0, max_value=settings.max_reject_share),
        ],
    )


@asset_check(
    # On weekly_insights, whose self-dependency on the previous week (assets/aggregate.py) declares the
    # read of that week: Dagster 1.13 keeps no partition mapping on a check's own deps.
    asset="weekly_insights",
    blocking=False,
    partitions_def=weekly_partitions,
    description="Warning: a label distribution moved more than the threshold (Jensen-Shannon) since the previous week.",
)
def label_drift_warning(
    context: AssetCheckExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
) -> AssetCheckResult:
    week, source = _week(context, lake, engine)
    previous = week - dt.timedelta(days=7)
    current, earlier = source.read("weekly_insights", week), source.read("weekly_insights", previous)
    if _is_empty(earlier) or _is_empty(current):
        empty = previous if _is_empty(earlier) else week
        return nothing_to_check(
            f"no weekly_insights for week {empty}: no distribution to compare",
            previous_week=MetadataValue.text(previous.isoformat()),
        )
    frame = label_drift(current, earlier)  # small: per classifier
    result = _result(
        frame,
        "label_drift",
        [E.ExpectColumnValuesToBeBetween(column="js_divergence", min_value=0.0, max_value=settings.drift_warn_js)],
    )
    metadata = {**result.metadata, "previous_week": MetadataValue.text(previous.isoformat())}
    metadata["js_divergence"] = MetadataValue.json(
        {name: round(js, 4) for name, js in frame.select("classifier", "js_divergence").iter_rows()}
    )
    return AssetCheckResult(
        passed=result.passed, severity=AssetCheckSeverity.WARN, metadata=metadata, description=result.description
    )


QUALITY_CHECKS = [classification_quality_gate, label_drift_warning]
