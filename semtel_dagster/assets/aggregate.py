import polars as pl
from dagster import AssetDep, AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from semtel_dagster.assets.metadata import catalog, markdown_table, table_metadata
from semtel_dagster.assets.pipeline import pipeline_for
from semtel_dagster.partitions import earlier_weeks, partition_week, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings

GROUP = "weekly_pipeline"


@multi_asset(
    specs=[
        AssetSpec(
            "weekly_insights",
            # The previous week: label_drift_warning compares this week's label distributions with it, so
            # that week is complete first (backfills run weeks in order).
            deps=["classifications", AssetDep("weekly_insights", partition_mapping=earlier_weeks(1))],
            group_name=GROUP,
            description="Conversations and share per label per classifier: the numbers product teams read. Labels "
            "under the minimum group size are merged into a <suppressed> row.",
            **catalog("aggregate"),
        ),
        AssetSpec(
            "weekly_crosstabs",
            deps=["classifications"],
            group_name=GROUP,
            description="Conversations and share per pair of labels of the configured classifier pairs (crosstab_pairs), "
            "small cells merged with complementary suppression.",
            **catalog("aggregate"),
        ),
    ],
    partitions_def=weekly_partitions,
)
def aggregate(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource):
    """The week's published counts, every one of at least ``settings.min_group_size`` conversations."""
    week = partition_week(context.partition_key)
    for written in pipeline_for(context, lake, settings, engine).aggregate(week):
        metadata = table_metadata(written, lake.uri(written.table))
        metadata["min_group_size"] = MetadataValue.int(settings.min_group_size)
        frame = written.frame
        if written.table == "weekly_insights":
            for (classifier,), group in frame.group_by("classifier", maintain_order=True):
                metadata[f"insights/{classifier}"] = MetadataValue.md(
                    markdown_table(group.select("label", "conversations", pl.col("share").round(4)))
                )
        else:
            pairs = frame.select("classifier_a", "classifier_b").unique(maintain_order=True).iter_rows()
            metadata["pairs"] = MetadataValue.json([f"{a} x {b}" for a, b in pairs])
        yield MaterializeResult(asset_key=written.table, metadata=metadata)
