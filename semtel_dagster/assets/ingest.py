from pathlib import Path

from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core.ingest import read_landing
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import LakeResource, PipelineSettings

GROUP = "weekly_pipeline"


@multi_asset(
    specs=[
        AssetSpec("conversations", group_name=GROUP, description="Valid conversations of the week, one row each."),
        AssetSpec("ingest_rejects", group_name=GROUP, description="Input records that could not be ingested, with a reason."),
    ],
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def ingest(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    """Validates landed JSONL into ``conversations``; every bad record becomes an ``ingest_rejects`` row."""
    week = partition_week(context.partition_key)
    result = read_landing(Path(settings.landing_dir), week, max_record_bytes=settings.max_record_bytes)
    context.log.info(
        f"week {week}: {result.conversations.height} conversations, {result.rejects.height} rejects "
        f"from {result.files_read} files"
    )
    for table, frame in (("conversations", result.conversations), ("ingest_rejects", result.rejects)):
        version = lake.overwrite_week(table, frame, week)
        metadata = table_metadata(frame, lake.uri(table), version)
        if table == "ingest_rejects" and frame.height:
            reasons = frame.group_by(frame["reason"].str.extract(r"^([^:(]+)", 1).alias("kind")).len()
            metadata["reject_reasons"] = MetadataValue.json(dict(reasons.sort("kind").iter_rows()))
        yield MaterializeResult(asset_key=table, metadata=metadata)
