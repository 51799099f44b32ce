"""Taxonomy discovery composed once: sample -> summaries -> labels -> draft -> held-out shares -> report.

``semtel taxonomy`` calls ``discover``; the Dagster ``taxonomy`` assets call its steps one each
(``sample``, ``summaries``, ``draft``), so both send the same requests under the same ids and resume
each other's answers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.prepare.truncate import TruncationConfig
from semtel_dagster.core.taxonomy.asking import Asker
from semtel_dagster.core.taxonomy.clusters import Embed, cluster_taxonomy
from semtel_dagster.core.taxonomy.draft import write_draft
from semtel_dagster.core.taxonomy.labels import OTHER
from semtel_dagster.core.taxonomy.rounds import Evolution, grow, minibatches, review, summarize
from semtel_dagster.core.taxonomy.sampling import discovery_samples, stratum_counts
from semtel_dagster.core.taxonomy.tasks import TaskPrompt, load_tasks

Method = Literal["llm", "clusters"]
METHODS: tuple[str, ...] = ("llm", "clusters")


@dataclass(frozen=True)
class DiscoveryConfig:
    n: int = 300  # conversations summarized
    labels: int = 12  # labels discovered (``other`` comes on top)
    method: Method = "llm"
    holdout: int = 200  # other conversations labelled with the draft for the report (0: none)
    batch_size: int = 25  # summaries per generate / update round
    max_rounds: int = 12
    patience: int = 2  # rounds running with the same names that end the rounds
    seed: int = 7
    name: str = "draft"  # the draft classifier's name
    max_transcript_tokens: int = 1024  # transcripts are cut (head and tail kept) before summarizing
    scrub_pii: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        if self.labels < 2:
            raise ValueError("a taxonomy needs at least 2 labels")


@dataclass
class Discovery:
    """Everything the report shows."""

    config: DiscoveryConfig
    input: str
    strata: dict[str, int]
    summaries: int
    evolution: Evolution
    draft: Path | None = None
    holdout: dict = field(default_factory=dict)  # conversations, shares, other_share, rejects, costs
    totals: dict = field(default_factory=dict)  # dispatch totals of discovery (DispatchStats.as_dict())
    resumed: int = 0
    budget_reached: bool = False
    assignments: dict[str, str] | None = None  # clusters: each summarized conversation's cluster label


def sample(conversations: pl.DataFrame, config: DiscoveryConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(discovery sample, held-out sample), stratified over weeks and lengths."""
    return discovery_samples(conversations, config.n, config.holdout, config.seed)


def transcripts(conversations: pl.DataFrame, config: DiscoveryConfig) -> pl.DataFrame:
    """The transcripts that are sent, made as the pipeline's truncate stage makes them: scrubbed of PII,
    then cut to the budget (head and tail kept)."""
    from semtel_dagster.engines.pipeline import scrubbed_truncation

    config_cut = TruncationConfig(max_tokens=config.max_transcript_tokens)
    return scrubbed_truncation(conversations, config=config_cut, scrub_pii=config.scrub_pii)


def summaries(sampled: pl.DataFrame, config: DiscoveryConfig, asker: Asker, prompts: dict[str, TaskPrompt]) -> pl.DataFrame:
    """``conversation_id, summary`` of the sampled conversations (those whose answer held one)."""
    return summarize(transcripts(sampled, config), prompts["summarize"], asker.ask)


def labels(
    summarized: pl.DataFrame,
    config: DiscoveryConfig,
    asker: Asker,
    prompts: dict[str, TaskPrompt],
    embed: Callable[[], Embed] | None = None,
) -> tuple[Evolution, dict[str, str] | None]:
    """The label set by the configured method, and (clusters) each summary's cluster label."""
    if not summarized.height:
        raise ValueError("no summaries to discover labels from (every summarize request failed or was not sent)")
    exhausted = lambda: asker.exhausted  # noqa: E731
    if config.method == "clusters":
        if embed is None:
            raise ValueError("the clusters method needs an embedder")
        return cluster_taxonomy(summarized, embed(), config.labels, prompts["name_cluster"], asker.ask, config.seed)
    batches = minibatches(summarized, config.batch_size, config.seed)
    grown = grow(batches, prompts, config.labels, asker.ask, exhausted, max_rounds=config.max_rounds, patience=config.patience)
    return review(grown, prompts["review"], config.labels, asker.ask, exhausted), None


