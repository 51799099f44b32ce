from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import catalog, dispatch_metadata, table_metadata
from semtel_dagster.assets.pipeline import pipeline_for
from semtel_dagster.core.classify import embedding_classifier as ec
from semtel_dagster.core.classify import reuse
from semtel_dagster.core.lake.frames import value_counts
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


@asset(
    # Label reuse and embedding-classifier training read earlier weeks: their answers (this asset's own
    # earlier weeks, decoded into labels by ``parse.answered_labels``), clusters, texts and vectors.
    deps=[
        *(
            AssetDep(upstream, partition_mapping=earlier_weeks(and_this_week=True))
            for upstream in ("conversation_clusters", "conversations_truncated", "conversation_embeddings")
        ),
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
    pipeline = pipeline_for(context, lake, settings, engine, embedder, endpoint_pool)
    classified = pipeline.classify(week)
    written, report, cards = classified.responses, classified.report, classified.embedding_classifiers
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
            "engine": MetadataValue.text(pipeline.engine.name),
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
    metadata.update(dispatch_metadata(totals, pipeline.classifiers, endpoint_pool.budget_tokens, endpoint_pool.budget_cost))
    return MaterializeResult(metadata=metadata)
