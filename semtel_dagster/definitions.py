"""The Dagster code location: stage assets, their gates, resources, the weekly job and schedule."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    Definitions,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
)

from semtel_dagster.assets.aggregate import aggregate
from semtel_dagster.assets.classify import llm_responses
from semtel_dagster.assets.dedupe import dedupe
from semtel_dagster.assets.evaluation import classifier_evaluation
from semtel_dagster.assets.ingest import ingest
from semtel_dagster.assets.parse import parse_clean
from semtel_dagster.assets.report import weekly_report_asset
from semtel_dagster.assets.taxonomy import taxonomy_draft, taxonomy_sample, taxonomy_summaries
from semtel_dagster.assets.truncate import conversations_truncated
from semtel_dagster.checks.stage_checks import QUALITY_CHECKS, STAGE_GATES
from semtel_dagster.partitions import weekly_partitions
from semtel_dagster.resources import (
    EmbedderResource,
    EndpointPoolResource,
    EngineResource,
    LakeResource,
    PipelineSettings,
)
from semtel_dagster.sensors import landing_sensor, schedule_status

STAGE_ASSETS = [ingest, conversations_truncated, dedupe, llm_responses, parse_clean, aggregate]

# In-process execution, for the job and for asset backfills launched from the graph. A week is a chain
# (ingest -> ... -> aggregate) with nothing to run side by side, and each stage's work is already
# parallel inside it (async LLM dispatch, Polars threads, Spark tasks). A process per step would
# re-import the code location and rebuild the resources (simulator, embedding model, Spark session)
# for every step: minutes of a week's run on two cores for no parallelism gained.
EXECUTOR = in_process_executor

weekly_job = define_asset_job(
    "weekly_pipeline",
    selection=AssetSelection.groups("weekly_pipeline"),
    partitions_def=weekly_partitions,
    executor_def=EXECUTOR,
    description="Ingest, truncate, dedupe, classify, parse and aggregate one week of conversations.",
)

# Runs Monday 03:00 UTC for the week that ended at midnight (the last complete partition).
# Stopped unless SEMTEL_SCHEDULE=on (semtel_dagster/sensors.py says why).
weekly_schedule = build_schedule_from_partitioned_job(
    weekly_job, hour_of_day=3, minute_of_hour=0, default_status=schedule_status()
)


def build_definitions(
    lake: LakeResource | None = None,
    settings: PipelineSettings | None = None,
    endpoint_pool: EndpointPoolResource | None = None,
    embedder: EmbedderResource | None = None,
    engine: EngineResource | None = None,
) -> Definitions:
    """Definitions with the given resources (defaults: environment variables, then embedded defaults)."""
    return Definitions(
        assets=STAGE_ASSETS + [weekly_report_asset, classifier_evaluation, taxonomy_sample, taxonomy_summaries, taxonomy_draft],
        asset_checks=STAGE_GATES + QUALITY_CHECKS,
        jobs=[weekly_job],
        schedules=[weekly_schedule],
        sensors=[landing_sensor],
        executor=EXECUTOR,
        resources={
            "lake": lake or LakeResource(),
            "settings": settings or PipelineSettings(),
            "endpoint_pool": endpoint_pool or EndpointPoolResource(),
            "embedder": embedder or EmbedderResource(),
            "engine": engine or EngineResource(),
        },
    )


defs = build_definitions()
