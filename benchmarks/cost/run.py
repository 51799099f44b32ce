"""Cost per labelled conversation (all six classifiers) by batching strategy and prompt layout, through the product.

    python -m benchmarks.cost.run                 # simulator rows (real conversations, then the generated sample)
    python -m benchmarks.cost.run --real-model 40 # also label agreement of the two layouts on SmolLM2-135M (slow)
    python -m benchmarks.cost.run --render        # RESULTS.md from results.json

Every configuration is ``PipelineSettings`` run through ``engines.pipeline.Pipeline.run_week`` on a fresh
lake (dedupe off: every conversation is classified), against the simulator over HTTP with its prefix cache
(``sim.prefix_cache``, a stand-in for OpenAI's). Cost is ``core.llm.budget.responses_cost`` of the week's
``llm_responses``: the prompt, cached and completion tokens the endpoint reported, at list prices per 1M
tokens; batch rows go through the product's batch mode (the simulator's batch API: files, batches,
statuses) and are priced at batch rates. Agreement is Cohen's kappa per classifier of the stored labels against online ``single``
(``classifier_first``). Writes results.json and RESULTS.md here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import polars as pl

from benchmarks.real_model.data import real_conversations, write_jsonl
from benchmarks.savings.run import DATA, WEEK, Dataset, _kappa, real_dataset, sample_dataset
from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.evaluation.golden import real_conversations as real_pool
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.llm.budget import responses_cost
from semtel_dagster.core.llm.endpoints import BatchOptions, ModelPrice
from semtel_dagster.engines.pipeline import Pipeline
from semtel_dagster.engines.polars_engine import PolarsEngine
from semtel_dagster.resources.endpoint_pool import simulator_endpoints
from semtel_dagster.resources.settings import PipelineSettings
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.config import SimBatchConfig

HERE = Path(__file__).resolve().parent
# List prices per 1M tokens (OpenAI pricing page, standard tier): gpt-4o-mini caches at half the input
# price, gpt-4.1-mini at a quarter; the Batch API halves input and output.
PRICES = {
    "gpt-4o-mini": ModelPrice(prompt_per_1m=0.15, cached_input_per_1m=0.075, completion_per_1m=0.60),
    "gpt-4.1-mini": ModelPrice(prompt_per_1m=0.40, cached_input_per_1m=0.10, completion_per_1m=1.60),
}
HEADLINE_PRICES = "gpt-4.1-mini"
# (name, batching strategy, prompt layout, dispatch mode); the first is the baseline every other is compared with
CONFIGS = [
    ("online single", "single", "classifier_first", "online"),
    ("online multi_classifier", "multi_classifier", "classifier_first", "online"),
    ("online single, conversation_first", "single", "conversation_first", "online"),
    ("batch single", "single", "classifier_first", "batch"),
    ("batch multi_classifier", "multi_classifier", "classifier_first", "batch"),
]
LAYOUT_ROW = CONFIGS[2][0]
COST_GOAL, KAPPA_GOAL, CACHED_GOAL = 0.5, 0.9, 0.4


def run_config(calls: Calls, conversations: pl.DataFrame, strategy: str, layout: str, root: Path) -> dict:
    """One configuration through ``Pipeline.run_week`` on a fresh lake: its llm_responses, labels and wall time."""
    lake = Path(tempfile.mkdtemp(dir=root, prefix="lake-"))
    try:
        engine = PolarsEngine(str(lake))
        engine.write("conversations", conversations.with_columns(week_start=pl.lit(WEEK)), WEEK)
        settings = PipelineSettings(dedupe_method="none", batching_strategy=strategy, prompt_layout=layout)
        started = time.perf_counter()
        run = Pipeline(engine, settings, calls=calls).run_week(WEEK)
        wall = time.perf_counter() - started
    finally:
        shutil.rmtree(lake)
    labels = run.classifications.frame.select("conversation_id", "classifier", "label")
    return {"responses": run.classified.responses.frame, "labels": labels, "wall_s": wall}


def labels_by_classifier(labels: pl.DataFrame, ids: list[str]) -> dict[str, list[str]]:
    """Per classifier, the stored label of every conversation (``-`` where the pipeline rejected it)."""
    out = {}
    for name in sorted(set(labels.get_column("classifier").to_list())):
        got = dict(labels.filter(pl.col("classifier") == name).select("conversation_id", "label").iter_rows())
        out[name] = [got.get(cid, "-") for cid in ids]
    return out


def kappas(baseline: dict[str, list[str]], other: dict[str, list[str]]) -> dict[str, float]:
    return {name: round(_kappa(baseline[name], other.get(name, ["-"] * len(labels))), 4) for name, labels in baseline.items()}


def cost_rows(data: Dataset, calls: Calls, root: Path) -> list[dict]:
    """Every configuration on ``data``: cost per labelled conversation at each price sheet, cached share,
    calls, kappa per classifier against online ``single``, wall time."""
    conversations = data.test
    ids = conversations.get_column("conversation_id").to_list()
    results = {
        name: run_config(replace(calls, mode=mode), conversations, strategy, layout, root)
        for name, strategy, layout, mode in CONFIGS
    }
    baseline = labels_by_classifier(results[CONFIGS[0][0]]["labels"], ids)
    batch_prices = {sheet: price.batch_price() for sheet, price in PRICES.items()}
    rows = []
    for name, *_, mode in CONFIGS:
        responses, sheets = results[name]["responses"], batch_prices if mode == "batch" else PRICES
        prompt = int(responses.get_column("prompt_tokens").sum())
        cached = int(responses.get_column("cached_tokens").fill_null(0).sum())
        costs = {
            sheet: responses_cost(responses.with_columns(model=pl.lit(sheet)), {sheet: price}) for sheet, price in sheets.items()
        }
        rows.append(
            {
                "configuration": name,
                "calls": responses.height,
                "prompt_tokens": prompt,
                "cached_tokens": cached,
                "cached_share": round(cached / prompt, 4) if prompt else 0.0,
                "completion_tokens": int(responses.get_column("completion_tokens").sum()),
                "cost_per_1k_conversations": {sheet: round(cost / len(ids) * 1000, 6) for sheet, cost in costs.items()},
                "kappa": kappas(baseline, labels_by_classifier(results[name]["labels"], ids)),
                "wall_s": round(results[name]["wall_s"], 2),
            }
        )
    base_cost = rows[0]["cost_per_1k_conversations"]
    for row in rows:
        row["cost_saved"] = {
            sheet: round(1 - row["cost_per_1k_conversations"][sheet] / base_cost[sheet], 4) for sheet in base_cost
        }
        row["kappa_min"] = min(row["kappa"].values())
        row["meets_goal"] = row["cost_saved"][HEADLINE_PRICES] >= COST_GOAL and row["kappa_min"] >= KAPPA_GOAL
    return rows


LONG_CHARS = 4500  # about 1,100 tokens and more: past the 1,024 a prompt cache needs with a short preamble


def long_real_dataset() -> Dataset:
    """Every real conversation of at least ``LONG_CHARS`` characters (few: most real ones are short)."""
    long = real_pool(DATA).filter(pl.col("n_chars") >= LONG_CHARS)
    return Dataset(f"real, long: every conversation of >= {LONG_CHARS:,} characters ({long.height})", long, long.head(0))


def simulator_results(keys: tuple[str, ...] = ("real", "long", "sample")) -> dict:
    """The cost table on real conversations, the long ones among them, then the generated sample, against
    one simulated endpoint."""
    datasets = {"real": lambda: real_dataset(quick=True), "long": long_real_dataset, "sample": sample_dataset}
    batch = SimBatchConfig(validating_s=0.1, completion_s=0.5, finalizing_s=0.1)  # a stand-in's hours in seconds
    sim = SimConfig(endpoints=[SimEndpointConfig(name="bench", model="sim", latency_ms=0.0, jitter=0.0, batch=batch)])
    out: dict = {}
    with SimulatorThread(sim) as server, tempfile.TemporaryDirectory(prefix="semtel-cost-") as root:
        endpoints = [e.model_copy(update={"batch": BatchOptions(poll_s=0.5)}) for e in simulator_endpoints(server, sim)]
        calls = Calls(endpoints, flush_rows=10_000, flush_seconds=60.0)
        for key in keys:
            data = datasets[key]()
            out[key] = {
                "dataset": data.name,
                "conversations": data.test.height,
                "rows": cost_rows(data, calls, Path(root)),
            }
            print(
                key,
                json.dumps([(r["configuration"], r["cost_saved"], r["kappa_min"], r["cached_share"]) for r in out[key]["rows"]]),
            )
    return out


def real_model_agreement(n: int) -> dict:
    """Kappa per classifier of ``conversation_first`` against ``classifier_first`` labels of SmolLM2-135M
    (llama-cpp-python, grammar-enforced JSON) on ``n`` short real OpenAssistant conversations."""
    from benchmarks.real_model.llama_server import MODEL_ALIAS, llama_server
    from benchmarks.real_model.run import ENDPOINT_FIELDS
    from semtel_dagster.core.llm.endpoints import load_endpoints

    with tempfile.TemporaryDirectory(prefix="semtel-cost-real-") as root, llama_server(Path(root) / "server.log") as server:
        write_jsonl(Path(root) / "landing" / "real.jsonl", real_conversations(n, week=WEEK))
        conversations = read_landing(Path(root) / "landing", WEEK).conversations
        ids = conversations.get_column("conversation_id").to_list()
        endpoints = load_endpoints(server.endpoints_file(Path(root) / "endpoints.yaml", **ENDPOINT_FIELDS)).endpoints
        calls = Calls(endpoints, flush_rows=50, flush_seconds=5.0)
        runs = {
            layout: run_config(calls, conversations, "single", layout, Path(root))
            for layout in ("classifier_first", "conversation_first")
        }
    base = labels_by_classifier(runs["classifier_first"]["labels"], ids)
    other = labels_by_classifier(runs["conversation_first"]["labels"], ids)
    return {
        "model": MODEL_ALIAS,
        "conversations": len(ids),
        "kappa": kappas(base, other),
        "raw_agreement": {
            name: round(sum(a == b for a, b in zip(base[name], other.get(name, []), strict=False)) / len(ids), 4) for name in base
        },
        "wall_s": {layout: round(run["wall_s"], 1) for layout, run in runs.items()},
        "prompt_tokens": {layout: int(run["responses"].get_column("prompt_tokens").sum()) for layout, run in runs.items()},
    }


def machine() -> dict:
    return {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, Python {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--real-model", type=int, default=0, metavar="N", help="also measure layout agreement on SmolLM2 (N conversations)"
    )
    parser.add_argument("--skip-sim", action="store_true", help="keep the simulator rows of results.json")
    parser.add_argument("--render", action="store_true", help="only write RESULTS.md from results.json")
    args = parser.parse_args(argv)
    path = HERE / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if not args.render:
        if not args.skip_sim:
            started = time.perf_counter()
            results["simulator"] = simulator_results() | machine()
            results["simulator"]["wall_s"] = round(time.perf_counter() - started, 1)
        if args.real_model:
            started = time.perf_counter()
            results["real_model"] = real_model_agreement(args.real_model) | machine()
            results["real_model"]["wall_s_total"] = round(time.perf_counter() - started, 1)
        path.write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "RESULTS.md").write_text(markdown(results))


def findings(sim: dict) -> list[str]:
    """The goal checked row by row, in words, from the measured rows."""
    lines = ["## Against the goal", ""]
    for key in ("real", "long", "sample"):
        rows = {r["configuration"]: r for r in sim[key]["rows"]}
        met = [name for name, r in rows.items() if r["meets_goal"]]
        laid_out = rows[LAYOUT_ROW]
        lines.append(
            f"- {sim[key]['dataset']}: {'met by ' + ', '.join(met) if met else 'not met by any configuration'} "
            f"(>= {COST_GOAL:.0%} saved at {HEADLINE_PRICES} prices, kappa min >= {KAPPA_GOAL}); "
            f"`conversation_first` caches {laid_out['cached_share']:.1%} of its prompt tokens "
            f"({'meets' if laid_out['cached_share'] >= CACHED_GOAL else 'below'} the {CACHED_GOAL:.0%} goal) and saves "
            f"{laid_out['cost_saved'][HEADLINE_PRICES]:.1%}."
        )
    return [*lines, ""]


def markdown(results: dict) -> str:
    """RESULTS.md: the tables, the goal and whether it is met, how they were measured."""
    lines = ["# Cost per labelled conversation: strategies, batch rates and prompt caching", ""]
    sim = results.get("simulator")
    if sim:
        lines += [
            f"Date: {sim['date']}. Machine: {sim['machine']}, load average at the end {sim['load_average']}.",
            "Reproduce: `python -m benchmarks.cost.run` (simulator rows) and `python -m benchmarks.cost.run --real-model 40 --skip-sim`.",
            "",
            "Each row is `PipelineSettings` run through `Pipeline.run_week` on a fresh lake (dedupe off, six classifiers),",
            "against the simulator over HTTP with its prefix cache (a stand-in for OpenAI's: prefixes of 1,024+ tokens,",
            "128-token steps, cached once processed). Cost: `responses_cost` of the week's `llm_responses` at list prices",
            "per 1M tokens (gpt-4.1-mini: 0.40 input / 0.10 cached / 1.60 output; gpt-4o-mini: 0.15 / 0.075 / 0.60).",
            "**Batch** rows run the product's batch mode (`Calls.mode = batch`: JSONL files uploaded, batches created,",
            "polled and collected through the simulator's batch API, seconds instead of hours) at Batch API rates (half of",
            "input and output, no cache credit). Kappa: per classifier against online `single`;",
            "the simulator labels from content, not wording, so its kappa of a layout is 1 by construction and that of",
            "`multi_classifier` measures only the transcript each classifier reads (the real-model table measures wording).",
            "Wall times are of the shared 2-core machine under the load shown (other jobs ran): compare them within a table.",
            f"Goal: at least {COST_GOAL:.0%} lower cost than online `single` at kappa >= {KAPPA_GOAL} for every classifier;",
            f"at least {CACHED_GOAL:.0%} of prompt tokens cached under `conversation_first`.",
            "",
        ]
        for key in ("real", "long", "sample"):
            part = sim[key]
            lines += [f"## {part['dataset']}", ""]
            lines += [
                "| configuration | calls | prompt tokens | cached | cost / 1k conv. (4.1-mini) | saved | cost / 1k conv. (4o-mini) | saved | kappa min | kappa per classifier | wall (s) | goal |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
            ]
            for r in part["rows"]:
                c, s = r["cost_per_1k_conversations"], r["cost_saved"]
                per = ", ".join(f"{k} {v:.3f}" for k, v in r["kappa"].items())
                lines.append(
                    f"| {r['configuration']} | {r['calls']} | {r['prompt_tokens']:,} | {r['cached_share']:.1%} | "
                    f"{c['gpt-4.1-mini']:.4f} | {s['gpt-4.1-mini']:.1%} | {c['gpt-4o-mini']:.4f} | {s['gpt-4o-mini']:.1%} | "
                    f"{r['kappa_min']:.3f} | {per} | {r['wall_s'] if r['wall_s'] is not None else '-'} | {'met' if r['meets_goal'] else 'not met'} |"
                )
            lines.append("")
        lines += findings(sim)
    real = results.get("real_model")
    if real:
        lines += [
            f"## Layout agreement on a real model ({real['model']}, {real['conversations']} real OpenAssistant conversations)",
            "",
            f"Date: {real['date']}. Machine: {real['machine']}, load average at the end {real['load_average']}.",
            "Both layouts through `Pipeline.run_week` (`single`, dedupe off) against llama-cpp-python with grammar-enforced JSON.",
            "",
            "| classifier | kappa conversation_first vs classifier_first | raw agreement |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {name} | {k:.3f} | {real['raw_agreement'][name]:.1%} |" for name, k in real["kappa"].items()]
        lines += [
            "",
            f"Wall time: {real['wall_s']}; prompt tokens: {real['prompt_tokens']}. Kappa near 0 beside a high raw agreement",
            "means one layout gives nearly one label throughout: a 135M model follows the wording, not the task, so this",
            "says the reordered prompt does not reproduce its labels, not how a larger model behaves. On a local server",
            "`conversation_first` is also slower: the classifier's instructions come last and are computed for every request.",
            "",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
