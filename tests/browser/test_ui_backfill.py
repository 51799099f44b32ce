"""A two-week backfill launched by clicking in the Dagster UI, in Debian's Chromium through Playwright.

``dagster dev`` (webserver and daemon: backfills need the daemon) serves the ``semtel`` location on
loopback over a fresh lake and instance with two landed sample weeks and the embedded simulator.
The test opens the asset group, clicks "Materialize all", enters the two weeks, launches the
backfill, waits for it in the UI, then asserts both weeks' tables and each week's check status
(through the webserver's own GraphQL). Screenshots go to ``.semtel/screenshots/`` (git-ignored).
"""

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WEEKS = ["2026-11-09", "2026-11-16"]
SHOTS = Path(".semtel/screenshots")
CHECK_STATUSES = """
query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { assetChecksOrError {
  ... on AssetChecks { checks { name partitionStatuses { ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } } } } }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {seconds:.0f} s")


def _graphql(base: str, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{base}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["data"]


BACKFILLS = "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status numPartitions } } } }"


def _wait_backfill(base: str, seconds: float) -> dict:
    """The UI's backfill, polled until the daemon finishes it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        (backfill,) = _graphql(base, BACKFILLS, {})["partitionBackfillsOrError"]["results"]
        if backfill["status"] not in ("REQUESTED", "CANCELING"):
            return backfill
        time.sleep(5)
    raise TimeoutError(f"backfill not finished in {seconds:.0f} s")


@pytest.fixture()
def webserver(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium not found: apt-get install -y chromium chromium-driver (see README, The UI)")
    pytest.importorskip("playwright", reason="Playwright not installed: pip install -e '.[browser]'")
    from semtel_dagster.cli.demo import demo_environment, ensure_instance, home_paths
    from semtel_dagster.sim.sample import write_week

    paths = home_paths(tmp_path)
    for week in WEEKS:
        write_week(paths["landing"], paths["truth"], dt.date.fromisoformat(week), n=30, seed=5)
    ensure_instance(paths["dagster"])
    port = _free_port()
    env = {**os.environ, **demo_environment(tmp_path, "polars", environ={})}
    log = (tmp_path / "dagster-dev.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/server_info", 180)
        yield base, Path(env["SEMTEL_LAKE"])
    finally:  # dagster dev and its webserver, daemon and code server: one process group
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


@pytest.mark.timeout(2400)
def test_two_week_backfill_by_clicking(webserver):
    from playwright.sync_api import sync_playwright

    from semtel_dagster.core.lake import delta, tables

    base, lake = webserver
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{base}/locations/semtel/asset-groups/weekly_pipeline")
        materialize = page.get_by_role("button", name="Materialize all")
        materialize.wait_for()
        page.wait_for_timeout(1500)  # a fresh instance greets with a community dialog first
        if page.get_by_role("button", name="Skip").is_visible():
            page.get_by_role("button", name="Skip").click()
        materialize.click()
        dialog = page.get_by_role("dialog").last
        partitions = dialog.locator("input[type=text]").first
        partitions.fill(f"[{WEEKS[0]}...{WEEKS[1]}]")
        partitions.press("Enter")
        page.screenshot(path=SHOTS / "1-two-weeks-selected.png")
        dialog.get_by_role("button", name="Launch backfill").click()
        page.get_by_text("Created backfill").wait_for()
        page.screenshot(path=SHOTS / "2-backfill-created.png")
        backfill = _wait_backfill(base, 1500)
        page.goto(f"{base}/runs/b/{backfill['id']}")
        page.wait_for_timeout(3000)
        page.screenshot(path=SHOTS / "3-backfill-done.png")
        page.goto(f"{base}/assets/conversations?view=checks")
        page.wait_for_timeout(3000)
        page.screenshot(path=SHOTS / "4-conversations-checks.png")
        browser.close()

    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    for week in WEEKS:
        date = dt.date.fromisoformat(week)
        conversations = delta.read_weeks(delta.table_uri(str(lake), "conversations"), tables.CONVERSATIONS, [date])
        insights = delta.read_weeks(delta.table_uri(str(lake), "weekly_insights"), tables.WEEKLY_INSIGHTS, [date])
        assert conversations.height == 30 and insights.height > 0, week
    node = _graphql(base, CHECK_STATUSES, {"path": ["conversations"]})["assetNodeOrError"]
    (gate,) = [c for c in node["assetChecksOrError"]["checks"] if c["name"] == "conversations_gate"]
    covered = {w: r["status"] for r in gate["partitionStatuses"]["ranges"] for w in WEEKS if r["startKey"] <= w <= r["endKey"]}
    assert covered == {WEEKS[0]: "SUCCEEDED", WEEKS[1]: "SUCCEEDED"}
