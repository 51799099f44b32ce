import narwhals.stable.v2 as nw
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import catalog, table_metadata
from semtel_dagster.assets.pipeline import pipeline_for
from semtel_dagster.core.lake.frames import summary
from semtel_dagster.core.prepare.scrub import redaction_totals
from semtel_dagster.partitions import partition_week, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings


@asset(
    deps=["conversations"],
    group_name="weekly_pipeline",
    partitions_def=weekly_partitions,
    **catalog("truncate"),
)
def conversations_truncated(
    context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource
):
    """Transcripts scrubbed of PII, compressed (optionally) and cut to the token budget, so every prompt has
    a bounded cost and no endpoint receives an email, a phone, a card, an IP, an IBAN or a secret."""
    week = partition_week(context.partition_key)
    written = pipeline_for(context, lake, settings, engine).truncate(week)
    totals = summary(
        written.frame,
        tokens_before=nw.col("tokens_before").sum(),
        tokens_after=nw.col("tokens_after").sum(),
        tokens_saved_by_compression=(nw.col("tokens_before") - nw.col("tokens_compressed")).sum(),
        truncated_conversations=(nw.col("strategy") != "none").cast(nw.Int64).sum(),
    )
    metadata = table_metadata(written, lake.uri("conversations_truncated"))
    metadata.update({name: MetadataValue.int(int(value or 0)) for name, value in totals.items()})
    if settings.scrub_pii:
        counted = redaction_totals(written.frame).items()
        metadata.update({f"redacted_{k}": MetadataValue.int(n) for k, n in counted if k != "name" or settings.scrub_names})
    metadata.update(
        {
            "strategy": MetadataValue.text(settings.truncation_strategy + (" + compression" if settings.compress else "")),
            "budget_tokens": MetadataValue.int(settings.max_transcript_tokens),
            "pii_scrubbing": MetadataValue.text(
                ("on + names" if settings.scrub_names else "on") if settings.scrub_pii else "off"
            ),
        }
    )
    return MaterializeResult(metadata=metadata)