def holdout_shares(draft: Path, held: pl.DataFrame, endpoints: Sequence[Endpoint]) -> dict:
    """Each label's share of the held-out conversations labelled with the draft, through the pipeline's
    own stage chain (``evaluation.experiment.run_configuration``: every conversation, no dedupe)."""
    from semtel_dagster.core.evaluation.experiment import RunConfig, run_configuration

    if not held.height:
        return {}
    with tempfile.TemporaryDirectory(prefix="semtel-taxonomy-") as folder:
        (Path(folder) / draft.name).write_bytes(draft.read_bytes())
        run = run_configuration(RunConfig(name="draft", prompts_dir=folder), held, endpoints)
    (classifier,) = run.classifiers.values()
    counts = dict(run.classifications.group_by("label").len().iter_rows())
    n = held.height
    ok = run.responses.filter(pl.col("status") == "ok")
    return {
        "conversations": n,
        "shares": {label: counts.get(label, 0) / n for label in classifier.labels},
        "other_share": counts.get(OTHER, 0) / n,
        "rejects": run.rejects.height,
        "calls": run.responses.height,
        "prompt_tokens": int(ok.get_column("prompt_tokens").sum() or 0),
        "completion_tokens": int(ok.get_column("completion_tokens").sum() or 0),
        "labels": run.classifications.select("conversation_id", "label"),
    }


def discover(
    conversations: pl.DataFrame,
    config: DiscoveryConfig,
    asker: Asker,
    out: Path,
    *,
    input_name: str,
    prompts: dict[str, TaskPrompt] | None = None,
    embed: Callable[[], Embed] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> Discovery:
    """The whole discovery into the draft at ``out``; the held-out sample is labelled unless the budget ran out."""
    prompts = prompts or load_tasks()
    sampled, held = sample(conversations, config)
    log(f"taxonomy: {sampled.height} conversations sampled over {len(stratum_counts(sampled))} week x length strata")
    summarized = summaries(sampled, config, asker, prompts)
    evolution, assignments = labels(summarized, config, asker, prompts, embed)
    return finish(config, input_name, sampled, summarized, evolution, assignments, held, asker, out, log)


def finish(
    config: DiscoveryConfig,
    input_name: str,
    sampled: pl.DataFrame,
    summarized: pl.DataFrame,
    evolution: Evolution,
    assignments: dict[str, str] | None,
    held: pl.DataFrame,
    asker: Asker,
    out: Path,
    log: Callable[[str], None] = lambda line: None,
) -> Discovery:
    """Write the draft and label the held-out sample with it (skipped once the budget is reached)."""
    about = {
        "method": config.method,
        "input": input_name,
        "sampled": sampled.height,
        "summaries": summarized.height,
        "rounds": len(evolution.rounds),
        "config": {k: v for k, v in asdict(config).items() if k != "name"},
    }
    result = Discovery(
        config,
        input_name,
        stratum_counts(sampled),
        summarized.height,
        evolution,
        assignments=assignments,
        resumed=asker.resumed,
    )
    if evolution.labels:
        result.draft = out
        write_draft(out, config.name, evolution.labels, about)
        log(f"taxonomy: draft with {len(evolution.labels)} labels + other written to {out}")
        if not asker.exhausted:
            result.holdout = holdout_shares(out, held, asker.calls.endpoints)
    result.totals = asker.totals
    result.budget_reached = asker.exhausted
    return result
