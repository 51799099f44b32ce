"""``semtel classify``: truncate, dedupe, classify and parse one conversations file without Dagster.

The output folder holds the Delta tables ``llm_responses``, ``classifications`` and
``classification_rejects`` (partitioned by week, columns of ``core/tables.py``). Answers stream into
``llm_responses`` in small commits while requests are in flight, so a run killed at any moment and
started again with the same output skips what was answered and repeats at most one flush of calls.

``--engine spark`` runs the stages as the pipeline's Spark engine does (tasks of whole batches, one
dispatcher each); the Spark tasks read their inputs from tables, so the folder then also holds
``conversations``, ``conversations_truncated`` and ``conversation_clusters``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path

OUTPUTS = ("llm_responses", "classifications", "classification_rejects")


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
    engine: str = "polars",
    spark_master: str | None = None,
    log=print,
) -> dict:
    """Run the classify path over every week of ``input_path`` into ``output``; returns the summary."""
    from semtel_dagster.core.classify.answering import Answered, Answering
    from semtel_dagster.core.classify.plan import WALL_SEQUENTIAL
    from semtel_dagster.core.ingest.landing import read_file
    from semtel_dagster.core.llm.budget import budget_summary
    from semtel_dagster.resources import EndpointPoolResource, PipelineSettings

    started = time.monotonic()
    settings = PipelineSettings(prompts_dir=str(prompts_dir) if prompts_dir else None, classifiers=classifiers)
    chosen = settings.load_classifiers()
    ingested = read_file(input_path, max_record_bytes=settings.max_record_bytes)
    conversations = ingested.conversations
    weeks = sorted(set(conversations.get_column("week_start").to_list()))
    pool = EndpointPoolResource(
        **({"endpoints_file": str(endpoints_file)} if endpoints_file else {}),  # else SEMTEL_ENDPOINTS
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
        budget_tokens=budget_tokens,
        budget_cost=budget_cost,
    )
    with pool.opened():
        answering = partial(
            Answering,
            classifiers=chosen,
            models=frozenset(e.model for e in pool.endpoints),
            strategy=settings.batching_strategy,
            batch_size=settings.batch_size,
        )
        log(
            f"semtel classify: {conversations.height} conversations in {len(weeks)} week(s), {engine} engine, "
            f"endpoints {[e.name for e in pool.endpoints]}"
        )
        if engine == "spark":
            reports, rows = _on_spark(conversations, weeks, output, settings, chosen, answering, pool, spark_master, log)
        else:
            reports, rows = _on_polars(conversations, weeks, output, settings, chosen, answering, pool, log)
    report = Answered.merge(reports, WALL_SEQUENTIAL)
    totals = report.stats
    summary = {
        "rows": conversations.height,
        "rejected_records": ingested.rejects.height,
        "weeks": [week.isoformat() for week in weeks],
        "classifiers": sorted(chosen),
        "engine": engine,
        "requests": report.needed,
        "requests_resumed": report.resumed,
        "requests_sent": report.sent,
        "http_requests": totals["requests"],
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "retries": totals["retries"],
        "rate_limited": totals["rate_limited"],
        "timeouts": totals["timeouts"],
        "hedges": totals["hedges"],
        "answered_requests": totals["ok"],
        "failed_requests": totals["errors"],
        **rows,
        "budget": budget_summary(totals, budget_tokens, budget_cost),
        "endpoints": totals["endpoints"],
        "wall_seconds": round(time.monotonic() - started, 3),
    }
    if summary["budget"]["exhausted"]:
        log(
            f"budget reached ({totals['budget_spent_tokens']:,} tokens, cost {totals['budget_spent_cost']:.4f}): dispatch "
            f"stopped cleanly with every answer saved; run the same command again to continue"
        )
    return summary


def _on_polars(conversations, weeks, output: Path, settings, chosen, answering, pool, log) -> tuple[list, dict[str, int]]:
    """Each week in this process: truncate and dedupe in memory, answer, compact, parse."""
    import polars as pl

    from semtel_dagster.core.classify import reuse
    from semtel_dagster.core.classify.answering import answer, logged_send
    from semtel_dagster.core.classify.parse import parse_week
    from semtel_dagster.core.classify.plan import latest_per_request
    from semtel_dagster.core.lake import delta, tables
    from semtel_dagster.core.prepare.dedupe import cluster_exact
    from semtel_dagster.core.prepare.truncate import truncate_conversations

    uri = {name: delta.table_uri(str(output), name) for name in OUTPUTS}
    stored = delta.read_weeks(uri["llm_responses"], tables.LLM_RESPONSES, weeks)
    reports, rows = [], dict.fromkeys(OUTPUTS[1:], 0)
    for week in weeks:
        truncated = truncate_conversations(conversations.filter(pl.col("week_start") == week), settings.truncation())
        clusters = cluster_exact(truncated)
        send = logged_send(
            pool.dispatcher,
            flush_rows=pool.flush_rows,
            flush_seconds=pool.flush_seconds,
            log=log,
            where=f"week {week} (already answered: in {output})",
        )
        reports.append(
            answer(
                answering(week=week),
                clusters,
                truncated,
                stored.filter(pl.col("week_start") == week),
                tables.empty(reuse.CANDIDATES),
                send=send,
                write=lambda frame: delta.append(uri["llm_responses"], frame, tables.LLM_RESPONSES),
            )
        )
        responses = latest_per_request(delta.read_weeks(uri["llm_responses"], tables.LLM_RESPONSES, [week]))
        delta.overwrite_weeks(uri["llm_responses"], responses, tables.LLM_RESPONSES, [week])
        parsed = parse_week(clusters, responses, chosen, settings.batching_strategy, settings.batch_size)
        for table, frame in zip(OUTPUTS[1:], parsed):
            delta.overwrite_weeks(uri[table], frame, tables.TABLES[table], [week])
            rows[table] += frame.height
    return reports, rows


def _on_spark(
    conversations, weeks, output: Path, settings, chosen, answering, pool, spark_master: str | None, log
) -> tuple[list, dict[str, int]]:
    """Each week through the Spark engine: the pipeline's truncate, exact dedupe, classify and parse steps."""
    import polars as pl

    from semtel_dagster.core.classify.parse import parse_week
    from semtel_dagster.core.lake import delta, tables
    from semtel_dagster.core.prepare.truncate import truncate_conversations
    from semtel_dagster.resources import EngineResource

    engine = EngineResource(kind="spark", **({"spark_master": spark_master} if spark_master else {})).for_lake(str(output))
    truncate = partial(truncate_conversations, config=settings.truncation())
    parse = partial(parse_week, classifiers=chosen, strategy=settings.batching_strategy, batch_size=settings.batch_size)
    reports, rows = [], dict.fromkeys(OUTPUTS[1:], 0)
    for week in weeks:
        week_rows = conversations.filter(pl.col("week_start") == week)
        delta.overwrite_weeks(delta.table_uri(str(output), "conversations"), week_rows, tables.CONVERSATIONS, [week])
        engine.map_week("conversations", "conversations_truncated", week, truncate)
        engine.cluster_exact(week)
        classified = engine.classify(
            week,
            answering(week=week),
            pool.endpoints,
            pool.dispatch_settings(),
            reuse_weeks=[],
            embedder=None,
            flush_rows=pool.flush_rows,
            flush_seconds=pool.flush_seconds,
            log=log,
        )
        reports.append(classified.report)
        for written in engine.parse(week, parse):
            rows[written.table] += written.rows
    return reports, rows


