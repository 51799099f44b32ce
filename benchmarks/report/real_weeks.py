"""The weekly report over two weeks of real conversations (hh-rlhf, OpenAssistant, arena-hard).

The records are read with the ingest adapters (``core.ingest``), given timestamps inside two weeks and
landed as canonical JSONL in a temporary folder (nothing is copied into the repository); the two weeks
mix the sources differently (week B has more arena-hard questions: a real shift in what people ask).
Both weeks run through the weekly Dagster job with the embedded simulator as the labeller
(``SEMTEL_ENDPOINTS=sim``: a stand-in, its labels are plausible, not a model's), then the
``weekly_report`` asset writes the report; a screenshot of its top goes to ``--screenshot``.

    python -m benchmarks.report.real_weeks [--per-week 240] [--screenshot docs/report.png]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SEMTEL_SHARED_DATA", HERE.parents[2] / "shared" / "data"))
WEEKS = [dt.date(2026, 11, 9), dt.date(2026, 11, 16)]
MIX = {
    WEEKS[0]: {"hh_rlhf": 0.55, "oasst": 0.25, "arena_hard": 0.20},
    WEEKS[1]: {"hh_rlhf": 0.30, "oasst": 0.20, "arena_hard": 0.50},
}


def real_conversations() -> dict[str, pl.DataFrame]:
    """Each source's conversations through the product's own adapters (ids and messages only)."""
    from semtel_dagster.core.ingest.adapters import AdapterOptions
    from semtel_dagster.core.ingest.landing import read_landing

    week = WEEKS[0]
    read = {
        "hh_rlhf": read_landing(DATA / "hh-rlhf", week, input_format="hh_rlhf", default_week=week, first_week=week),
        "oasst": read_landing(
            DATA / "oasst",
            week,
            input_format="oasst",
            adapter_options=AdapterOptions(oasst_mode="path"),
            default_week=week,
            first_week=week,
        ),
        "arena_hard": read_landing(DATA / "arena-hard", week, input_format="arena_hard", default_week=week, first_week=week),
    }
    return {name: result.conversations.select("conversation_id", "messages") for name, result in read.items()}


def land(landing: Path, per_week: int, seed: int = 7) -> dict[str, dict[str, int]]:
    """Canonical JSONL per week in ``landing``; each conversation is used in one week only."""
    rng = random.Random(seed)
    pools = {
        name: frame.sample(fraction=1.0, shuffle=True, seed=seed).iter_rows(named=True)
        for name, frame in real_conversations().items()
    }
    landed: dict[str, dict[str, int]] = {}
    landing.mkdir(parents=True, exist_ok=True)
    for week, mix in MIX.items():
        start = dt.datetime.combine(week, dt.time(), dt.UTC)
        counts = {name: round(per_week * share) for name, share in mix.items()}
        with open(landing / f"real-{week}.jsonl", "w", encoding="utf-8") as out:
            for name, n in counts.items():
                for _ in range(n):
                    row = next(pools[name])
                    started = start + dt.timedelta(seconds=rng.randrange(7 * 86400))
                    record = {
                        "conversation_id": f"{name}:{row['conversation_id']}",
                        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "messages": row["messages"],
                        "source": name,
                    }
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
        landed[week.isoformat()] = counts
    return landed


def screenshot(page_path: str, target: Path, height: int = 1500) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1150, "height": height})
        page.goto(Path(page_path).as_uri())
        page.wait_for_load_state("load")
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=target, type="png")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-week", type=int, default=240)
    parser.add_argument("--min-group-size", type=int, default=10)
    parser.add_argument("--screenshot", default=str(HERE / "report.png"))
    parser.add_argument("--keep", help="keep the lake and report in this folder (default: a temporary one)")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"real data not found at {DATA} (set SEMTEL_SHARED_DATA)")
    from dagster import DagsterInstance, materialize

    from semtel_dagster.assets.report import weekly_report_asset
    from semtel_dagster.definitions import build_definitions
    from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings

    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="semtel-real-report-"))
    landed = land(home / "landing", args.per_week)
    lake = LakeResource(root=str(home / "lake"))
    settings = PipelineSettings(landing_dir=str(home / "landing"), min_group_size=args.min_group_size)
    defs = build_definitions(lake=lake, settings=settings, endpoint_pool=EndpointPoolResource(endpoints_file="sim"))
    timings = {}
    with DagsterInstance.ephemeral() as instance:
        for week in WEEKS:
            started = time.monotonic()
            run = defs.resolve_job_def("weekly_pipeline").execute_in_process(partition_key=week.isoformat(), instance=instance)
            assert run.success, f"week {week} failed"
            timings[week.isoformat()] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        result = materialize(
            [weekly_report_asset],
            partition_key=WEEKS[-1].isoformat(),
            resources={"lake": lake, "settings": settings},
            instance=instance,
        )
        report_seconds = round(time.monotonic() - started, 1)
    metadata = result.asset_materializations_for_node("weekly_report")[0].metadata
    path = metadata["report"].value
    screenshot(path, Path(args.screenshot))
    summary = {
        "landed": landed,
        "pipeline_seconds": timings,
        "report_seconds": report_seconds,
        "report": path,
        "report_bytes": Path(path).stat().st_size,
        "significant_movers": metadata["significant_movers"].value,
        "comparisons": metadata["comparisons"].value,
    }
    print(metadata["summary"].value)
    print(json.dumps(summary, indent=2))
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
