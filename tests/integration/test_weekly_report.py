"""The weekly report from a real Delta lake: three demo weeks through the weekly job, then the report
asset and ``semtel report`` over the same tables."""

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from semtel_dagster.assets.report import weekly_report_asset
from semtel_dagster.core.insights.privacy import SUPPRESSED
from semtel_dagster.core.insights.report import build_report, read_inputs, report_path
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEKS = [dt.date(2026, 11, 2), dt.date(2026, 11, 9), dt.date(2026, 11, 16)]
CLASSIFIERS = ["topic", "satisfaction", "intent"]
K = 5


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    home = tmp_path_factory.mktemp("report")
    for week in WEEKS:
        write_week(home / "landing", home / "truth", week, n=90, seed=5, engagement=True)
    settings = PipelineSettings(landing_dir=str(home / "landing"), classifiers=CLASSIFIERS, min_group_size=K)
    resources = {"lake": LakeResource(root=str(home / "lake")), "settings": settings}
    defs = build_definitions(
        lake=resources["lake"], settings=settings, endpoint_pool=EndpointPoolResource(endpoints_file="sim", flush_rows=50)
    )
    with DagsterInstance.ephemeral() as instance:
        for week in WEEKS:
            run = defs.resolve_job_def("weekly_pipeline").execute_in_process(partition_key=week.isoformat(), instance=instance)
            assert run.success
        result = materialize([weekly_report_asset], partition_key=WEEKS[-1].isoformat(), resources=resources, instance=instance)
    assert result.success
    return home / "lake", result


def test_report_asset_writes_the_html_and_a_markdown_summary(lake):
    root, result = lake
    path = report_path(str(root.resolve()), WEEKS[-1])
    page = Path(path).read_text(encoding="utf-8")
    metadata = result.asset_materializations_for_node("weekly_report")[0].metadata
    assert metadata["report"].value == path
    assert "What changed this week" in metadata["summary"].value
    assert page.count("data:image/png;base64,") >= 3 * 2 + 2  # distribution + trend per classifier, heatmaps
    assert "http://" not in page and "https://" not in page  # nothing fetched
    assert "Engagement by label" in page and metadata["engagement_section"].value


def test_every_number_in_the_report_model_holds_the_minimum(lake):
    root, _ = lake
    inputs = read_inputs(str(root), WEEKS[-1], 3)
    report = build_report(inputs, K)
    assert report.weeks == tuple(WEEKS) and report.comparisons > 0
    for d in report.distributions:
        for row in d.rows:
            assert row.conversations >= K
            assert (not row.ids) if row.label == SUPPRESSED else row.ids_total >= K
        assert all(v is None or v >= 0 for series in d.trend.values() for v in series)
    shown = [n for h in report.heatmaps for row in h.counts for n in row if n is not None]
    assert shown and min(shown) >= K
    assert all(total >= K and len(ids) == total for h in report.heatmaps for ids, total in h.ids.values())
    assert report.engagement and all(c.n >= K for t in report.engagement for c in t.cells)
    assert {t.metric for t in report.engagement} == {"rating", "thumbs_up", "session_seconds", "returned_next_week"}
    conversations = delta.read_weeks(delta.table_uri(str(root), "conversations"), tables.CONVERSATIONS, [WEEKS[-1]])
    assert report.quality.conversations == conversations.height
    assert report.quality.requests > 0 and report.quality.prompt_tokens > 0


def test_cli_rewrites_the_report_and_names_the_movers(lake, tmp_path):
    root, _ = lake
    out = tmp_path / "r.html"
    args = ["--week", WEEKS[-1].isoformat(), "--weeks", "3", "--lake", str(root), "--out", str(out), "--min-group-size", str(K)]
    run = subprocess.run(
        [sys.executable, "-m", "semtel_dagster.cli", "report", *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"report: {out}" in run.stdout and out.stat().st_size > 10_000
    assert re.search(r"## What changed this week\n\n- ", run.stdout)
    missing = subprocess.run(
        [sys.executable, "-m", "semtel_dagster.cli", "report", *args[:-4], "--week", "2026-10-05"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no rows for week 2026-10-05" in missing.stdout


def test_every_week_the_report_reads_is_a_declared_dependency():
    from dagster import AssetKey

    from semtel_dagster.definitions import defs
    from semtel_dagster.partitions import REPORT_WEEKS

    graph = defs.get_repository_def().asset_graph
    parents = graph.get_parents_partitions(AssetKey("weekly_report"), WEEKS[-1].isoformat()).parent_partitions
    read = {(p.asset_key.to_user_string(), p.partition_key) for p in parents}
    insights = {week for name, week in read if name == "weekly_insights"}
    assert insights == {(WEEKS[-1] - dt.timedelta(weeks=k)).isoformat() for k in range(REPORT_WEEKS)}
    for table in ("classifications", "weekly_crosstabs", "llm_responses", "classification_rejects", "conversations"):
        assert (table, WEEKS[-1].isoformat()) in read
