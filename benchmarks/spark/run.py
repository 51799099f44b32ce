"""Non-LLM stages (ingest, truncate, exact dedupe) on generated conversations: Polars vs Spark.

    python benchmarks/spark/run.py --n 1000000 --files 8      # writes RESULTS.json beside this file

Each configuration runs in a fresh process on a fresh lake; peak memory is the highest sum of the
resident sets of that process and all its children (the JVM and Python workers for Spark), sampled
every 100 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

WEEK = dt.date(2026, 11, 16)
HERE = Path(__file__).parent


def generate(landing: Path, n: int, files: int) -> None:
    from semtel_dagster.sim.sample import generate_week

    records = generate_week(WEEK, n=n, seed=1).records
    landing.mkdir(parents=True, exist_ok=True)
    step = -(-len(records) // files)
    for i in range(files):
        (landing / f"part-{i:03d}.jsonl").write_bytes(b"".join(r + b"\n" for r in records[i * step : (i + 1) * step]))


def stages(engine: str, landing: str, lake: str) -> dict:
    """One configuration, in this process: seconds per stage and rows."""
    from semtel_dagster.core.ingest.landing import stream_landing
    from semtel_dagster.engines.pipeline import Pipeline
    from semtel_dagster.resources import EngineResource, PipelineSettings

    kind, _, master = engine.partition(":")
    resource = EngineResource(
        kind=kind, spark_master=master or "local[*]", spark_conf={"spark.driver.memory": "8g", "spark.ui.enabled": "false"}
    )
    started = time.monotonic()
    stage = resource.for_lake(lake)
    seconds = {"session": time.monotonic() - started}
    pipeline = Pipeline(stage, PipelineSettings())  # the product's stages: head_tail:3000, exact dedupe
    steps = [
        ("ingest", lambda: stage.ingest(WEEK, landing, partial(stream_landing, week_start=WEEK))[0]),
        ("truncate", lambda: pipeline.truncate(WEEK)),
        ("dedupe", lambda: pipeline.dedupe(WEEK).clusters),
    ]
    rows = {}
    for name, step in steps:
        t = time.monotonic()
        rows[name] = step().rows
        seconds[name] = time.monotonic() - t
    return {"seconds": {k: round(v, 1) for k, v in seconds.items()}, "rows": rows}


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    stack.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measure(engine: str, landing: Path, lake: Path) -> dict:
    cmd = [sys.executable, __file__, "--stages", engine, str(landing), str(lake)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{engine} failed ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    return {"engine": engine, "wall_s": round(time.monotonic() - started, 1), "peak_rss_gb": round(peak / 2**30, 2), **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--engines", default="polars,spark:local[2],spark:local[1]")
    parser.add_argument("--out", default="RESULTS.json", help="file name beside this script")
    parser.add_argument("--stages", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages:
        print(json.dumps(stages(*args.stages)))
        return
    with tempfile.TemporaryDirectory(prefix="semtel-bench-") as tmp:
        landing = Path(tmp) / "landing"
        t = time.monotonic()
        generate(landing, args.n, args.files)
        generated = time.monotonic() - t
        runs = [measure(e, landing, Path(tmp) / f"lake-{i}") for i, e in enumerate(args.engines.split(","))]
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {round(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30)} GiB, shared",
        "conversations": args.n,
        "files": args.files,
        "generate_s": round(generated, 1),
        "runs": runs,
    }
    (HERE / args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
