"""Run a classifier configuration on a fixed sample and compare two of them (no Dagster, no lake).

A configuration is what an evaluation varies: prompt folder (prompt version A vs B), endpoints (model
X vs Y) and batching strategy. Each run goes through the production code path: truncation, request
planning, the dispatcher over real HTTP, follow-ups for pairs a batched answer missed, and parse_week.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from semtel_dagster.core.classify.parse import followup_pairs, parse_week
from semtel_dagster.core.classify.plan import STRATEGIES, STRATEGY_SINGLE, answered_request_ids, plan_requests, run_dispatch
from semtel_dagster.core.classify.prompts import Classifier, load_classifiers
from semtel_dagster.core.evaluation.golden import ADAPTERS, GoldenSet, sample_truth
from semtel_dagster.core.evaluation.metrics import compare_labels, run_costs, score_against_truth, stratified_sample
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.prepare.truncate import TruncationConfig, truncate_conversations
from semtel_dagster.sim.sample import generate_week

EVAL_WEEK = dt.date(2026, 1, 5)  # a fixed partition key for evaluation samples (they are not weekly data)


@dataclass(frozen=True)
class RunConfig:
    name: str
    strategy: str = STRATEGY_SINGLE
    batch_size: int = 8
    prompts_dir: str | None = None
    classifiers: tuple[str, ...] | None = None

    def load(self) -> dict[str, Classifier]:
        return load_classifiers(
            Path(self.prompts_dir) if self.prompts_dir else None, list(self.classifiers) if self.classifiers else None
        )


@dataclass
class RunResult:
    config: RunConfig
    classifiers: dict[str, Classifier]
    responses: pl.DataFrame
    classifications: pl.DataFrame
    rejects: pl.DataFrame
    wall_seconds: float
    costs: dict = field(default_factory=dict)


def sample_tables(conversations: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(clusters, truncated) for a sample where every conversation is its own representative.

    Evaluation measures the classifiers, so near-duplicate collapsing is left out on purpose.
    """
    frame = conversations.select("conversation_id", "messages").with_columns(pl.lit(EVAL_WEEK).alias("week_start"))
    truncated = truncate_conversations(frame, TruncationConfig())
    clusters = frame.select(
        "conversation_id",
        "week_start",
        pl.col("conversation_id").alias("representative_id"),
        pl.lit(True).alias("is_representative"),
        pl.lit(1, pl.Int64).alias("cluster_size"),
        pl.lit("none").alias("method"),
        pl.lit(1.0).alias("similarity"),
        pl.lit("").alias("text_hash"),
    )
    return tables.conform(clusters, tables.CONVERSATION_CLUSTERS), truncated


def run_configuration(config: RunConfig, conversations: pl.DataFrame, endpoints: list[Endpoint]) -> RunResult:
    """Classify the sample under ``config``: the batched round, then single follow-ups for missed pairs."""
    classifiers = config.load()
    clusters, truncated = sample_tables(conversations)
    rows: list[dict] = []
    started = time.monotonic()
    for _ in range(1 if config.strategy == STRATEGY_SINGLE else 2):
        responses = pl.DataFrame(rows, schema=tables.LLM_RESPONSES)
        plan = plan_requests(
            clusters,
            truncated,
            classifiers,
            answered_request_ids(responses, {e.model for e in endpoints}),
            strategy=config.strategy,
            batch_size=config.batch_size,
            followups=followup_pairs(clusters, responses, classifiers, config.strategy, config.batch_size),
        )
        if not plan.to_send:
            break
        run_dispatch(plan, Dispatcher(endpoints), rows.extend, flush_rows=10_000, flush_seconds=60.0)
    wall = time.monotonic() - started
    responses = pl.DataFrame(rows, schema=tables.LLM_RESPONSES)
    labels, rejects = parse_week(clusters, responses, classifiers, config.strategy, config.batch_size)
    costs = run_costs(responses, rejects, clusters.height * len(classifiers), clusters.height)
    costs["wall_seconds"] = wall
    return RunResult(config, classifiers, responses, labels, rejects, wall, costs)


def compare_runs(a: RunResult, b: RunResult) -> dict[str, dict]:
    """Per classifier both runs share: agreement, kappa, confusion (A rows, B columns), JS shift."""
    shared = [name for name in a.classifiers if name in b.classifiers]
    out = {}
    for name in shared:
        labels = list(a.classifiers[name].labels) + [x for x in b.classifiers[name].labels if x not in a.classifiers[name].labels]
        out[name] = {
            "labels": labels,
            **compare_labels(
                a.classifications.filter(pl.col("classifier") == name),
                b.classifications.filter(pl.col("classifier") == name),
                labels,
            ),
        }
    return out


def score_run(run: RunResult, truth: pl.DataFrame) -> dict[str, dict]:
    """Per classifier with human labels (``conversation_id, classifier, label``): accuracy, macro-F1."""
    out = {}
    for name in sorted(set(truth.get_column("classifier").to_list()) & set(run.classifiers)):
        labels = list(run.classifiers[name].labels)
        out[name] = {
            "labels": labels,
            **score_against_truth(
                run.classifications.filter(pl.col("classifier") == name),
                truth.filter(pl.col("classifier") == name),
                labels,
            ),
        }
    return out


