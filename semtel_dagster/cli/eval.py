"""``semtel eval``: classifier configurations on the same fixed sample, compared with the first, plus golden sets.

A configuration is ``key=value`` pairs: ``name``, ``strategy`` (single | multi_classifier |
multi_conversation), ``batch_size``, ``prompts`` (a folder of .prompty files: prompt version A vs B),
``classifiers`` (``a+b``: a subset), ``layout`` (classifier_first | conversation_first: the prompt
layout), and where its requests go: ``endpoints`` (an endpoints YAML: model X
vs Y) or the embedded simulator, by default with the keyword labeler, or with ``labeler=embedding``
(``noise_scale=0``: always the nearest definition). ``--b`` may be given several times: each is
compared with ``--a``.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

from semtel_dagster.core.evaluation.experiment import GOLDEN_DESCRIPTIONS, SAMPLES, load_golden, parse_configs, sample_for

DEFAULT_B = "name=multi_conversation,strategy=multi_conversation"


def run_eval(args: argparse.Namespace) -> Path:
    from semtel_dagster.core.evaluation.experiment import evaluate
    from semtel_dagster.core.evaluation.report import write_report
    from semtel_dagster.resources.endpoint_pool import SimulatedPools

    parsed = parse_configs(args.a, args.b or [DEFAULT_B])
    with ExitStack() as stack:
        pools = SimulatedPools(stack, anomaly_rate=args.anomaly_rate)
        configured = [(config, pools.for_choice(choice)) for config, choice in parsed]
        classifiers = sorted(configured[0][0].load())
        sample, description = sample_for(args.sample, args.n, args.seed, classifiers, Path(args.data), args.max_chars)
        golden = load_golden(args.golden, Path(args.data), args.golden_n, args.seed, print)
        result = evaluate(configured[0], configured[1:], sample, description, args.seed, golden, GOLDEN_DESCRIPTIONS)
    return write_report(Path(args.out), result)


def _run(args: argparse.Namespace) -> int:
    try:
        report = run_eval(args)
    except ValueError as exc:  # a bad configuration spec, sample or golden set name
        print(f"semtel eval: {exc}")
        return 2
    print(report.read_text(encoding="utf-8"))
    print(f"report: {report}")
    return 0


def register(commands) -> None:
    cmd = commands.add_parser("eval", help="compare classifier configurations on one sample, and score golden sets")
    cmd.add_argument("--a", default="name=single,strategy=single", help="configuration A, the reference (key=value,...)")
    cmd.add_argument("--b", action="append", help=f"a configuration compared with A; repeatable (default: {DEFAULT_B})")
    cmd.add_argument("--sample", choices=SAMPLES, default="generated", help="generated (with its truth) or real conversations")
    cmd.add_argument(
        "--n", type=int, default=120, help="sample conversations (stratified by topic; real: equal shares per source)"
    )
    cmd.add_argument("--max-chars", type=int, help="real sample: only conversations this short (a slow model stays quick)")
    cmd.add_argument("--seed", type=int, default=7)
    cmd.add_argument("--golden", default="mt_bench,clinc150", help="golden sets, comma-separated ('' for none)")
    cmd.add_argument("--golden-n", type=int, default=200, help="items per golden set (stratified)")
    cmd.add_argument("--data", default="../shared/data", help="folder with the real and human-labeled data sets")
    cmd.add_argument("--anomaly-rate", type=float, default=0.0, help="embedded simulator: share of misbehaving answers")
    cmd.add_argument("--out", default=".semtel/eval", help="report folder (report.md, result.json, PNGs)")
    cmd.set_defaults(func=_run)
