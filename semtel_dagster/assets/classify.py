import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core import tables
from semtel_dagster.core.classify import answered_request_ids, latest_per_request, plan_requests, run_dispatch
from semtel_dagster.core.progress import DispatchProgress
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings


@asset(
    deps=["conversation_clusters", "conversations_truncated"],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def llm_responses(
    context: AssetExecutionContext,
    lake: LakeResource,
    settings: PipelineSettings,
    endpoint_pool: EndpointPoolResource,
):
    """Every raw LLM answer (or final failure) for the week's representatives x classifiers.

    Answers are committed in small appends while the run is in flight; a rerun skips requests already
    answered, and the week is compacted to one row per request at the end.
    """
    week = partition_week(context.partition_key)
    classifiers = settings.load_classifiers()
    models = {endpoint.model for endpoint in endpoint_pool.endpoints}
    answered = answered_request_ids(lake.read_week("llm_responses", week), models)
    plan = plan_requests(
        lake.read_week("conversation_clusters", week),
        lake.read_week("conversations_truncated", week),
        classifiers,
        answered,
    )
    context.log.info(
        f"week {week}: {plan.total} requests needed, {plan.answered} already answered, {len(plan.to_send)} to send "
        f"to {[e.name for e in endpoint_pool.endpoints]}"
    )
    progress = DispatchProgress(len(plan.to_send), context.log.info)
    try:
        stats = run_dispatch(
            plan,
            endpoint_pool.dispatcher(),
            lambda rows: lake.append("llm_responses", pl.DataFrame(rows, schema=tables.LLM_RESPONSES)),
            flush_rows=endpoint_pool.flush_rows,
            flush_seconds=endpoint_pool.flush_seconds,
            on_progress=progress,
        )
    finally:
        progress.close()
    responses = latest_per_request(lake.read_week("llm_responses", week))
    version = lake.overwrite_week("llm_responses", responses, week)
    metadata = table_metadata(responses, lake.uri("llm_responses"), version)
    totals = stats.as_dict()
    metadata.update(
        {
            "requests_needed": MetadataValue.int(plan.total),
            "requests_resumed": MetadataValue.int(plan.answered),
            "requests_sent": MetadataValue.int(len(plan.to_send)),
            "http_requests": MetadataValue.int(totals["requests"]),
            "retries": MetadataValue.int(totals["retries"]),
            "rate_limited": MetadataValue.int(totals["rate_limited"]),
            "failed_requests": MetadataValue.int(totals["errors"]),
            "prompt_tokens": MetadataValue.int(totals["prompt_tokens"]),
            "completion_tokens": MetadataValue.int(totals["completion_tokens"]),
            "dispatch_seconds": MetadataValue.float(totals["wall_seconds"]),
            "per_endpoint": MetadataValue.json(totals["endpoints"]),
            "prompt_versions": MetadataValue.json({name: c.version for name, c in classifiers.items()}),
        }
    )
    return MaterializeResult(metadata=metadata)
