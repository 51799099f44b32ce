from functools import partial

import narwhals.stable.v2 as nw
from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from semtel_dagster.assets.metadata import table_metadata
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.lake.frames import value_counts
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings

GROUP = "weekly_pipeline"
# A reject reason's kind: the text before its first ':' or '(' ("duplicate id: x" -> "duplicate id").
_REASON_KIND = nw.when(nw.col("reason").str.contains(r"^[^:(]")).then(nw.col("reason").str.replace_all(r"(?s)^([^:(]+).*$", "$1"))


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
    stage = engine.for_lake(lake.root)
    conversations, rejects, files_read = stage.ingest(week, settings.landing_dir, read)
    context.log.info(
        f"week {week}: {conversations.rows} conversations, {rejects.rows} rejects from {files_read} files ({stage.name} engine)"
    )
    for written in (conversations, rejects):
        metadata = table_metadata(written, lake.uri(written.table))
        if written.table == "ingest_rejects" and written.rows:
            reasons = value_counts(written.frame, _REASON_KIND.alias("kind"))
            metadata["reject_reasons"] = MetadataValue.json(dict(reasons.sort("kind").iter_rows()))
        yield MaterializeResult(asset_key=written.table, metadata=metadata)