EXIT_FAILED_REQUESTS = 1  # finished, but some requests ended with an error row (their pairs are rejects)
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_STOPPED = 4  # dispatch stopped early: a misconfigured endpoint, or every endpoint kept failing


def _run(args: argparse.Namespace) -> int:
    from semtel_dagster.core.llm.dispatch import DispatchFailed
    from semtel_dagster.core.llm.endpoints import EndpointsFileError

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
            engine=args.engine,
            spark_master=args.spark_master,
            log=log,
        )
    except (EndpointsFileError, FileNotFoundError, ValueError) as exc:
        log(f"semtel classify: {exc}")
        return EXIT_USAGE
    except DispatchFailed as exc:
        log(f"semtel classify: dispatch stopped: {exc}")
        return EXIT_STOPPED
    text = json.dumps(summary, indent=2, default=str)
    if args.summary_json:
        Path(args.summary_json).write_text(text)
    print(text)
    if summary["failed_requests"]:
        log(
            f"semtel classify: {summary['answered_requests']} requests answered, {summary['failed_requests']} failed "
            "(reasons in llm_responses.error; a rerun asks them again)"
        )
    if summary["budget"]["exhausted"]:
        return EXIT_BUDGET
    return EXIT_FAILED_REQUESTS if summary["failed_requests"] else 0


def register(commands) -> None:
    cmd = commands.add_parser("classify", help="truncate, dedupe, classify and parse a conversations file (no Dagster)")
    cmd.add_argument("--input", required=True, help="conversations JSONL (or .jsonl.gz)")
    cmd.add_argument("--output", required=True, help="folder of Delta tables; rerunning into it resumes")
    cmd.add_argument("--endpoints", help="endpoints YAML, or 'sim' for the embedded simulator (default: SEMTEL_ENDPOINTS)")
    cmd.add_argument("--classifiers", help="comma-separated classifier names (default: every prompt)")
    cmd.add_argument("--prompts", help="folder of .prompty classifiers (default ./prompts)")
    cmd.add_argument("--summary-json", help="also write the summary to this file")
    cmd.add_argument("--budget-tokens", type=int, help="stop before this many prompt + completion tokens (retries count)")
    cmd.add_argument("--budget-cost", type=float, help="stop before this cost (prices per model in the endpoints file)")
    cmd.add_argument("--flush-rows", type=int, default=200, help="commit answers every N responses ...")
    cmd.add_argument("--flush-seconds", type=float, default=2.0, help="... or every T seconds")
    cmd.add_argument(
        "--engine",
        choices=["polars", "spark"],
        default="polars",
        help="polars (default, this process) or spark (tasks of whole batches, one dispatcher each)",
    )
    cmd.add_argument(
        "--spark-master",
        help="with --engine spark: the master (default SEMTEL_SPARK_MASTER or local[*]; SEMTEL_SPARK_REMOTE for Spark Connect)",
    )
    cmd.set_defaults(func=_run)
