"""Taxonomy discovery measured against human labels: CLINC150 (domains, intents) and banking77.

Each run is ``core.taxonomy.discover.discover`` (what ``semtel taxonomy`` runs): a stratified sample
is summarized, labels are grown (``llm``) or clustered (``clusters``), the draft is written and a
held-out sample, disjoint from the discovery sample, is labelled with the draft through the pipeline.
Scores are the adjusted Rand index and NMI of those held-out assignments against the human labels (and,
for ``clusters``, of the raw k-means assignment of the summarized sample). Calls and tokens are the
dispatcher's own totals. A qualitative run on hh-rlhf lists the labels with a few conversation ids.

    python -m benchmarks.taxonomy.run                      # simulator stand-in
    python -m benchmarks.taxonomy.run --real               # + SmolLM2-135M via llama-cpp-python (small runs)

Data is read from ``../shared/data`` (``SEMTEL_SHARED_DATA``), never copied.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import polars as pl
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.evaluation.experiment import sample_week
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.lake import delta
from semtel_dagster.core.llm.endpoints import load_endpoints
from semtel_dagster.core.taxonomy.asking import Asker
from semtel_dagster.core.taxonomy.discover import DiscoveryConfig, discover
from semtel_dagster.core.taxonomy.labels import slug
from semtel_dagster.resources import EmbedderResource
from semtel_dagster.resources.endpoint_pool import EMBEDDED_SIMULATOR, simulator_endpoints
from semtel_dagster.sim import SimulatorThread

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SEMTEL_SHARED_DATA", HERE.parents[2] / "shared" / "data"))
WEEK = dt.date(2026, 11, 16)
WORK = Path(os.environ.get("SEMTEL_BENCH_WORK", ".semtel/benchmarks/taxonomy"))  # answers kept: a rerun resumes
_MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


def clinc() -> pl.DataFrame:
    """CLINC150 in-scope test utterances: id, text, domain, intent."""
    root = DATA / "clinc150"
    domains = json.loads((root / "domains.json").read_text())
    domain_of = {intent: domain for domain, intents in domains.items() for intent in intents}
    test = json.loads((root / "data_full.json").read_text())["test"]
    return pl.DataFrame(
        [(f"clinc-{i}", text, domain_of[intent], intent) for i, (text, intent) in enumerate(test)],
        schema=["conversation_id", "text", "domain", "intent"],
        orient="row",
    )


def banking() -> pl.DataFrame:
    with (DATA / "banking77" / "test.csv").open(newline="") as handle:
        rows = [(f"bank-{i}", r["text"], r["category"]) for i, r in enumerate(csv.DictReader(handle))]
    return pl.DataFrame(rows, schema=["conversation_id", "text", "intent"], orient="row")


def as_conversations(items: pl.DataFrame) -> pl.DataFrame:
    """Each utterance as a one-turn conversation of one week (lengths still vary, so strata do)."""
    messages = items.select(
        "conversation_id",
        pl.struct(pl.lit("user").alias("role"), pl.col("text").alias("content"))
        .map_elements(lambda m: [m], return_dtype=_MESSAGES)
        .alias("messages"),
    )
    return sample_week(messages)


def scores(truth: pl.DataFrame, assigned: dict[str, str], columns: list[str]) -> dict:
    """ARI and NMI of ``assigned`` (id -> label) against each truth column, on the ids both have."""
    frame = truth.join(pl.DataFrame({"conversation_id": list(assigned), "found": list(assigned.values())}), on="conversation_id")
    found = frame.get_column("found").to_list()
    out: dict = {"items": frame.height, "clusters_found": len(set(found))}
    for column in columns:
        human = frame.get_column(column).to_list()
        out[column] = {
            "ari": round(adjusted_rand_score(human, found), 4),
            "nmi": round(normalized_mutual_info_score(human, found), 4),
            "human_classes": len(set(human)),
        }
    return out


def run_one(
    name: str,
    conversations: pl.DataFrame,
    truth: pl.DataFrame | None,
    columns: list[str],
    config: DiscoveryConfig,
    calls: Calls,
    answered_by: str,
) -> dict:
    embedder = EmbedderResource().factory() if config.method == "clusters" else None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="semtel-taxonomy-bench-") as folder:
        store = delta.table_uri(str(WORK), f"{name}-{config.method}-{config.n}-{slug(answered_by)}")
        asker = Asker(calls, store=store, log=lambda line: print(line, flush=True))
        result = discover(
            conversations, config, asker, Path(folder) / f"{name}.prompty", input_name=name,
            embed=(lambda: embedder().embed) if embedder else None,
        )  # fmt: skip
    held = result.holdout
    labels = held.get("labels")
    assigned = dict(labels.iter_rows()) if labels is not None else {}
    totals = result.totals
    row = {
        "dataset": name,
        "method": config.method,
        "endpoint": answered_by,
        "config": {
            "n": config.n,
            "labels": config.labels,
            "holdout": config.holdout,
            "batch_size": config.batch_size,
            "max_rounds": config.max_rounds,
        },
        "summaries": result.summaries,
        "rounds": len(result.evolution.rounds),
        "stopped": result.evolution.stopped,
        "labels": [label.name for label in result.evolution.labels],
        "other_share": held.get("other_share"),
        "rejects": held.get("rejects"),
        "discovery_calls": totals["ok"],
        "discovery_http_requests": totals["requests"],
        "discovery_prompt_tokens": totals["prompt_tokens"],
        "discovery_completion_tokens": totals["completion_tokens"],
        "holdout_calls": held.get("calls", 0),
        "holdout_prompt_tokens": held.get("prompt_tokens", 0),
        "holdout_completion_tokens": held.get("completion_tokens", 0),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    if truth is not None:
        row["heldout_scores"] = scores(truth, assigned, columns)
        if result.assignments:
            row["kmeans_sample_scores"] = scores(truth, result.assignments, columns)
    else:
        ids: dict[str, list[str]] = {}
        for cid, label in sorted(assigned.items()):
            ids.setdefault(label, []).append(cid)
        row["example_ids"] = {label: found[:3] for label, found in ids.items()}
        row["shares"] = {label: round(share, 4) for label, share in held.get("shares", {}).items()}
    print(json.dumps({k: v for k, v in row.items() if k != "example_ids"}, default=str), flush=True)
    return row


def suite(calls: Calls, answered_by: str, small: bool, record) -> None:
    """Every dataset x method, each run given to ``record`` as it ends; ``small`` for a serial real model."""
    size = (
        {"n": 30, "holdout": 40, "batch_size": 10, "max_rounds": 3}
        if small
        else {"n": 300, "holdout": 600, "batch_size": 25, "max_rounds": 12}
    )
    items = {"clinc150": (clinc(), ["domain", "intent"], 10), "banking77": (banking(), ["intent"], 20)}
    if small:
        items = {"clinc150": items["clinc150"]}
    for name, (truth, columns, k) in items.items():
        for method in ("llm", "clusters"):
            config = DiscoveryConfig(labels=k, method=method, name=name, seed=7, **size)  # type: ignore[arg-type]
            record(run_one(name, as_conversations(truth), truth, columns, config, calls, answered_by))
    if not small:
        hh = read_landing(DATA / "hh-rlhf", WEEK, input_format="hh_rlhf", default_week=WEEK).conversations
        for method in ("llm", "clusters"):
            config = DiscoveryConfig(n=300, labels=12, holdout=300, method=method, name="hh_rlhf", seed=7)  # type: ignore[arg-type]
            record(run_one("hh-rlhf", hh, None, [], config, calls, answered_by))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--real", action="store_true", help="also run the small suite against SmolLM2-135M (llama-cpp-python)")
    parser.add_argument("--real-only", action="store_true")
    args = parser.parse_args()
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_at_start": os.getloadavg(),
        "command": "python -m benchmarks.taxonomy.run"
        + (" --real" if args.real else "")
        + (" --real-only" if args.real_only else ""),
        "runs": [],
    }
    out = HERE / ("results_real.json" if args.real_only else "results.json")

    def record(row: dict) -> None:
        """Each run is saved as it ends: a long real-model suite that is stopped keeps what it measured."""
        results["runs"].append(row)
        results["load_average_now"] = os.getloadavg()
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")

    if not args.real_only:
        with SimulatorThread(EMBEDDED_SIMULATOR) as simulator:
            suite(Calls(simulator_endpoints(simulator)), "simulator (stand-in, keyword rules)", small=False, record=record)
    if args.real or args.real_only:
        from benchmarks.real_model.llama_server import llama_server

        with tempfile.TemporaryDirectory() as folder, llama_server(Path(folder) / "llama.log") as server:
            endpoints = load_endpoints(
                str(server.endpoints_file(Path(folder) / "endpoints.yaml", stream=False, timeout_s=600, timeout_base_s=300))
            ).endpoints
            suite(Calls(endpoints), "SmolLM2-135M-Instruct Q4_1 (llama-cpp-python, CPU)", small=True, record=record)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
