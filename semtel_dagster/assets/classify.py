import datetime as dt
import math
from functools import partial

import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import catalog, dispatch_metadata, table_metadata
from semtel_dagster.assets.spark_classify import classify_on_spark
from semtel_dagster.core.classify import embedding_classifier as ec
from semtel_dagster.core.classify import reuse
from semtel_dagster.core.classify.answering import Answered, Answering, answer, logged_send
from semtel_dagster.core.classify.plan import label_versions, latest_per_request
from semtel_dagster.core.lake import tables
from semtel_dagster.core.lake.frames import value_counts
from semtel_dagster.engines import Written
from semtel_dagster.partitions import (
    earlier_weeks,
    partition_week,
    weekly_partitions,
)
from semtel_dagster.resources import (
    EmbedderResource,
    EndpointPoolResource,
    EngineResource,
    LakeResource,
    PipelineSettings,
)


def _embedding_classifiers(
    context,
    week: dt.date,
    classifiers,
    lake: LakeResource,
    settings: PipelineSettings,
    embedder: EmbedderResource,
    models: frozenset[str],
) -> tuple[tuple[ec.EmbeddingClassifier, ...], dict]:
    """Per classifier, an embedding classifier trained here (the driver, on Spark) on the LLM's labels of
    the ``embedding_classifier_train_weeks`` weeks strictly before this one, once ``min_labels`` exist.

    Design: a step of this asset, not an asset of its own. Training is deterministic (the same history
    gives the same version, so a rerun of the week gets the same answers) and capped at the most recent
    ``ec.MAX_TRAIN_ROWS`` labels; artifacts are stored versioned under ``<lake>/_models/``. Answering runs
    where the representatives are (``core.answering``). Returns (models, per-classifier metadata).
    """
    if not settings.embedding_classifier:
        return (), {}
    earlier = [week - dt.timedelta(weeks=k) for k in range(1, settings.embedding_classifier_train_weeks + 1)]
    history = lake.read_weeks("classifications", earlier)
    history_text = lake.read_weeks("conversations_truncated", earlier)
    versions = label_versions(classifiers)
    trained, cards = [], {}
    for name, classifier in classifiers.items():
        model, why = (
            ec.train_from_history(
                name,
                classifier.version,
                history,
                history_text,
                set(models),
                embedder.embedder,
                versions=versions[name],
                min_labels=settings.embedding_classifier_min_labels,
                target_agreement=settings.embedding_classifier_target_agreement,
            )
            if history.height
            else (None, "no earlier labels")
        )
        if model is None:
            cards[name] = {"used": False, "reason": why}
            continue
        if "://" not in lake.root:  # artifacts on local lakes only (object stores: left to do in core.save)
            ec.save(model, lake.root)
        trained.append(model)
        card = model.card
        cards[name] = {
            "used": True,
            "reason": why,
            "version": card.version,
            "threshold": card.threshold if math.isfinite(card.threshold) else None,
            "heldout_agreement": card.heldout_agreement,
            "heldout_coverage": card.heldout_coverage,
        }
        context.log.info(f"{name}: embedding classifier {card.version} ({why})")
    return tuple(trained), cards


def _classify_on_polars(
    context,
    answering: Answering,
    lake: LakeResource,
    endpoint_pool: EndpointPoolResource,
    embedder: EmbedderResource,
    reuse_weeks: list[dt.date],
    match_threshold: float | None,
) -> tuple[Written, Answered]:
    """The whole week in this process; answers are committed in small appends while calls are in flight."""
    week = answering.week
    clusters = lake.read_week("conversation_clusters", week)
    truncated = lake.read_week("conversations_truncated", week)
    found = tables.empty(reuse.CANDIDATES)
    if reuse_weeks:
        earlier_labels = lake.read_weeks("classifications", reuse_weeks)
        found = reuse.candidates(clusters, lake.read_weeks("conversation_clusters", reuse_weeks), earlier_labels)
    if reuse_weeks and match_threshold is not None:
        found = pl.concat(
            [
                found,
                reuse.embedding_candidates(
                    found,
                    lake.read_week("conversation_embeddings", week),
                    lake.read_weeks("conversation_embeddings", reuse_weeks),
                    earlier_labels,
                    match_threshold,
                ),
            ]
        )

    send = logged_send(
        endpoint_pool.dispatcher,
        flush_rows=endpoint_pool.flush_rows,
        flush_seconds=endpoint_pool.flush_seconds,
        log=context.log.info,
        where=f"week {week} ({answering.strategy}, to {[e.name for e in endpoint_pool.endpoints]})",
    )
    report = answer(
        answering,
        clusters,
        truncated,
        lake.read_week("llm_responses", week),
        found,
        send=send,
        write=partial(lake.append, "llm_responses"),
        embed=embedder.embedder().embed if answering.embedding else None,
    )
    responses = latest_per_request(lake.read_week("llm_responses", week))
    return Written("llm_responses", lake.overwrite_week("llm_responses", responses, week), responses), report


