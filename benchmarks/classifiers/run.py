"""Batching strategies on the same conversations, against the simulator with format anomalies on.

Reproduce (from the repo root):  .venv/bin/python benchmarks/classifiers/run.py [--labeler embedding|keyword]
Real conversations (``../shared/data``, or ``SEMTEL_SHARED_DATA``) first, then the seeded generator's; the
simulator's embedding labeler by default, so the generator's vocabulary does not decide the labels.
Writes benchmarks/classifiers/results.json and RESULTS.md (machine, date and load average included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from contextlib import ExitStack
from pathlib import Path

import polars as pl

from benchmarks.embedding_cache import CachedEmbedder
from benchmarks.real_model.data import DATA
from semtel_dagster.core.classify.parse import ParseFailure, parse_batched
from semtel_dagster.core.classify.plan import STRATEGIES
from semtel_dagster.core.evaluation.experiment import LABELERS, RunConfig, compare_runs, real_set, run_configuration, sample_set
from semtel_dagster.core.evaluation.golden import GoldenSet
from semtel_dagster.core.llm.requests import STATUS_OK
from semtel_dagster.resources.endpoint_pool import SimulatedPools

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


def measure(sample: GoldenSet, endpoints, batch_size: int) -> dict:
    """Every strategy on ``sample``, each compared with the one-by-one baseline."""
    configs = [RunConfig(name=s, strategy=s, batch_size=batch_size) for s in STRATEGIES]
    runs = {c.name: run_configuration(c, sample.conversations, endpoints) for c in configs}
    baseline = runs["single"]
    pairs = sample.conversations.height * len(baseline.classifiers)
    results = {}
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
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="conversations per data set")
    parser.add_argument("--anomaly-rate", type=float, default=0.15)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--labeler", choices=LABELERS, default="embedding", help="the simulator's labeler")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"real conversations not found at {DATA} (set SEMTEL_SHARED_DATA)")
    classifiers = sorted(RunConfig(name="all").load())
    samples = {
        "real": (real_set(DATA, args.n, args.seed), "real conversations, equal shares of hh-rlhf, oasst and arena-hard"),
        "generated": (sample_set(args.n, args.seed, classifiers), "the seeded generator, stratified by topic"),
    }
    load = os.getloadavg()
    started = time.monotonic()
    with ExitStack() as stack:
        embedder = CachedEmbedder() if args.labeler == "embedding" else None
        pools = SimulatedPools(stack, embedder, anomaly_rate=args.anomaly_rate, latency_ms=60.0)
        # The embedding labeler embeds on this (shared) CPU: waiting for it is not what this measures.
        patient = {"timeout_base_s": 60.0, "timeout_s": 180.0}
        endpoints = [e.model_copy(update=patient) for e in pools.endpoints(args.labeler)]
        results = {key: measure(sample, endpoints, args.batch_size) for key, (sample, _) in samples.items()}
    meta = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})",
        "load_average": [round(x, 2) for x in load],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.monotonic() - started, 1),
        "datasets": {key: f"{sample.conversations.height} {description}" for key, (sample, description) in samples.items()},
        "classifiers": classifiers,
        "labeler": args.labeler,
        "anomaly_rate": args.anomaly_rate,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    (HERE / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    write_markdown(meta, results)
    print((HERE / "RESULTS.md").read_text())


def write_markdown(meta: dict, results: dict) -> None:
    labeler = (
        "the embedding labeler (nearest label definition by sentence embedding, noise calibrated against a real model: "
        "`semtel_dagster/sim/calibration.json`)"
        if meta["labeler"] == "embedding"
        else "the keyword labeler (words of the label definitions, which the generator also writes with)"
    )
    lines = [
        "# Classifier batching strategies",
        "",
        f"Measured {meta['date']} on {meta['machine']}, load average {meta['load_average']} at the start and "
        f"{meta['load_average_end']} at the end ({meta['wall_seconds']:.0f} s, shared machine: wall times are an upper "
        "bound). Reproduce from the repo root with `.venv/bin/python benchmarks/classifiers/run.py`.",
        "",
        f"The embedded simulator (two endpoints, 60 ms latency) answers with {labeler}, and gives "
        f"**{meta['anomaly_rate']:.0%} of answers one format anomaly** (prose, fences, trailing commas, single quotes, "
        "truncation, case, punctuation, typos, synonyms, out-of-set labels, numbers as words, missing and extra ids). "
        f"{len(meta['classifiers'])} classifiers ({', '.join(meta['classifiers'])}); batch size {meta['batch_size']} for "
        f"multi_conversation; structured outputs on; seed {meta['seed']}.",
    ]
    for key, title in (("real", "Real conversations"), ("generated", "Generated conversations")):
        lines += [
            "",
            f"## {title}: {meta['datasets'][key]}",
            "",
            "| strategy | calls / conv | of which follow-ups | prompt tok / conv | completion tok / conv | wall s | answers: valid label | precise reject | silent drops | recovery | final rejects | mean agreement with single |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in results[key].items():
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
        for name, r in results[key].items():
            lines.append(
                f"| {name} | "
                + " | ".join(
                    f"{r['agreement_with_single'][c]:.3f} / {r['kappa_with_single'][c]:.3f}" for c in meta["classifiers"]
                )
                + " |"
            )
    lines += [
        "",
        "Reading it: *answers* counts every (answer, conversation x classifier) pair the parser saw; a pair yields a label "
        "from the set or a reject with a precise reason, never nothing (recovery = both). *Final rejects* are the pairs "
        "left without a label after the follow-up round (batched strategies re-ask missed pairs one by one). "
        "Disagreement with the single baseline comes from anomalies that change a label (typos the fuzzy matcher maps, "
        "out-of-set answers re-asked) and from what each strategy sends: single requests cut the transcript to a "
        "prompt file's own budget (topic reads the first 1,024 tokens, satisfaction the last 1,024) while batches share "
        "the stage's transcript, which matters on long real conversations. The simulator labels each conversation by "
        "itself, so batching several conversations does not mix them up as a real model sometimes does.",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
