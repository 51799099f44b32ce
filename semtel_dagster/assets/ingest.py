from functools import partial
from pathlib import Path

import narwhals.stable.v2 as nw
from dagster import AssetExecutionContext, AssetSpec, Failure, MaterializeResult, multi_asset

from semtel_dagster.assets.metadata import catalog, counts_table, table_metadata
from semtel_dagster.core.ingest.landing import landing_files, stream_landing
from semtel_dagster.core.lake.frames import value_counts
from semtel_dagster.partitions import partition_week, weekly_partitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings

GROUP = "weekly_pipeline"
# A reject reason's kind: the text before its first ':' or '(' ("duplicate id: x" -> "duplicate id").
_REASON_KIND = nw.when(nw.col("reason").str.contains(r"^[^:(]")).then(nw.col("reason").str.replace_all(r"(?s)^([^:(]+).*$", "$1"))


@multi_asset(
    specs=[
        AssetSpec(
            "conversations", group_name=GROUP, description="Valid conversations of the week, one row each.", **catalog("ingest")
        ),
        AssetSpec(
            "ingest_rejects",
            group_name=GROUP,
            description="Input records that could not be ingested, with a reason.",
            **catalog("ingest"),
        ),
    ],
    partitions_def=weekly_partitions,
)
def ingest(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings, engine: EngineResource):
    """Validates landed JSONL into ``conversations``; every bad record becomes an ``ingest_rejects`` row.

    A week without landing data is a failure, not an empty success (a missing mount, a late export or a
    wrong ``landing_dir`` must not turn green): with no landing file at all nothing is written; with
    files but no record of the week, the week is written empty (that is what landed) and the step
    fails, so downstream steps do not run. ``allow_empty_weeks`` accepts empty weeks.
    """
    week = partition_week(context.partition_key)
    files = _landing_files(settings)
    if not files and not settings.allow_empty_weeks:
        raise Failure(_no_data(week, settings, files))
    read = partial(
        stream_landing,
        week_start=week,
        max_record_bytes=settings.max_record_bytes,
        input_format=settings.input_format,
        adapter_options=settings.adapter_options(),
        default_week=settings.default_week_date(),
        index_uri=lake.uri("_landing_index"),  # only files that can hold the week are opened
    )
    stage = engine.for_lake(lake.root)
    conversations, rejects, files_read = stage.ingest(week, settings.landing_dir, read)
    context.log.info(
        f"week {week}: {conversations.rows} conversations, {rejects.rows} rejects from {files_read} files ({stage.name} engine)"
    )
    if conversations.rows == 0 and rejects.rows == 0 and not settings.allow_empty_weeks:
        raise Failure(_no_data(week, settings, files))
    for written in (conversations, rejects):
        metadata = table_metadata(written, lake.uri(written.table))
        if written.table == "ingest_rejects" and written.rows:
            reasons = value_counts(written.frame, _REASON_KIND.alias("kind"))
            metadata["reject_reasons"] = counts_table(dict(reasons.sort("kind").iter_rows()), "reason")
        yield MaterializeResult(asset_key=written.table, metadata=metadata)


def _landing_files(settings: PipelineSettings) -> list:
    try:
        return landing_files(Path(settings.landing_dir), settings.input_format)
    except FileNotFoundError:
        return []


def _no_data(week, settings: PipelineSettings, files: list) -> str:
    searched = f"searched {Path(settings.landing_dir).resolve()}: {len(files)} {settings.input_format} landing files"
    return (
        f"no landing data for week {week} ({searched}); land the week's files and rerun it, "
        "or set allow_empty_weeks: true on the settings resource for a source that really is empty"
    )
