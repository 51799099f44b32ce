from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core.dedupe import cluster_exact
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import LakeResource


@asset(
    deps=["conversations_truncated"],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def conversation_clusters(context: AssetExecutionContext, lake: LakeResource):
    """Maps every conversation to a representative; only representatives are sent to the LLM."""
    week = partition_week(context.partition_key)
    clusters = cluster_exact(lake.read_week("conversations_truncated", week))
    version = lake.overwrite_week("conversation_clusters", clusters, week)
    representatives = clusters.filter(clusters["is_representative"]).height
    metadata = table_metadata(clusters, lake.uri("conversation_clusters"), version)
    metadata.update(
        {
            "representatives": MetadataValue.int(representatives),
            "calls_avoided_share": MetadataValue.float(
                round(1 - representatives / clusters.height, 4) if clusters.height else 0.0
            ),
        }
    )
    return MaterializeResult(metadata=metadata)
