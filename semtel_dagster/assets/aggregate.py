import polars as pl
from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import catalog, markdown_table, table_metadata
from semtel_dagster.core.lake.frames import collect_small
from semtel_dagster.partitions import earlier_weeks, partition_week, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource


@asset(
    # The previous week: label_drift_warning compares this week's label distributions with it, so
    # that week is complete first (backfills run weeks in order).
    deps=["classifications", AssetDep("weekly_insights", partition_mapping=earlier_weeks(1))],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    **catalog("aggregate"),
)
def weekly_insights(context: AssetExecutionContext, lake: LakeResource, engine: EngineResource):
    """Conversations and share per label per classifier: the numbers product teams read."""
    week = partition_week(context.partition_key)
    written = engine.for_lake(lake.root).aggregate(week)
    insights = collect_small(written.frame)  # classifiers x labels: small on any engine
    metadata = table_metadata(written, lake.uri("weekly_insights"))
    for (classifier,), group in insights.group_by("classifier", maintain_order=True):
        metadata[f"insights/{classifier}"] = MetadataValue.md(
            markdown_table(group.select("label", "conversations", pl.col("share").round(4)))
        )
    return MaterializeResult(metadata=metadata)
