import datetime as dt
import math

import polars as pl
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import dispatch_metadata, table_metadata
from semtel_dagster.assets.spark_classify import classify_on_spark
from semtel_dagster.core import embedding_classifier as ec
from semtel_dagster.core import tables
from semtel_dagster.core.classify import (
    STRATEGY_SINGLE,
    answered_request_ids,
    latest_per_request,
    plan_requests,
    representatives,
    run_dispatch,
)
from semtel_dagster.core.parse import followup_pairs
from semtel_dagster.core.progress import DispatchProgress
from semtel_dagster.core.reuse import ENDPOINT as REUSE_ENDPOINT
from semtel_dagster.core.reuse import reused_answers
from semtel_dagster.partitions import (
    partition_week,
    weekly_backfill_policy,
    weekly_partitions,
)
from semtel_dagster.resources import (
    EmbedderResource,
    EndpointPoolResource,
    EngineResource,
    LakeResource,
    PipelineSettings,
)


def _embedding_answers(context, week: dt.date, classifiers, clusters, truncated, lake: LakeResource,
                       settings: PipelineSettings, embedder: EmbedderResource, models: set[str]) -> tuple[set[str], dict]:
    """Answer the confident representatives with embedding classifiers trained on earlier weeks.

    Design: a step of this asset, not an asset of its own. Per classifier, a model is trained from the
    LLM's labels (pool models, this prompt version; never the classifier's own answers) of the
    ``embedding_classifier_train_weeks`` weeks strictly before this one, once ``min_labels`` exist,
    and stored versioned under ``<lake>/_models/``. Training is deterministic, so a rerun of the week
    gets the same version and the same answers. Its answers are appended to ``llm_responses`` under
    the LLM request ids, so everything downstream is unchanged. Returns (model versions, metadata).
    """
    if not settings.embedding_classifier:
        return set(), {}
    if settings.batching_strategy != STRATEGY_SINGLE:
        context.log.warning("embedding_classifier applies to the single batching strategy only; skipped")
        return set(), {}
    earlier = [week - dt.timedelta(weeks=k) for k in range(1, settings.embedding_classifier_train_weeks + 1)]
    history = lake.read_weeks("classifications", earlier)
    history_text = lake.read_weeks("conversations_truncated", earlier)
    reps = representatives(clusters, truncated)
    ids = reps.get_column("conversation_id").to_list()
    responses = lake.read_week("llm_responses", week)
    vectors = None
    versions, per_classifier = set(), {}
    for name, classifier in classifiers.items():
        model, why = ec.train_from_history(
            name, classifier.version, history, history_text, models, embedder.embedder,
            min_labels=settings.embedding_classifier_min_labels,
            target_agreement=settings.embedding_classifier_target_agreement,
        ) if history.height else (None, "no earlier labels")
        if model is None:
            per_classifier[name] = {"used": False, "reason": why}
            continue
        if "://" not in lake.root:  # artifacts on local lakes only (object stores: left to do in core.save)
            ec.save(model, lake.root)
        if vectors is None:
            vectors = embedder.embedder().embed(reps.get_column("transcript").to_list())
        done = answered_request_ids(responses, models | {model.card.version})
        rows = ec.answer_confident(model, ids, vectors, week, done) if ids else pl.DataFrame(schema=tables.LLM_RESPONSES)
        if rows.height:
            lake.append("llm_responses", rows)
        versions.add(model.card.version)
        per_classifier[name] = {"used": True, "reason": why, "version": model.card.version,
                                "threshold": model.card.threshold if math.isfinite(model.card.threshold) else None, "heldout_agreement": model.card.heldout_agreement,
                                "heldout_coverage": model.card.heldout_coverage, "answered": rows.height}
        context.log.info(f"{name}: embedding classifier {model.card.version} ({why}) answered {rows.height} of {len(ids)}")
    return versions, {"embedding_classifier": MetadataValue.json(per_classifier)}


def _reuse_labels(context, week: dt.date, classifiers, clusters, lake: LakeResource,
                  settings: PipelineSettings, models: set[str]) -> None:
    """Answer representatives whose text was classified in an earlier week (``core.reuse``)."""
    if not settings.reuse_labels_weeks:
        return
    if settings.batching_strategy != STRATEGY_SINGLE:
        context.log.warning("reuse_labels_weeks applies to the single batching strategy only; skipped")
        return
    earlier = [week - dt.timedelta(weeks=k) for k in range(1, settings.reuse_labels_weeks + 1)]
    rows = reused_answers(
        clusters,
        lake.read_weeks("conversation_clusters", earlier),
        lake.read_weeks("classifications", earlier),
        classifiers,
        models,
        week,
        answered_request_ids(lake.read_week("llm_responses", week), models),
    )
    if rows.height:
        lake.append("llm_responses", rows)
    context.log.info(f"week {week}: {rows.height} answers reused from the {len(earlier)} earlier weeks")


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
    embedder: EmbedderResource,
):
    """Every raw LLM answer (or final failure) for the week's representatives x classifiers.

    Answers are committed in small appends while the run is in flight; a rerun skips requests already
    answered, and the week is compacted to one row per request at the end. With
    ``settings.embedding_classifier`` on, representatives an embedding classifier trained on earlier
    weeks labels confidently are answered first (endpoint ``embedding_classifier``); only the rest go out.
    """
    week = partition_week(context.partition_key)
    classifiers = settings.load_classifiers()
    if engine.kind == "spark":
        return classify_on_spark(context, week, classifiers, lake, settings, endpoint_pool, engine)
    models = {endpoint.model for endpoint in endpoint_pool.endpoints}
    clusters = lake.read_week("conversation_clusters", week)
    truncated = lake.read_week("conversations_truncated", week)
    _reuse_labels(context, week, classifiers, clusters, lake, settings, models)
    versions, embedding_metadata = _embedding_answers(context, week, classifiers, clusters, truncated, lake, settings, embedder, models)
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
            answered_request_ids(responses, models | versions),
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
    if embedding_metadata:  # every request answered by an embedding classifier instead of the LLM
        avoided = responses.filter(pl.col("endpoint") == ec.ENDPOINT).height
        metadata.update({**embedding_metadata, "calls_avoided": MetadataValue.int(avoided)})
    if settings.reuse_labels_weeks:
        metadata["labels_reused"] = MetadataValue.int(responses.filter(pl.col("endpoint") == REUSE_ENDPOINT).height)
    metadata.update(dispatch_metadata(totals, classifiers, endpoint_pool.budget_tokens, endpoint_pool.budget_cost))
    return MaterializeResult(metadata=metadata)
