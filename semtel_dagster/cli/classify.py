"""``semtel classify``: truncate, dedupe, classify and parse one conversations file without Dagster.

The output folder holds the Delta tables ``llm_responses``, ``classifications`` and
``classification_rejects`` (partitioned by week, columns of ``core/tables.py``), and the stage inputs
``conversations``, ``conversations_truncated``, ``conversation_clusters`` and ``conversation_embeddings``.
Each week runs the pipeline's own stage chain (``engines.pipeline.Pipeline.run_week``). Answers stream
into ``llm_responses`` in small commits while requests are in flight, so a run killed at any moment and
started again with the same output skips what was answered and repeats at most one flush of calls.

``--engine spark`` runs the same chain on the Spark engine (tasks of whole batches, one dispatcher each).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Literal

OUTPUTS = ("llm_responses", "classifications", "classification_rejects")
OUTPUT_LOCK = ".semtel-classify.lock"  # one run per output folder: two would send every request twice


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
    give_up_s: float = 25.0,
    stop_after_failing_s: float = 30.0,
    engine: Literal["polars", "spark"] = "polars",
    spark_master: str | None = None,
    scrub_pii: bool = True,
    mode: Literal["per_endpoint", "online", "batch"] = "per_endpoint",
    log=print,
) -> dict:
    """Run the classify path over every week of ``input_path`` into ``output``; returns the summary."""
    from semtel_dagster.core.classify.answering import Answered
    from semtel_dagster.core.classify.plan import WALL_SEQUENTIAL
    from semtel_dagster.core.ingest.landing import read_file
    from semtel_dagster.core.lake import delta, tables
    from semtel_dagster.core.llm.budget import budget_summary
    from semtel_dagster.core.prepare.scrub import KINDS, redaction_totals
    from semtel_dagster.engines.pipeline import Pipeline
    from semtel_dagster.resources import EndpointPoolResource, EngineResource, PipelineSettings

    started = time.monotonic()
    settings = PipelineSettings(
        prompts_dir=str(prompts_dir) if prompts_dir else None, classifiers=classifiers, scrub_pii=scrub_pii
    )
    chosen = settings.load_classifiers()
    ingested = read_file(input_path, max_record_bytes=settings.max_record_bytes)
    conversations = ingested.conversations
    weeks = sorted(set(conversations.get_column("week_start").to_list()))
    endpoints_option: dict[str, Any] = {"endpoints_file": str(endpoints_file)} if endpoints_file else {}
    pool = EndpointPoolResource(
        **endpoints_option,  # else SEMTEL_ENDPOINTS
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
        budget_tokens=budget_tokens,
        budget_cost=budget_cost,
        give_up_s=give_up_s,
        stop_after_failing_s=stop_after_failing_s,
        mode=mode,
    )
    with pool.opened():
        log(
            f"semtel classify: {conversations.height} conversations in {len(weeks)} week(s), {engine} engine, "
            f"endpoints {[e.name for e in pool.endpoints]}"
        )
        spark_option: dict[str, Any] = {"spark_master": spark_master} if spark_master else {}
        stages = EngineResource(kind=engine, **spark_option).for_lake(str(output))
        pipeline = Pipeline(stages, settings, calls=pool.calls(), log=log)
        reports, rows, redacted = [], dict.fromkeys(OUTPUTS[1:], 0), dict.fromkeys(KINDS, 0)
        for week in weeks:
            week_rows = conversations.filter(conversations.get_column("week_start") == week)
            delta.overwrite_weeks(delta.table_uri(str(output), "conversations"), week_rows, tables.CONVERSATIONS, [week])
            run = pipeline.run_week(week)
            reports.append(run.classified.report)
            for kind, n in redaction_totals(run.truncated.frame).items():
                redacted[kind] += n
            for written in (run.classifications, run.rejects):
                rows[written.table] += written.rows
    report = Answered.merge(reports, WALL_SEQUENTIAL)
    totals = report.stats
    summary = {
        "rows": conversations.height,
        "rejected_records": ingested.rejects.height,
        "weeks": [week.isoformat() for week in weeks],
        "classifiers": sorted(chosen),
        "engine": engine,
        "redactions": redacted if scrub_pii else None,  # PII values replaced before anything was sent, per type
        "requests": report.needed,
        "requests_resumed": report.resumed,
        "requests_sent": report.sent,
        "http_requests": totals["requests"],
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "cached_tokens": totals["cached_tokens"],
        "retries": totals["retries"],
        "rate_limited": totals["rate_limited"],
        "timeouts": totals["timeouts"],
        "queue_timeouts": totals["queue_timeouts"],
        "work_timeouts": totals["work_timeouts"],
        "stall_timeouts": totals["stall_timeouts"],
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


EXIT_FAILED_REQUESTS = 1  # finished, but some requests ended with an error row (their pairs are rejects)
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_STOPPED = 4  # dispatch stopped early: a misconfigured endpoint, or every endpoint kept failing
EXIT_BUSY = 5  # another semtel classify holds the output folder


def _run(args: argparse.Namespace) -> int:
    from semtel_dagster.core.lake.locks import LockHeld, exclusive
    from semtel_dagster.core.llm.dispatch import DispatchFailed
    from semtel_dagster.core.llm.endpoints import EndpointsFileError

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        with exclusive(Path(args.output) / OUTPUT_LOCK, purpose=f"semtel classify into {args.output}"):
            summary = _classified(args, log)
    except LockHeld as exc:
        log(f"semtel classify: another run is writing this output folder: {exc}")
        return EXIT_BUSY
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


def _classified(args: argparse.Namespace, log) -> dict:
    return classify_file(
        Path(args.input),
        Path(args.output),
        Path(args.endpoints) if args.endpoints else None,
        classifiers=args.classifiers.split(",") if args.classifiers else None,
        prompts_dir=Path(args.prompts) if args.prompts else None,
        budget_tokens=args.budget_tokens,
        budget_cost=args.budget_cost,
        flush_rows=args.flush_rows,
        flush_seconds=args.flush_seconds,
        give_up_s=args.give_up_s,
        stop_after_failing_s=args.stop_after_failing_s,
        engine=args.engine,
        spark_master=args.spark_master,
        scrub_pii=args.scrub_pii,
        mode=args.mode,
        log=log,
    )


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
    cmd.add_argument(
        "--give-up-s", type=float, default=25.0, help="a request still failing this long (429s aside) ends as an error row"
    )
    cmd.add_argument("--stop-after-failing-s", type=float, default=30.0, help="every endpoint failing this long: stop, exit 4")
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
    cmd.add_argument(
        "--no-scrub-pii",
        dest="scrub_pii",
        action="store_false",
        help="send transcripts as they are: emails, phones, cards, IPs, IBANs and secrets are not replaced",
    )
    cmd.add_argument(
        "--mode",
        choices=["per_endpoint", "online", "batch"],
        default="per_endpoint",
        help="batch: every endpoint answers through its provider's batch API (half price, within 24 h); "
        "default: each endpoint's mode in the endpoints file",
    )
    cmd.set_defaults(func=_run)
