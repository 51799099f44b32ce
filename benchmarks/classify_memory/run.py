"""Peak memory of classify at 100k and 1M representatives, through the function the Polars engine calls.

    python -m benchmarks.classify_memory.run          # ~3 min on 2 shared cores, writes results.json (RESULTS.md by hand)

Each case runs in its own process: it builds a synthetic week (short distinct transcripts, every
conversation its own representative, no earlier answers), then runs ``core.classify.answering.answer``
(the plan over the week's representatives + the dispatcher) against the simulator in another process,
committing answers to a real Delta table. Dispatching a million calls takes far too long on this
machine, so the send step dispatches the first 5k or 20k requests of the streamed plan and stops;
planning still counts every unit of the week, and the two cuts at 1M show the dispatch is flat. Memory is the process's peak RSS (``ru_maxrss``), next
to the RSS once the week's frames are built, and, for comparison, the RSS of the same plan
materialized as a list (what the plan did before it streamed).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WEEK = dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]
# (representatives, plan kept as a stream or materialized as a list, requests dispatched)
CASES = [(100_000, "stream", 5_000), (1_000_000, "stream", 5_000), (1_000_000, "stream", 20_000), (100_000, "list", 0)]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def week(n: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``n`` conversations, each its own representative, with short distinct transcripts (~25 tokens)."""
    from semtel_dagster.core.lake import tables

    ids = pl.int_range(0, n, eager=True).map_elements(lambda i: f"conv-{(i * 7919) % n:08d}", return_dtype=pl.String)
    topics = pl.Series(["python error", "travel plan", "poem", "invoice", "kernel latency", "garden"])
    clusters = pl.DataFrame(
        {
            "conversation_id": ids,
            "week_start": pl.repeat(WEEK, n, eager=True),
            "representative_id": ids,
            "is_representative": pl.repeat(True, n, eager=True),
            "cluster_size": pl.repeat(1, n, eager=True),
            "method": pl.repeat("exact", n, eager=True),
            "similarity": pl.repeat(1.0, n, eager=True),
            "text_hash": ids,
        }
    ).pipe(tables.conform, tables.CONVERSATION_CLUSTERS)
    truncated = pl.DataFrame({"conversation_id": ids}).with_columns(
        transcript=pl.format(
            "User: help me with my {} please #{}\n\nAssistant: sure, here is how.",
            topics.gather(pl.int_range(0, n, eager=True) % topics.len()),
            pl.col("conversation_id"),
        ),
        tokens_after=pl.lit(25, pl.Int64),
    )
    return clusters, truncated


def case(n: int, mode: str, dispatched: int, url: str) -> dict:
    from semtel_dagster.core.classify.answering import Answering, Calls, answer
    from semtel_dagster.core.classify.plan import ClassifyPlan, plan_requests, run_dispatch
    from semtel_dagster.core.classify.prompts import load_classifiers
    from semtel_dagster.core.classify.reuse import CANDIDATES
    from semtel_dagster.core.lake import delta, tables
    from semtel_dagster.core.llm.endpoints import Endpoint

    started = rss_mb()
    clusters, truncated = week(n)
    classifiers = load_classifiers(ROOT / "prompts", CLASSIFIERS)
    with_week = rss_mb()
    if mode == "list":
        t0 = time.perf_counter()
        plan = plan_requests(clusters, truncated, classifiers, set())
        held = list(plan.to_send)
        return {
            "representatives": n,
            "mode": mode,
            "requests_planned": len(held),
            "plan_seconds": round(time.perf_counter() - t0, 1),
            "rss_start_mb": round(started),
            "rss_with_week_mb": round(with_week),
            "peak_rss_mb": round(peak_mb()),
        }
    lake = Path(tempfile.mkdtemp(prefix="scale-lake-"))
    calls = Calls([Endpoint(name="zero", base_url=url, model="gpt-4o-mini", max_concurrency=32)], flush_rows=1000)
    config = Answering(week=WEEK, classifiers=classifiers, models=calls.models)
    seen: dict[str, float] = {}

    def send(plan: ClassifyPlan, write_batch) -> object:
        """The engine's send, cut to the first ``dispatched`` requests of the streamed plan."""
        seen["planned"] = plan.sending
        seen["plan_seconds"] = time.perf_counter() - t0
        seen["rss_after_plan_mb"] = rss_mb()
        cut = ClassifyPlan(plan.total, plan.total - dispatched, itertools.islice(plan.to_send, dispatched))
        return run_dispatch(cut, calls.dispatcher(), write_batch, flush_rows=calls.flush_rows, flush_seconds=calls.flush_seconds)

    t0 = time.perf_counter()
    report = answer(
        config,
        clusters,
        truncated,
        tables.empty(tables.LLM_RESPONSES),
        tables.empty(CANDIDATES),
        send=send,
        write=partial(delta.append, str(lake / "llm_responses"), schema=tables.LLM_RESPONSES),
    )
    stored = pl.read_delta(str(lake / "llm_responses")).height
    return {
        "representatives": n,
        "mode": mode,
        "classifiers": len(classifiers),
        "requests_planned": int(seen["planned"]),
        "requests_dispatched": report.stats["requests"],
        "requests_ok": report.stats["ok"],
        "rows_in_delta": stored,
        "plan_seconds": round(seen["plan_seconds"], 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "rss_start_mb": round(started),
        "rss_with_week_mb": round(with_week),
        "rss_after_plan_mb": round(seen["rss_after_plan_mb"]),
        "peak_rss_mb": round(peak_mb()),
    }


def main() -> None:
    from benchmarks.dispatch.run import Simulator

    results = []
    load_before = os.getloadavg()
    with Simulator([{"name": "zero", "model": "gpt-4o-mini", "latency_ms": 0.0}]) as sim:
        for n, mode, dispatched in CASES:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.classify_memory.run", "_case", str(n), mode, str(dispatched), sim.url("zero")],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
            )
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
    out = {
        "date": dt.date.today().isoformat(),
        "machine": "2 cores / 24 GB, shared with other workloads",
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        "classifiers": CLASSIFIERS,
        "strategy": "single",
        "cases": results,
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
    }
    (HERE / "results.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_case"]:
        print(json.dumps(case(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5])))
    else:
        main()
