from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from functools import partial

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core.truncate import truncate_conversations
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings


@asset(
    deps=["conversations"],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def conversations_truncated(
    context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
):
    """Transcripts compressed (optionally) and cut to the token budget, so every prompt has a bounded cost."""
    week = partition_week(context.partition_key)
    stage = partial(truncate_conversations, config=settings.truncation())
    written = engine.for_lake(lake.root).map_week("conversations", "conversations_truncated", week, stage)
    truncated, version = written.frame, written.version
    metadata = table_metadata(truncated, lake.uri("conversations_truncated"), version)
    metadata.update(
        {
            "tokens_before": MetadataValue.int(int(truncated["tokens_before"].sum() or 0)),
            "tokens_after": MetadataValue.int(int(truncated["tokens_after"].sum() or 0)),
            "tokens_saved_by_compression": MetadataValue.int(
                int((truncated["tokens_before"] - truncated["tokens_compressed"]).sum() or 0)
            ),
            "strategy": MetadataValue.text(settings.truncation_strategy + (" + compression" if settings.compress else "")),
            "truncated_conversations": MetadataValue.int(truncated.filter(truncated["strategy"] != "none").height),
            "budget_tokens": MetadataValue.int(settings.max_transcript_tokens),
        }
    )
    return MaterializeResult(metadata=metadata)
