import narwhals.stable.v2 as nw
from dagster import (
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.assets.pipeline import pipeline_for
from semtel_dagster.core.lake.frames import summary
from semtel_dagster.partitions import (
    partition_week,
    weekly_backfill_policy,
    weekly_partitions,
)
from semtel_dagster.resources import (
    EmbedderResource,
    EngineResource,
    LakeResource,
    PipelineSettings,
)

GROUP = "weekly_pipeline"


@multi_asset(
    specs=[
        AssetSpec(
            "conversation_clusters",
            deps=["conversations_truncated"],
            group_name=GROUP,
            description="Maps every conversation to a representative; only representatives are sent to the LLM.",
        ),
        AssetSpec(
            "conversation_embeddings",
            deps=["conversations_truncated"],
            group_name=GROUP,
            description="Vectors of the week's final representatives (embedding dedupe; empty under exact), "
            "which later weeks match to reuse labels (reuse_match: embedding).",
        ),
    ],
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def dedupe(
    context: AssetExecutionContext,
    lake: LakeResource,
    settings: PipelineSettings,
    embedder: EmbedderResource,
    engine: EngineResource,
):
    """Clusters duplicates; the vectors embedding dedupe computes anyway are kept as their own asset.

    One step, two assets: the vectors exist only inside the dedupe computation, and both tables of a
    week must describe the same clustering (``Pipeline.dedupe``).
    """
    week = partition_week(context.partition_key)
    deduped = pipeline_for(context, lake, settings, engine, embedder).dedupe(week)
    written, vectors, embedding_stats = deduped.clusters, deduped.vectors, deduped.embedding
    counts = summary(
        written.frame,
        representatives=nw.col("is_representative").cast(nw.Int64).sum(),
        merged_by_embedding=(nw.col("method") == "embedding").cast(nw.Int64).sum(),
    )
    metadata = table_metadata(written, lake.uri("conversation_clusters"))
    metadata.update(
        {
            "representatives": MetadataValue.int(counts["representatives"]),
            "calls_avoided_share": MetadataValue.float(
                round(1 - counts["representatives"] / written.rows, 4) if written.rows else 0.0
            ),
            "method": MetadataValue.text(settings.dedupe_method),
            "merged_by_embedding": MetadataValue.int(counts["merged_by_embedding"]),
        }
    )
    if embedding_stats:
        metadata["embedding"] = MetadataValue.json(embedding_stats)
    yield MaterializeResult(asset_key="conversation_clusters", metadata=metadata)
    vector_metadata = table_metadata(vectors, lake.uri("conversation_embeddings"))
    vector_metadata["embedder"] = MetadataValue.text(embedding_stats.get("embedder") or f"none ({settings.dedupe_method} dedupe)")
    yield MaterializeResult(asset_key="conversation_embeddings", metadata=vector_metadata)
