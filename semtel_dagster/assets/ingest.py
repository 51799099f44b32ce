from functools import partial

from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core.ingest import read_landing
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings

GROUP = "weekly_pipeline"


@multi_asset(
    specs=[
        AssetSpec("conversations", group_name=GROUP, description="Valid conversations of the week, one row each."),
        AssetSpec("ingest_rejects", group_name=GROUP, description="Input records that could not be ingested, with a reason."),
    ],
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def ingest(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource):
    """Validates landed JSONL into ``conversations``; every bad record becomes an ``ingest_rejects`` row."""
    week = partition_week(context.partition_key)
    read = partial(
        read_landing,
        week_start=week,
        max_record_bytes=settings.max_record_bytes,
        input_format=settings.input_format,
        adapter_options=settings.adapter_options(),
        default_week=settings.default_week_date(),
    )
    conversations, rejects, files_read = engine.for_lake(lake.root).ingest(week, settings.landing_dir, read)
    context.log.info(
        f"week {week}: {conversations.frame.height} conversations, {rejects.frame.height} rejects "
        f"from {files_read} files ({engine.kind} engine)"
    )
    for table, frame, version in ((w.table, w.frame, w.version) for w in (conversations, rejects)):
        metadata = table_metadata(frame, lake.uri(table), version)
        if table == "ingest_rejects" and frame.height:
            reasons = frame.group_by(frame["reason"].str.extract(r"^([^:(]+)", 1).alias("kind")).len()
            metadata["reject_reasons"] = MetadataValue.json(dict(reasons.sort("kind").iter_rows()))
        yield MaterializeResult(asset_key=table, metadata=metadata)
