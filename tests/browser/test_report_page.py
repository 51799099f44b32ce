"""The weekly report opens in Debian's Chromium (Playwright): it renders, every chart is a decoded
image, the page logs no console error, and a screenshot lands in ``.semtel/screenshots/`` (git-ignored).

The lake is two demo weeks through the weekly job (embedded simulator, real Delta tables)."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
from dagster import DagsterInstance

from semtel_dagster.core.insights.report import weekly_report
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WEEKS = [dt.date(2026, 11, 9), dt.date(2026, 11, 16)]
SHOTS = Path(".semtel/screenshots")


def test_report_renders_with_visible_charts_and_no_console_errors(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium not found: apt-get install -y chromium chromium-driver (see README, The UI)")
    pytest.importorskip("playwright", reason="Playwright not installed: pip install -e '.[browser]'")
    from playwright.sync_api import sync_playwright

    for week in WEEKS:
        write_week(tmp_path / "landing", tmp_path / "truth", week, n=80, seed=11, engagement=True)
    settings = PipelineSettings(landing_dir=str(tmp_path / "landing"), classifiers=["topic", "intent"], min_group_size=5)
    defs = build_definitions(
        lake=LakeResource(root=str(tmp_path / "lake")),
        settings=settings,
        endpoint_pool=EndpointPoolResource(endpoints_file="sim"),
    )
    with DagsterInstance.ephemeral() as instance:
        for week in WEEKS:
            assert (
                defs.resolve_job_def("weekly_pipeline")
                .execute_in_process(partition_key=week.isoformat(), instance=instance)
                .success
            )
    written = weekly_report(str(tmp_path / "lake"), WEEKS[-1], weeks=2, min_group_size=5)

    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "request",
            lambda request: errors.append(f"fetched {request.url}") if not request.url.startswith(("file:", "data:")) else None,
        )
        page.goto(Path(written.path).as_uri())
        page.wait_for_load_state("load")
        assert page.title() == f"semtel weekly report {WEEKS[-1]}"
        assert page.get_by_role("heading", name="What changed this week").is_visible()
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 6 and min(widths) > 0, widths
        assert page.locator("img").first.is_visible()
        page.screenshot(path=SHOTS / "weekly-report.png", full_page=True)
        browser.close()
    assert errors == []
