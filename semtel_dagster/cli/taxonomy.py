"""``semtel taxonomy``: discover a label set from a conversations file into a draft classifier and a report.

Reads what ``semtel classify --input`` reads; every LLM call goes through the endpoint pool. Answers
are kept in a work folder (default: ``<out>.work/`` beside the draft), so rerunning the same command
resumes; with ``--budget-tokens`` / ``--budget-cost`` the whole discovery stops cleanly at the cap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_STOPPED = 4


def taxonomy_file(args: argparse.Namespace, log) -> dict:
    """Run the discovery of ``args``; returns a summary (draft, report, labels, calls, tokens)."""
    from semtel_dagster.core.ingest.landing import read_file
    from semtel_dagster.core.lake import delta
    from semtel_dagster.core.taxonomy.asking import Asker
    from semtel_dagster.core.taxonomy.discover import DiscoveryConfig, discover
    from semtel_dagster.core.taxonomy.report import write_report
    from semtel_dagster.resources import EmbedderResource, EndpointPoolResource

    config = DiscoveryConfig(
        n=args.n,
        labels=args.labels,
        method=args.method,
        holdout=args.holdout,
        batch_size=args.batch_size,
        max_rounds=args.max_rounds,
        seed=args.seed,
        name=args.name or Path(args.out).stem,
        scrub_pii=args.scrub_pii,
    )
    out = Path(args.out)
    work = Path(args.work) if args.work else out.with_name(out.name + ".work")
    report_path = Path(args.report) if args.report else out.with_suffix(".md")
    conversations = read_file(Path(args.input)).conversations
    endpoints_option: dict[str, Any] = {"endpoints_file": args.endpoints} if args.endpoints else {}
    pool = EndpointPoolResource(**endpoints_option, budget_tokens=args.budget_tokens, budget_cost=args.budget_cost)
    with pool.opened():
        log(
            f"semtel taxonomy: {conversations.height} conversations, method {config.method}, endpoints {[e.name for e in pool.endpoints]}"
        )
        asker = Asker(pool.calls(), store=delta.table_uri(str(work), "taxonomy_responses"), log=log)
        embed = EmbedderResource().factory() if config.method == "clusters" else None
        result = discover(
            conversations,
            config,
            asker,
            out,
            input_name=Path(args.input).name,
            embed=(lambda: embed().embed) if embed else None,
            log=log,
        )
    write_report(report_path, result)
    totals = result.totals
    return {
        "draft": str(result.draft) if result.draft else None,
        "report": str(report_path),
        "labels": [label.name for label in result.evolution.labels],
        "rounds": len(result.evolution.rounds),
        "stopped": result.evolution.stopped,
        "summaries": result.summaries,
        "other_share": result.holdout.get("other_share"),
        "calls": totals["ok"],
        "http_requests": totals["requests"],
        "prompt_tokens": totals["prompt_tokens"],
        "completion_tokens": totals["completion_tokens"],
        "resumed": result.resumed,
        "budget_reached": result.budget_reached,
        "endpoints": totals["endpoints"],
    }


def _run(args: argparse.Namespace) -> int:
    from semtel_dagster.core.classify.prompts import PromptError
    from semtel_dagster.core.llm.dispatch import DispatchFailed
    from semtel_dagster.core.llm.endpoints import EndpointsFileError

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        summary = taxonomy_file(args, log)
    except (EndpointsFileError, PromptError, FileNotFoundError, ValueError) as exc:
        log(f"semtel taxonomy: {exc}")
        return EXIT_USAGE
    except DispatchFailed as exc:
        log(f"semtel taxonomy: dispatch stopped: {exc}")
        return EXIT_STOPPED
    print(json.dumps(summary, indent=2, default=str))
    if summary["budget_reached"]:
        log("semtel taxonomy: budget reached; every answer is saved, run the same command again (with more budget) to go on")
        return EXIT_BUDGET
    return 0


def register(commands) -> None:
    cmd = commands.add_parser("taxonomy", help="discover a label set from conversations: a draft classifier and a report")
    cmd.add_argument("--input", required=True, help="conversations JSONL (or .jsonl.gz), as semtel classify reads")
    cmd.add_argument("--out", required=True, help="the draft classifier to write (.prompty); the report goes beside it (.md)")
    cmd.add_argument("--n", type=int, default=300, help="conversations to summarize, stratified over weeks and lengths")
    cmd.add_argument("--labels", type=int, default=12, help="labels to discover (other is added on top)")
    cmd.add_argument(
        "--method",
        choices=["llm", "clusters"],
        default="llm",
        help="llm: generate/update/review rounds; clusters: k-means on embeddings",
    )
    cmd.add_argument(
        "--holdout", type=int, default=200, help="other conversations labelled with the draft for the report (0: none)"
    )
    cmd.add_argument("--batch-size", type=int, default=25, help="summaries per generate / update round")
    cmd.add_argument("--max-rounds", type=int, default=12, help="at most this many generate / update rounds")
    cmd.add_argument("--seed", type=int, default=7)
    cmd.add_argument("--name", help="the draft classifier's name (default: the --out file's stem)")
    cmd.add_argument("--report", help="where the report goes (default: --out with .md)")
    cmd.add_argument("--work", help="folder of answers kept for resume (default: <out>.work beside the draft)")
    cmd.add_argument("--endpoints", help="endpoints YAML, or 'sim' for the embedded simulator (default: SEMTEL_ENDPOINTS)")
    cmd.add_argument("--budget-tokens", type=int, help="stop before this many prompt + completion tokens (the whole discovery)")
    cmd.add_argument("--budget-cost", type=float, help="stop before this cost (prices per model in the endpoints file)")
    cmd.add_argument("--no-scrub-pii", dest="scrub_pii", action="store_false", help="send transcripts without replacing PII")
    cmd.set_defaults(func=_run)
