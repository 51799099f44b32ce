from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from semtel_dagster.assets.metadata import label_distribution, table_metadata
from semtel_dagster.assets.pipeline import pipeline_for
from semtel_dagster.core.lake.frames import value_counts
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings

GROUP = "weekly_pipeline"


@multi_asset(
    specs=[
        AssetSpec(
            "classifications",
            deps=["llm_responses", "conversation_clusters"],
            group_name=GROUP,
            description="One label per conversation x classifier, fanned out from cluster representatives.",
        ),
        AssetSpec(
            "classification_rejects",
            deps=["llm_responses", "conversation_clusters"],
            group_name=GROUP,
            description="Conversation x classifier pairs without a valid label, with the reason.",
        ),
    ],
    partitions_def=weekly_partitions,
    backfill_policy=weekly_backfill_policy,
)
def parse_clean(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource):
    """Turns raw answers into labels from each classifier's set; what cannot be recovered is a reject."""
    week = partition_week(context.partition_key)
    for written in pipeline_for(context, lake, settings, engine).parse(week):
        metadata = table_metadata(written, lake.uri(written.table))
        if written.table == "classifications":
            metadata.update(label_distribution(written.frame))
            metadata["cleaning"] = MetadataValue.json(dict(value_counts(written.frame, "cleaning").sort("cleaning").iter_rows()))
        elif written.rows:
            metadata["reasons"] = MetadataValue.json(dict(value_counts(written.frame, "reason", top=10).iter_rows()))
        yield MaterializeResult(asset_key=written.table, metadata=metadata)
