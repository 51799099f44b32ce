"""The weekly report for product teams: one self-contained HTML file per week, in the lake."""

import os
from pathlib import Path

from dagster import AssetDep, AssetExecutionContext, MaterializeResult, MetadataValue, asset

from semtel_dagster.assets.metadata import OWNERS, STAGE_VERSION
from semtel_dagster.core.insights.report import WEEK_TABLES, prices_of, weekly_report
from semtel_dagster.partitions import REPORT_WEEKS, earlier_weeks, partition_week, weekly_partitions
from semtel_dagster.resources import LakeResource, PipelineSettings


@asset(
    name="weekly_report",
    # The trend charts read up to REPORT_WEEKS weeks of weekly_insights; everything else is this week's.
    deps=[
        AssetDep("weekly_insights", partition_mapping=earlier_weeks(REPORT_WEEKS - 1, and_this_week=True)),
        *WEEK_TABLES,
    ],
    group_name="reports",
    partitions_def=weekly_partitions,
    kinds={"html"},
    owners=OWNERS,
    tags={"stage": "report", "partitioned": "weekly"},
    code_version=STAGE_VERSION,
)
def weekly_report_asset(context: AssetExecutionContext, lake: LakeResource, settings: PipelineSettings) -> MaterializeResult:
    """What changed this week, per classifier, with intervals, tests, trends, cross-tabs, engagement and data
    quality; every number at the minimum group size. Needs the 'eval' extra (matplotlib)."""
    week = partition_week(context.partition_key)
    root = lake.root if "://" in lake.root else str(Path(lake.root).resolve())
    # Prices for the cost line come from the endpoints file the pool reads; nothing is started for them.
    written = weekly_report(
        root,
        week,
        weeks=settings.report_weeks,
        min_group_size=settings.min_group_size,
        prices=prices_of(os.environ.get("SEMTEL_ENDPOINTS")),
    )
    report = written.report
    return MaterializeResult(
        metadata={
            "summary": MetadataValue.md(written.markdown),
            "report": MetadataValue.path(written.path),
            "significant_movers": MetadataValue.int(len(report.movers)),
            "comparisons": MetadataValue.int(report.comparisons),
            "min_group_size": MetadataValue.int(report.min_group_size),
            "engagement_section": MetadataValue.bool(bool(report.engagement)),
        }
    )
