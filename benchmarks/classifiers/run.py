"""Batching strategies on the same sample, against the simulator with format anomalies on.

Reproduce (from the repo root):  .venv/bin/python benchmarks/classifiers/run.py
Writes benchmarks/classifiers/results.json and RESULTS.md (machine and date included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

import polars as pl

from semtel_dagster.core.classify.parse import ParseFailure, parse_batched
from semtel_dagster.core.classify.plan import STRATEGIES
from semtel_dagster.core.evaluation.experiment import RunConfig, compare_runs, run_configuration, sample_set
from semtel_dagster.core.llm.requests import STATUS_OK
from semtel_dagster.resources.endpoint_pool import EMBEDDED_SIMULATOR, simulator_endpoints
from semtel_dagster.sim import SimulatorThread

HERE = Path(__file__).resolve().parent


def answer_recovery(run) -> dict:
    """Per (answer, pair): a valid label, a precise reject reason, or silently dropped."""
    labels = rejects = dropped = 0
    for row in run.responses.filter(pl.col("status") == STATUS_OK).iter_rows(named=True):
        pairs = {(c, n) for c in row["conversation_ids"] for n in row["classifiers"]}
        outcome = parse_batched(
            row["raw_text"], row["conversation_ids"], row["classifiers"], run.classifiers, row["finish_reason"]
        )
        dropped += len(pairs - set(outcome))
        for result in outcome.values():
            if isinstance(result, ParseFailure):
                rejects += bool(str(result).strip())
                dropped += not str(result).strip()
            else:
                labels += 1
    total = labels + rejects + dropped
    return {
        "answer_pairs": total,
        "valid_label": labels,
        "precise_reject": rejects,
        "silent_drop": dropped,
        "recovery_rate": (labels + rejects) / total if total else 1.0,
        "label_rate": labels / total if total else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--anomaly-rate", type=float, default=0.15)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sim_config = EMBEDDED_SIMULATOR.model_copy(
        update={
            "endpoints": [
                e.model_copy(update={"anomaly_rate": args.anomaly_rate, "latency_ms": 60.0}) for e in EMBEDDED_SIMULATOR.endpoints
            ]
        }
    )
    results = {}
    with SimulatorThread(sim_config) as simulator:
        endpoints = simulator_endpoints(simulator, sim_config)
        configs = [RunConfig(name=s, strategy=s, batch_size=args.batch_size) for s in STRATEGIES]
        sample = sample_set(args.n, args.seed, sorted(configs[0].load()))
        runs = {c.name: run_configuration(c, sample.conversations, endpoints) for c in configs}
    baseline = runs["single"]
    pairs = sample.conversations.height * len(baseline.classifiers)
    for name, run in runs.items():
        agreement = compare_runs(baseline, run)
        results[name] = {
            **{k: v for k, v in run.costs.items()},
            "followup_calls": run.responses.filter(pl.col("strategy") == "followup").height,
            "labeled_pairs": run.classifications.height,
            "rejected_pairs": run.rejects.height,
            "conservation": run.classifications.height + run.rejects.height == pairs,
            **answer_recovery(run),
            "agreement_with_single": {k: round(v["raw_agreement"], 4) for k, v in agreement.items()},
            "kappa_with_single": {k: round(v["cohen_kappa"], 4) for k, v in agreement.items()},
        }
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})",
        "conversations": sample.conversations.height,
        "classifiers": sorted(baseline.classifiers),
        "anomaly_rate": args.anomaly_rate,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    write_markdown(meta, results)
    print((HERE / "RESULTS.md").read_text())


def write_markdown(meta: dict, results: dict) -> None:
    lines = [
        "# Classifier batching strategies",
        "",
        f"Measured {meta['date']} on {meta['machine']} (shared, noisy machine). Reproduce from the repo root with",
        "`.venv/bin/python benchmarks/classifiers/run.py`.",
        "",
        f"Sample: {meta['conversations']} conversations from the seeded generator (stratified by topic, seed {meta['seed']}), "
        f"{len(meta['classifiers'])} classifiers ({', '.join(meta['classifiers'])}); the embedded simulator (two endpoints, "
        f"60 ms latency) with **{meta['anomaly_rate']:.0%} of answers given one format anomaly** (prose, fences, trailing commas, "
        "single quotes, truncation, case, punctuation, typos, synonyms, out-of-set labels, numbers as words, missing and extra ids). "
        f"Batch size {meta['batch_size']} for multi_conversation. Structured outputs on.",
        "",
        "| strategy | calls / conv | of which follow-ups | prompt tok / conv | completion tok / conv | wall s | answers: valid label | precise reject | silent drops | recovery | final rejects | mean agreement with single |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        mean_agreement = sum(r["agreement_with_single"].values()) / len(r["agreement_with_single"])
        lines.append(
            f"| {name} | {r['calls_per_conversation']:.2f} | {r['followup_calls']} | {r['prompt_tokens_per_conversation']:.0f} | "
            f"{r['completion_tokens_per_conversation']:.1f} | {r['wall_seconds']:.1f} | {r['label_rate']:.2%} | "
            f"{r['precise_reject'] / r['answer_pairs']:.2%} | {r['silent_drop']} | {r['recovery_rate']:.2%} | "
            f"{r['rejected_pairs']} ({r['reject_share']:.2%}) | {mean_agreement:.3f} |"
        )
    lines += [
        "",
        "Agreement with the one-by-one baseline per classifier (raw agreement / Cohen's kappa):",
        "",
        "| strategy | " + " | ".join(meta["classifiers"]) + " |",
        "|---" * (len(meta["classifiers"]) + 1) + "|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{r['agreement_with_single'][c]:.3f} / {r['kappa_with_single'][c]:.3f}" for c in meta["classifiers"])
            + " |"
        )
    lines += [
        "",
        "Reading it: *answers* counts every (answer, conversation x classifier) pair the parser saw; a pair yields a label "
        "from the set or a reject with a precise reason, never nothing (recovery = both). *Final rejects* are the pairs "
        "left without a label after the follow-up round (batched strategies re-ask missed pairs one by one). "
        "Disagreement with the single baseline comes from anomalies that change a label (typos the fuzzy matcher maps, "
        "out-of-set answers re-asked) and, for multi_classifier, from the combined prompt's different wording; "
        "the simulator labels each conversation by itself, so batching several conversations does not mix them up as a "
        "real model sometimes does.",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
