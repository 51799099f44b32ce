"""``semtel classify``: truncate, dedupe, classify and parse one conversations file without Dagster.

The output folder holds the Delta tables ``llm_responses``, ``classifications`` and
``classification_rejects`` (partitioned by week, columns of ``core/tables.py``). Answers stream into
``llm_responses`` in small commits while requests are in flight, so a run killed at any moment and
started again with the same output skips what was answered and repeats at most one flush of calls.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path


def classify_file(
    input_path: Path,
    output: Path,
    endpoints_file: Path | None,
    *,
    classifiers: list[str] | None = None,
    prompts_dir: Path | None = None,
    budget_tokens: int | None = None,
    budget_cost: float | None = None,
    flush_rows: int = 200,
    flush_seconds: float = 2.0,
    log=print,
) -> dict:
    """Run the classify path over every week of ``input_path`` into ``output``; returns the summary."""
    import polars as pl

    from semtel_dagster.core import delta, tables
    from semtel_dagster.core.classify import (
        ClassifyPlan,
        answered_request_ids,
        latest_per_request,
        plan_requests,
        run_dispatch,
    )
    from semtel_dagster.core.dedupe import cluster_exact
    from semtel_dagster.core.dispatch import budget_summary
    from semtel_dagster.core.ingest import read_file
    from semtel_dagster.core.parse import parse_week
    from semtel_dagster.core.progress import DispatchProgress
    from semtel_dagster.core.truncate import truncate_conversations
    from semtel_dagster.resources import EndpointPoolResource, PipelineSettings

    started = time.monotonic()
    settings = PipelineSettings(prompts_dir=str(prompts_dir) if prompts_dir else None, classifiers=classifiers)
    chosen = settings.load_classifiers()
    ingested = read_file(input_path, max_record_bytes=settings.max_record_bytes)
    uri = {name: delta.table_uri(str(output), name) for name in ("llm_responses", "classifications", "classification_rejects")}
    conversations = ingested.conversations
    weeks = sorted(set(conversations.get_column("week_start").to_list()))
    pool = EndpointPoolResource(
        endpoints_file=str(endpoints_file) if endpoints_file else None,
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
        budget_tokens=budget_tokens,
        budget_cost=budget_cost,
    )
    with pool.opened():
        models = {endpoint.model for endpoint in pool.endpoints}
        answered = answered_request_ids(delta.read_weeks(uri["llm_responses"], tables.LLM_RESPONSES, weeks), models)
        per_week = {}
        for week in weeks:
            truncated = truncate_conversations(conversations.filter(pl.col("week_start") == week), settings.truncation())
            clusters = cluster_exact(truncated)
            per_week[week] = (clusters, plan_requests(clusters, truncated, chosen, answered))
        total = sum(plan.total for _, plan in per_week.values())
        to_send = sum(len(plan.to_send) for _, plan in per_week.values())
        log(f"semtel classify: {conversations.height} conversations in {len(weeks)} week(s), {total} requests needed, "
            f"{total - to_send} already answered in {output}, {to_send} to send to {[e.name for e in pool.endpoints]}")
        progress = DispatchProgress(to_send, log)
        try:
            stats = run_dispatch(
                ClassifyPlan(total, total - to_send, itertools.chain.from_iterable(p.to_send for _, p in per_week.values())),
                pool.dispatcher(),
                lambda rows: delta.append(uri["llm_responses"], pl.DataFrame(rows, schema=tables.LLM_RESPONSES), tables.LLM_RESPONSES),
                flush_rows=flush_rows,
                flush_seconds=flush_seconds,
                on_progress=progress,
            )
        finally:
            progress.close()
    rows = {"classifications": 0, "classification_rejects": 0}
    for week, (clusters, _) in per_week.items():
        responses = latest_per_request(delta.read_weeks(uri["llm_responses"], tables.LLM_RESPONSES, [week]))
        delta.overwrite_weeks(uri["llm_responses"], responses, tables.LLM_RESPONSES, [week])
        for table, frame in zip(rows, parse_week(clusters, responses, chosen)):
            delta.overwrite_weeks(uri[table], frame, tables.TABLES[table], [week])
            rows[table] += frame.height
    totals = stats.as_dict()
    summary = {
        "rows": conversations.height,
        "rejected_records": ingested.rejects.height,
        "weeks": [week.isoformat() for week in weeks],
        "classifiers": sorted(chosen),
        "requests": total,
        "requests_resumed": total - to_send,
        "requests_sent": to_send,
        "http_requests": totals["requests"],
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "retries": totals["retries"],
        "rate_limited": totals["rate_limited"],
        "timeouts": totals["timeouts"],
        "hedges": totals["hedges"],
        "failed_requests": totals["errors"],
        **rows,
        "budget": budget_summary(totals, budget_tokens, budget_cost),
        "endpoints": totals["endpoints"],
        "wall_seconds": round(time.monotonic() - started, 3),
    }
    if summary["budget"]["exhausted"]:
        log(f"budget reached ({totals['budget_spent_tokens']:,} tokens, cost {totals['budget_spent_cost']:.4f}): dispatch "
            f"stopped cleanly with every answer saved; run the same command again to continue")
    return summary


def _run(args: argparse.Namespace) -> int:
    from semtel_dagster.core.endpoints import EndpointsFileError

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        summary = classify_file(
            Path(args.input),
            Path(args.output),
            Path(args.endpoints) if args.endpoints else None,
            classifiers=args.classifiers.split(",") if args.classifiers else None,
            prompts_dir=Path(args.prompts) if args.prompts else None,
            budget_tokens=args.budget_tokens,
            budget_cost=args.budget_cost,
            flush_rows=args.flush_rows,
            flush_seconds=args.flush_seconds,
            log=log,
        )
    except (EndpointsFileError, FileNotFoundError, ValueError) as exc:
        log(f"semtel classify: {exc}")
        return 2
    text = json.dumps(summary, indent=2, default=str)
    if args.summary_json:
        Path(args.summary_json).write_text(text)
    print(text)
    return 3 if summary["budget"]["exhausted"] else 0


def register(commands) -> None:
    cmd = commands.add_parser("classify", help="truncate, dedupe, classify and parse a conversations file (no Dagster)")
    cmd.add_argument("--input", required=True, help="conversations JSONL (or .jsonl.gz)")
    cmd.add_argument("--output", required=True, help="folder of Delta tables; rerunning into it resumes")
    cmd.add_argument("--endpoints", help="endpoints YAML (default: start the embedded simulator)")
    cmd.add_argument("--classifiers", help="comma-separated classifier names (default: every prompt)")
    cmd.add_argument("--prompts", help="folder of .prompty classifiers (default ./prompts)")
    cmd.add_argument("--summary-json", help="also write the summary to this file")
    cmd.add_argument("--budget-tokens", type=int, help="stop before this many prompt + completion tokens (retries count)")
    cmd.add_argument("--budget-cost", type=float, help="stop before this cost (prices per model in the endpoints file)")
    cmd.add_argument("--flush-rows", type=int, default=200, help="commit answers every N responses ...")
    cmd.add_argument("--flush-seconds", type=float, default=2.0, help="... or every T seconds")
    cmd.set_defaults(func=_run)
