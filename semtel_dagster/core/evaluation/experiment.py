"""Run a classifier configuration on a fixed sample and compare two of them (no Dagster, no lake).

A configuration is what an evaluation varies: prompt folder (prompt version A vs B), endpoints (model
X vs Y) and batching strategy. Each run is the pipeline's own stage chain (``engines.pipeline``) on a
throwaway lake: truncation, request planning, the dispatcher over real HTTP, follow-ups for pairs a
batched answer missed, and parsing.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.classify.plan import STRATEGIES, STRATEGY_SINGLE
from semtel_dagster.core.classify.prompts import LAYOUT_CLASSIFIER_FIRST, LAYOUTS, Classifier, load_classifiers
from semtel_dagster.core.evaluation.golden import ADAPTERS, GoldenSet, real_conversations, sample_truth
from semtel_dagster.core.evaluation.metrics import compare_labels, run_costs, score_against_truth, stratified_sample
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.sim.sample import generate_week

EVAL_WEEK = dt.date(2026, 1, 5)  # a fixed partition key for evaluation samples (they are not weekly data)


@dataclass(frozen=True)
class RunConfig:
    name: str
    strategy: str = STRATEGY_SINGLE
    batch_size: int = 8
    prompts_dir: str | None = None
    classifiers: tuple[str, ...] | None = None
    scrub_pii: bool = True
    layout: str = LAYOUT_CLASSIFIER_FIRST  # prompt layout (``prompts.LAYOUTS``)

    def load(self) -> dict[str, Classifier]:
        return load_classifiers(
            Path(self.prompts_dir) if self.prompts_dir else None,
            list(self.classifiers) if self.classifiers else None,
            self.layout,
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


def sample_week(conversations: pl.DataFrame) -> pl.DataFrame:
    """A sample (``conversation_id, messages``) as the ``conversations`` of ``EVAL_WEEK``."""
    return tables.conform(
        conversations.select("conversation_id", "messages").with_columns(
            week_start=pl.lit(EVAL_WEEK),
            source=pl.lit("evaluation"),
            started_at=pl.lit(dt.datetime.combine(EVAL_WEEK, dt.time(), dt.UTC)),
            n_turns=pl.col("messages").list.len(),
            n_chars=pl.col("messages").list.eval(pl.element().struct.field("content").str.len_chars()).list.sum(),
        ),
        tables.CONVERSATIONS,
    )


def run_configuration(config: RunConfig, conversations: pl.DataFrame, endpoints: Sequence[Endpoint]) -> RunResult:
    """Classify the sample under ``config`` through the pipeline's own stage chain (``Pipeline.run_week``) on
    a throwaway lake. Dedupe is off on purpose: evaluation measures the classifiers on every conversation."""
    from semtel_dagster.engines.pipeline import Pipeline
    from semtel_dagster.engines.polars_engine import PolarsEngine
    from semtel_dagster.resources.settings import PipelineSettings

    settings = PipelineSettings(
        prompts_dir=config.prompts_dir,
        classifiers=list(config.classifiers) if config.classifiers else None,
        batching_strategy=config.strategy,
        batch_size=config.batch_size,
        prompt_layout=config.layout,
        dedupe_method="none",
        scrub_pii=config.scrub_pii,
    )
    with tempfile.TemporaryDirectory(prefix="semtel-eval-") as lake:
        engine = PolarsEngine(lake)
        engine.write("conversations", sample_week(conversations), EVAL_WEEK)
        pipeline = Pipeline(engine, settings, calls=Calls(list(endpoints), flush_rows=10_000, flush_seconds=60.0))
        started = time.monotonic()
        run = pipeline.run_week(EVAL_WEEK)
        wall = time.monotonic() - started
    responses, labels, rejects = run.classified.responses.frame, run.classifications.frame, run.rejects.frame
    costs = run_costs(responses, rejects, conversations.height * len(pipeline.classifiers), conversations.height)
    costs["wall_seconds"] = wall
    return RunResult(config, pipeline.classifiers, responses, labels, rejects, wall, costs)


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


def _run_summary(run: RunResult, endpoints: Sequence[Endpoint]) -> dict:
    return {
        "name": run.config.name,
        "strategy": run.config.strategy,
        "prompts": run.config.prompts_dir or "prompts/",
        "prompt_versions": {name: c.version for name, c in run.classifiers.items()},
        "endpoints": ", ".join(sorted({f"{e.name}:{e.model}" for e in endpoints})),
        "costs": run.costs,
        "reject_reasons": dict(run.rejects.group_by("reason").len().sort("len", descending=True).head(10).iter_rows()),
    }


Configured = tuple[RunConfig, Sequence[Endpoint]]


def evaluate(
    reference: Configured,
    others: Sequence[Configured],
    sample: GoldenSet,
    sample_description: str,
    seed: int,
    golden: Sequence[GoldenSet] = (),
    golden_descriptions: dict[str, str] | None = None,
) -> dict:
    """Every configuration on the same sample, each compared with the reference (and scored on the
    sample's truth where it has one), then each on every golden set; the result dict is what
    ``report.write_report`` renders."""
    configured = [reference, *others]
    names = [config.name for config, _ in configured]
    if len(set(names)) != len(names):
        raise ValueError(f"configuration names must differ, got {names}")
    runs = [run_configuration(config, sample.conversations, endpoints) for config, endpoints in configured]
    golden_scores: dict[str, dict] = {}
    golden_info: dict[str, dict] = {}
    if sample.truth.height:
        golden_scores[sample.name] = {run.config.name: score_run(run, sample.truth) for run in runs}
        golden_info[sample.name] = {
            "description": "Labels written by the seeded generator (synthetic truth).",
            "left_out": {},
        }
    for gold in golden:
        classifiers = tuple(sorted(set(gold.truth.get_column("classifier").to_list())))
        golden_scores[gold.name] = {
            config.name: score_run(
                run_configuration(replace(config, classifiers=classifiers), gold.conversations, endpoints), gold.truth
            )
            for config, endpoints in configured
        }
        golden_info[gold.name] = {"description": (golden_descriptions or {}).get(gold.name, ""), "left_out": gold.left_out}
    return {
        "runs": [_run_summary(run, endpoints) for run, (_, endpoints) in zip(runs, configured)],
        "sample": {"description": sample_description, "conversations": sample.conversations.height, "seed": seed},
        "comparison": {run.config.name: compare_runs(runs[0], run) for run in runs[1:]},
        "golden": golden_scores,
        "golden_info": golden_info,
    }


GOLDEN_DESCRIPTIONS = {
    "mt_bench": "MT-bench + Vicuna-bench first-turn questions; human task-type categories mapped to topic.",
    "clinc150": "CLINC150 test utterances (stratified sample); human intent domains mapped to topic.",
}
SAMPLE_WEEK = dt.date(2026, 11, 16)
SAMPLES = ("generated", "real")
LABELERS = ("keyword", "embedding")
CONFIG_KEYS = (
    "name",
    "strategy",
    "batch_size",
    "prompts",
    "classifiers",
    "scrub_pii",
    "endpoints",
    "labeler",
    "noise_scale",
    "layout",
)


@dataclass(frozen=True)
class EndpointChoice:
    """Where a configuration's requests go: an endpoints file, or the embedded simulator (with a labeler
    and noise scale of its own when given); neither: the caller's default pool."""

    file: str | None = None
    labeler: str | None = None
    noise_scale: float | None = None

    @property
    def simulated(self) -> bool:
        return self.labeler is not None or self.noise_scale is not None


