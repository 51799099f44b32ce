from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from semtel_dagster.assets.metadata import label_distribution, table_metadata
from semtel_dagster.core.parse import parse_week
from semtel_dagster.partitions import partition_week, weekly_backfill_policy, weekly_partitions
from semtel_dagster.resources import LakeResource, PipelineSettings

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
def parse_clean(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings):
    """Turns raw answers into labels from each classifier's set; what cannot be recovered is a reject."""
    week = partition_week(context.partition_key)
    classifications, rejects = parse_week(
        lake.read_week("conversation_clusters", week),
        lake.read_week("llm_responses", week),
        settings.load_classifiers(),
    )
    for table, frame in (("classifications", classifications), ("classification_rejects", rejects)):
        version = lake.overwrite_week(table, frame, week)
        metadata = table_metadata(frame, lake.uri(table), version)
        if table == "classifications":
            metadata.update(label_distribution(frame))
            metadata["cleaning"] = MetadataValue.json(dict(frame.group_by("cleaning").len().sort("cleaning").iter_rows()))
        elif frame.height:
            metadata["reasons"] = MetadataValue.json(dict(frame.group_by("reason").len().sort("len", descending=True).head(10).iter_rows()))
        yield MaterializeResult(asset_key=table, metadata=metadata)
