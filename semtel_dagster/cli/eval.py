"""``semtel eval``: two classifier configurations on the same fixed, stratified sample, plus golden sets.

A configuration is ``key=value`` pairs: ``name``, ``strategy`` (single | multi_classifier |
multi_conversation), ``batch_size``, ``prompts`` (a folder of .prompty files: prompt version A vs B),
``endpoints`` (an endpoints YAML: model X vs Y; default the embedded simulator).
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

from semtel_dagster.core.evaluation.experiment import GOLDEN_DESCRIPTIONS, SAMPLE_WEEK, load_golden, parse_config, sample_set
from semtel_dagster.core.llm.endpoints import Endpoint, load_endpoints


def run_eval(args: argparse.Namespace) -> Path:
    from semtel_dagster.core.evaluation.experiment import evaluate
    from semtel_dagster.core.evaluation.report import write_report
    from semtel_dagster.resources.endpoint_pool import EMBEDDED_SIMULATOR, simulator_endpoints
    from semtel_dagster.sim import SimulatorThread

    config_a, file_a = parse_config(args.a, "A")
    config_b, file_b = parse_config(args.b, "B")
    with ExitStack() as stack:
        simulated: list[Endpoint] = []  # used only where a file is missing, and then set
        if not (file_a and file_b):
            sim_config = EMBEDDED_SIMULATOR.model_copy(
                update={
                    "endpoints": [e.model_copy(update={"anomaly_rate": args.anomaly_rate}) for e in EMBEDDED_SIMULATOR.endpoints]
                }
            )
            simulated = simulator_endpoints(stack.enter_context(SimulatorThread(sim_config)), sim_config)
        endpoints_a = load_endpoints(file_a).endpoints if file_a else simulated
        endpoints_b = load_endpoints(file_b).endpoints if file_b else simulated
        classifiers = sorted(config_a.load())
        sample = sample_set(args.n, args.seed, classifiers)
        golden = load_golden(args.golden, Path(args.data), args.golden_n, args.seed, print)
        result = evaluate(
            config_a,
            config_b,
            endpoints_a,
            endpoints_b,
            sample,
            f"seeded generator week {SAMPLE_WEEK}, stratified by true topic",
            args.seed,
            golden,
            GOLDEN_DESCRIPTIONS,
        )
    return write_report(Path(args.out), result)


def _run(args: argparse.Namespace) -> int:
    try:
        report = run_eval(args)
    except ValueError as exc:  # a bad configuration spec or golden set name
        print(f"semtel eval: {exc}")
        return 2
    print(report.read_text(encoding="utf-8"))
    print(f"report: {report}")
    return 0


def register(commands) -> None:
    cmd = commands.add_parser("eval", help="compare two classifier configurations on one sample, and score golden sets")
    cmd.add_argument("--a", default="name=single,strategy=single", help="configuration A (key=value,...)")
    cmd.add_argument("--b", default="name=multi_conversation,strategy=multi_conversation", help="configuration B")
    cmd.add_argument("--n", type=int, default=120, help="sample conversations (stratified by topic)")
    cmd.add_argument("--seed", type=int, default=7)
    cmd.add_argument("--golden", default="mt_bench,clinc150", help="golden sets, comma-separated ('' for none)")
    cmd.add_argument("--golden-n", type=int, default=200, help="items per golden set (stratified)")
    cmd.add_argument("--data", default="../shared/data", help="folder with the human-labeled data sets")
    cmd.add_argument("--anomaly-rate", type=float, default=0.0, help="embedded simulator: share of misbehaving answers")
    cmd.add_argument("--out", default=".semtel/eval", help="report folder (report.md, result.json, PNGs)")
    cmd.set_defaults(func=_run)
