from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core.dedupe import cluster_embedding, cluster_exact
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import EmbedderResource, EngineResource, LakeResource, PipelineSettings


@asset(
    deps=["conversations_truncated"],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def conversation_clusters(
    context: AssetExecutionContext,
    lake: LakeResource,
    settings: PipelineSettings,
    embedder: EmbedderResource,
    engine: EngineResource,
):
    """Maps every conversation to a representative; only representatives are sent to the LLM."""
    week = partition_week(context.partition_key)
    embedding_stats = {}
    if settings.dedupe_method == "embedding":  # the embedding model runs in this process, on either engine
        truncated = lake.read_week("conversations_truncated", week)
        model = embedder.embedder()
        clusters = cluster_embedding(cluster_exact(truncated), truncated, model.embed, settings.dedupe_threshold)
        embedding_stats = {"embedder": model.name, **model.stats.as_dict()}
        version = lake.overwrite_week("conversation_clusters", clusters, week)
    else:
        written = engine.for_lake(lake.root).cluster_exact(week)
        clusters, version = written.frame, written.version
    representatives = clusters.filter(clusters["is_representative"]).height
    metadata = table_metadata(clusters, lake.uri("conversation_clusters"), version)
    metadata.update(
        {
            "representatives": MetadataValue.int(representatives),
            "calls_avoided_share": MetadataValue.float(
                round(1 - representatives / clusters.height, 4) if clusters.height else 0.0
            ),
            "method": MetadataValue.text(settings.dedupe_method),
            "merged_by_embedding": MetadataValue.int(clusters.filter(clusters["method"] == "embedding").height),
        }
    )
    if embedding_stats:
        metadata["embedding"] = MetadataValue.json(embedding_stats)
    return MaterializeResult(metadata=metadata)