def _run_summary(run: RunResult, endpoints: list[Endpoint]) -> dict:
    return {
        "name": run.config.name,
        "strategy": run.config.strategy,
        "prompts": run.config.prompts_dir or "prompts/",
        "prompt_versions": {name: c.version for name, c in run.classifiers.items()},
        "endpoints": ", ".join(sorted({f"{e.name}:{e.model}" for e in endpoints})),
        "costs": run.costs,
        "reject_reasons": dict(run.rejects.group_by("reason").len().sort("len", descending=True).head(10).iter_rows()),
    }


def evaluate(
    a: RunConfig,
    b: RunConfig,
    endpoints_a: list[Endpoint],
    endpoints_b: list[Endpoint],
    sample: GoldenSet,
    sample_description: str,
    seed: int,
    golden: list[GoldenSet] = (),
    golden_descriptions: dict[str, str] | None = None,
) -> dict:
    """Both configurations on the same sample (compared with each other and with its truth), and each
    on every golden set; the result dict is what ``eval_report.write_report`` renders."""
    run_a = run_configuration(a, sample.conversations, endpoints_a)
    run_b = run_configuration(b, sample.conversations, endpoints_b)
    result = {
        "a": _run_summary(run_a, endpoints_a),
        "b": _run_summary(run_b, endpoints_b),
        "sample": {"description": sample_description, "conversations": sample.conversations.height, "seed": seed},
        "comparison": compare_runs(run_a, run_b),
        "golden": {sample.name: {a.name: score_run(run_a, sample.truth), b.name: score_run(run_b, sample.truth)}},
        "golden_info": {
            sample.name: {"description": "Labels written by the seeded generator (synthetic truth).", "left_out": {}}
        },
    }
    for gold in golden:
        classifiers = tuple(sorted(set(gold.truth.get_column("classifier").to_list())))
        result["golden"][gold.name] = {}
        for config, endpoints in ((a, endpoints_a), (b, endpoints_b)):
            run = run_configuration(replace(config, classifiers=classifiers), gold.conversations, endpoints)
            result["golden"][gold.name][config.name] = score_run(run, gold.truth)
        result["golden_info"][gold.name] = {
            "description": (golden_descriptions or {}).get(gold.name, ""),
            "left_out": gold.left_out,
        }
    return result


GOLDEN_DESCRIPTIONS = {
    "mt_bench": "MT-bench + Vicuna-bench first-turn questions; human task-type categories mapped to topic.",
    "clinc150": "CLINC150 test utterances (stratified sample); human intent domains mapped to topic.",
}
SAMPLE_WEEK = dt.date(2026, 11, 16)


def parse_config(spec: str, default_name: str) -> tuple[RunConfig, str | None]:
    """``name=A,strategy=single,batch_size=8,prompts=DIR,endpoints=FILE`` -> (config, endpoints file)."""
    values = dict(part.split("=", 1) for part in spec.split(",") if part.strip()) if spec else {}
    unknown = set(values) - {"name", "strategy", "batch_size", "prompts", "endpoints"}
    if unknown:
        raise ValueError(f"unknown configuration keys {sorted(unknown)} in {spec!r}")
    strategy = values.get("strategy", "single")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    config = RunConfig(
        name=values.get("name", default_name),
        strategy=strategy,
        batch_size=int(values.get("batch_size", 8)),
        prompts_dir=values.get("prompts"),
    )
    return config, values.get("endpoints")


def sample_set(n: int, seed: int, classifiers: list[str]) -> GoldenSet:
    """The seeded generator's week, stratified by true topic, as a golden set with synthetic truth."""
    week = generate_week(SAMPLE_WEEK, n=max(n * 2, 50), seed=seed)
    records = []
    for line in week.records:
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # the generator's deliberately malformed lines
    records = [r for r in records if isinstance(r, dict) and r.get("conversation_id") and r.get("messages")]
    truth = [t for t in week.truth if "duplicate_of" not in t]  # distinct conversations only
    ids = {t["conversation_id"] for t in truth}
    topics = pl.DataFrame({"conversation_id": [t["conversation_id"] for t in truth], "topic": [t["topic"] for t in truth]})
    keep = set(stratified_sample(topics, "topic", n, seed).get_column("conversation_id").to_list())
    return sample_truth(
        [r for r in records if r["conversation_id"] in keep & ids],
        [t for t in truth if t["conversation_id"] in keep],
        classifiers,
    )


def load_golden(names: str, data_dir: Path, n: int, seed: int, note=lambda message: None) -> list[GoldenSet]:
    """The named golden sets (comma-separated); skipped with a note when the data folder is absent."""
    sets = []
    for name in [g for g in names.split(",") if g]:
        if name not in ADAPTERS:
            raise ValueError(f"unknown golden set {name!r}; available: {sorted(ADAPTERS)}")
        if not Path(data_dir).is_dir():
            note(f"golden set {name} skipped: data folder {data_dir} not found")
            continue
        sets.append(ADAPTERS[name](Path(data_dir), n=n, seed=seed))
    return sets