def parse_config(spec: str, default_name: str) -> tuple[RunConfig, EndpointChoice]:
    """``name=A,strategy=single,batch_size=8,prompts=DIR,classifiers=a+b,scrub_pii=false`` plus
    ``endpoints=FILE`` or ``labeler=keyword|embedding[,noise_scale=X]`` -> (config, where its requests go)."""
    values = dict(part.split("=", 1) for part in spec.split(",") if part.strip()) if spec else {}
    unknown = set(values) - set(CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown configuration keys {sorted(unknown)} in {spec!r}")
    strategy = values.get("strategy", "single")
    scrub = values.get("scrub_pii", "true").lower()
    if scrub not in ("true", "false"):
        raise ValueError(f"scrub_pii must be true or false, got {scrub!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    labeler = values.get("labeler")
    if labeler is not None and labeler not in LABELERS:
        raise ValueError(f"labeler must be one of {LABELERS}, got {labeler!r}")
    choice = EndpointChoice(values.get("endpoints"), labeler, float(values["noise_scale"]) if "noise_scale" in values else None)
    if choice.file and choice.simulated:
        raise ValueError(f"labeler and noise_scale are settings of the embedded simulator, not of endpoints=FILE: {spec!r}")
    classifiers = tuple(c for c in values.get("classifiers", "").split("+") if c) or None
    layout = values.get("layout", LAYOUT_CLASSIFIER_FIRST)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    config = RunConfig(
        name=values.get("name", default_name),
        strategy=strategy,
        batch_size=int(values.get("batch_size", 8)),
        prompts_dir=values.get("prompts"),
        scrub_pii=scrub == "true",
        classifiers=classifiers,
        layout=layout,
    )
    return config, choice


def parse_configs(a: str, bs: Sequence[str]) -> list[tuple[RunConfig, EndpointChoice]]:
    """The reference configuration, then each one compared with it (unnamed: A, then B or B1, B2, ...)."""
    names = ["B"] if len(bs) == 1 else [f"B{i + 1}" for i in range(len(bs))]
    return [parse_config(a, "A"), *(parse_config(spec, name) for spec, name in zip(bs, names))]


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


def real_set(data_dir: Path, n: int, seed: int, max_chars: int | None = None, exclude: frozenset[str] = frozenset()) -> GoldenSet:
    """Real conversations without labels, ``n`` of them in equal shares of hh-rlhf, OpenAssistant and
    arena-hard (seeded), none of ``exclude``; ``max_chars`` keeps only short ones (a slow model stays quick)."""
    frame = real_conversations(Path(data_dir)).filter(~pl.col("conversation_id").is_in(sorted(exclude)))
    if max_chars is not None:
        frame = frame.filter(pl.col("n_chars") <= max_chars)
    sources = frame.partition_by("source", maintain_order=True)
    shares = [n // len(sources) + (i < n % len(sources)) for i in range(len(sources))]
    picked = pl.concat([part.sample(min(k, part.height), seed=seed) for part, k in zip(sources, shares)]).sort("conversation_id")
    truth = pl.DataFrame(schema={"conversation_id": pl.String, "classifier": pl.String, "label": pl.String})
    return GoldenSet("real", picked.select("conversation_id", "messages"), truth, {})


def sample_for(
    kind: str, n: int, seed: int, classifiers: list[str], data_dir: Path, max_chars: int | None
) -> tuple[GoldenSet, str]:
    """The evaluation sample (``generated`` or ``real``) and how it was drawn."""
    if kind == "generated":
        return sample_set(n, seed, classifiers), f"seeded generator week {SAMPLE_WEEK}, stratified by true topic"
    if kind == "real":
        limit = f", at most {max_chars} characters each" if max_chars else ""
        return real_set(data_dir, n, seed, max_chars), f"real conversations, equal shares of hh-rlhf, oasst and arena-hard{limit}"
    raise ValueError(f"sample must be one of {SAMPLES}, got {kind!r}")


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
