import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import dispatch_metadata, table_metadata
from semtel_dagster.assets.spark_classify import classify_on_spark
from semtel_dagster.core import tables
from semtel_dagster.core.classify import STRATEGY_SINGLE, answered_request_ids, latest_per_request, plan_requests, run_dispatch
from semtel_dagster.core.parse import followup_pairs
from semtel_dagster.core.progress import DispatchProgress
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import EndpointPoolResource, EngineResource, LakeResource, PipelineSettings


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
    engine: EngineResource,
):
    """Every raw LLM answer (or final failure) for the week's representatives x classifiers.

    Answers are committed in small appends while the run is in flight; a rerun skips requests already
    answered, and the week is compacted to one row per request at the end.
    """
    week = partition_week(context.partition_key)
    classifiers = settings.load_classifiers()
    if engine.kind == "spark":
        return classify_on_spark(context, week, classifiers, lake, settings, endpoint_pool, engine)
    models = {endpoint.model for endpoint in endpoint_pool.endpoints}
    clusters = lake.read_week("conversation_clusters", week)
    truncated = lake.read_week("conversations_truncated", week)
    # Round 1: the week's calls (plus re-asks left over from a previous run); round 2: single re-asks
    # of the pairs a batched answer of round 1 missed. The single strategy needs one round.
    rounds = 1 if settings.batching_strategy == STRATEGY_SINGLE else 2
    plans, round_stats = [], []
    for round_no in range(rounds):
        responses = lake.read_week("llm_responses", week)
        plan = plan_requests(
            clusters,
            truncated,
            classifiers,
            answered_request_ids(responses, models),
            strategy=settings.batching_strategy,
            batch_size=settings.batch_size,
            followups=followup_pairs(clusters, responses, classifiers, settings.batching_strategy, settings.batch_size),
        )
        if round_no and not plan.to_send:
            break
        plans.append(plan)
        context.log.info(
            f"week {week} ({settings.batching_strategy}): {plan.total} requests needed, {plan.answered} already answered, "
            f"{len(plan.to_send)} to send to {[e.name for e in endpoint_pool.endpoints]}"
        )
        progress = DispatchProgress(len(plan.to_send), context.log.info)
        try:
            round_stats.append(run_dispatch(
                plan,
                endpoint_pool.dispatcher(),
                lambda rows: lake.append("llm_responses", pl.DataFrame(rows, schema=tables.LLM_RESPONSES)),
                flush_rows=endpoint_pool.flush_rows,
                flush_seconds=endpoint_pool.flush_seconds,
                on_progress=progress,
            ))
        finally:
            progress.close()
    responses = latest_per_request(lake.read_week("llm_responses", week))
    version = lake.overwrite_week("llm_responses", responses, week)
    metadata = table_metadata(responses, lake.uri("llm_responses"), version)
    totals = round_stats[0].as_dict()
    for extra in round_stats[1:]:  # follow-up round: add its counts (per-endpoint detail is round 1's)
        totals.update({k: totals[k] + v for k, v in extra.as_dict().items() if k != "endpoints"})
    if totals["budget_exhausted"]:
        context.log.warning(
            f"budget reached ({totals['budget_spent_tokens']:,} tokens, cost {totals['budget_spent_cost']:.4f}): dispatch "
            f"stopped cleanly, every answer received is saved; a rerun of the week continues where this one stopped"
        )
    metadata.update(
        {
            "requests_needed": MetadataValue.int(plans[0].total),
            "requests_resumed": MetadataValue.int(plans[0].answered),
            "requests_sent": MetadataValue.int(sum(len(p.to_send) for p in plans)),
            "followups_sent": MetadataValue.int(sum(len(p.to_send) for p in plans[1:])),
            "batching_strategy": MetadataValue.text(settings.batching_strategy),
        }
    )
    metadata.update(dispatch_metadata(totals, classifiers, endpoint_pool.budget_tokens, endpoint_pool.budget_cost))
    return MaterializeResult(metadata=metadata)
