from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core.truncate import truncate_conversations
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import LakeResource, PipelineSettings


@asset(
    deps=["conversations"],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def conversations_truncated(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    """Transcripts cut to the token budget (start and end kept), so every prompt has a bounded cost."""
    week = partition_week(context.partition_key)
    truncated = truncate_conversations(lake.read_week("conversations", week), settings.truncation())
    version = lake.overwrite_week("conversations_truncated", truncated, week)
    metadata = table_metadata(truncated, lake.uri("conversations_truncated"), version)
    metadata.update(
        {
            "tokens_before": MetadataValue.int(int(truncated["tokens_before"].sum() or 0)),
            "tokens_after": MetadataValue.int(int(truncated["tokens_after"].sum() or 0)),
            "truncated_conversations": MetadataValue.int(truncated.filter(truncated["strategy"] != "none").height),
            "budget_tokens": MetadataValue.int(settings.max_transcript_tokens),
        }
    )
    return MaterializeResult(metadata=metadata)