@asset(
    # Label reuse and embedding-classifier training read earlier weeks: declared as a dependency on
    # the asset's own earlier weeks, whose answers are what those weeks' labels come from.
    deps=[
        "conversation_clusters",
        "conversations_truncated",
        "conversation_embeddings",
        AssetDep("llm_responses", partition_mapping=earlier_weeks()),
    ],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    **catalog("classify", llm=True, prompts=True),
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
    answered, and the week is compacted to one row per request at the end. Before any call, pairs are
    answered from labels of the same text in earlier weeks (``settings.reuse_labels_weeks``, endpoint
    ``label_reuse``; with ``settings.reuse_match: embedding`` also of the most similar earlier
    representative, matched in ``conversation_embeddings``) and by embedding classifiers trained on earlier weeks (``settings.embedding_classifier``,
    endpoint ``embedding_classifier``); those pairs are never sent, whatever the batching strategy.
    """
    week = partition_week(context.partition_key)
    classifiers = settings.load_classifiers()
    models = frozenset(endpoint.model for endpoint in endpoint_pool.endpoints)
    trained, cards = _embedding_classifiers(context, week, classifiers, lake, settings, embedder, models)
    answering = Answering(week, classifiers, models, settings.batching_strategy, settings.batch_size, trained)
    reuse_weeks = [week - dt.timedelta(weeks=k) for k in range(1, settings.reuse_labels_weeks + 1)]
    match_threshold = settings.reuse_threshold if settings.reuse_match == "embedding" else None
    if engine.kind == "spark":
        written, report = classify_on_spark(
            context, answering, lake, endpoint_pool, engine, embedder, reuse_weeks, match_threshold
        )
    else:
        written, report = _classify_on_polars(context, answering, lake, endpoint_pool, embedder, reuse_weeks, match_threshold)
    totals = report.stats
    if totals["budget_exhausted"]:
        context.log.warning(
            f"budget reached ({totals['budget_spent_tokens']:,} tokens, cost {totals['budget_spent_cost']:.4f}): dispatch "
            f"stopped cleanly, every answer received is saved; a rerun of the week continues where this one stopped"
        )
    metadata = table_metadata(written, lake.uri("llm_responses"))
    metadata.update(
        {
            "requests_needed": MetadataValue.int(report.needed),
            "requests_resumed": MetadataValue.int(report.resumed),
            "requests_sent": MetadataValue.int(report.sent),
            "followups_sent": MetadataValue.int(report.followups_sent),
            "batching_strategy": MetadataValue.text(settings.batching_strategy),
            "engine": MetadataValue.text(engine.kind),
        }
    )
    answered_by = dict(value_counts(written.frame, "endpoint").iter_rows())
    if settings.embedding_classifier:  # pairs of the week answered by an embedding classifier instead of the LLM
        for name, card in cards.items():
            if card["used"]:
                card["answered"] = report.embedded.get(name, 0)  # in this run
        metadata["embedding_classifier"] = MetadataValue.json(cards)
        metadata["calls_avoided"] = MetadataValue.int(answered_by.get(ec.ENDPOINT, 0))
    if settings.reuse_labels_weeks:
        metadata["labels_reused"] = MetadataValue.int(answered_by.get(reuse.ENDPOINT, 0))
        metadata["reuse_match"] = MetadataValue.text(settings.reuse_match)
    metadata.update(dispatch_metadata(totals, classifiers, endpoint_pool.budget_tokens, endpoint_pool.budget_cost))
    return MaterializeResult(metadata=metadata)
