"""The ``taxonomy`` asset group: discover a label set from the lake's conversations (not partitioned).

Run on demand, like an evaluation: ``taxonomy_sample`` draws the stratified sample from the last
``weeks`` weeks of ``conversations``, ``taxonomy_summaries`` summarizes it, ``taxonomy_draft`` grows the
labels (or clusters the summaries), writes the draft classifier and the report. Each asset is one step of
``core.taxonomy.discover``, the composition ``semtel taxonomy`` runs; files land in ``out_dir``, and the
answers kept there make a rematerialization resume instead of asking again.
"""

from pathlib import Path
from typing import Literal

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.taxonomy import discover as steps
from semtel_dagster.core.taxonomy.asking import Asker
from semtel_dagster.core.taxonomy.report import write_report
from semtel_dagster.core.taxonomy.sampling import stratum_counts
from semtel_dagster.core.taxonomy.tasks import load_tasks
from semtel_dagster.resources import EmbedderResource, EndpointPoolResource, LakeResource

GROUP = "taxonomy"


class TaxonomyConfig(Config):
    n: int = 300
    labels: int = 12
    method: Literal["llm", "clusters"] = "llm"
    holdout: int = 200
    weeks: int = 4  # the most recent weeks of conversations the sample is drawn from
    batch_size: int = 25
    max_rounds: int = 12
    seed: int = 7
    name: str = "draft"
    out_dir: str = ".semtel/taxonomy"

    def discovery(self) -> steps.DiscoveryConfig:
        return steps.DiscoveryConfig(
            n=self.n,
            labels=self.labels,
            method=self.method,
            holdout=self.holdout,
            batch_size=self.batch_size,
            max_rounds=self.max_rounds,
            seed=self.seed,
            name=self.name,
        )

    def path(self, name: str) -> Path:
        return Path(self.out_dir) / name

    def asker(self, pool: EndpointPoolResource, log) -> Asker:
        return Asker(pool.calls(), store=delta.table_uri(str(Path(self.out_dir).resolve()), "taxonomy_responses"), log=log)


def recent_conversations(lake: LakeResource, weeks: int) -> tuple[pl.DataFrame, list]:
    """The ``conversations`` of the last ``weeks`` weeks the lake holds, and those weeks."""
    uri = lake.uri("conversations")
    if not delta.table_exists(uri):
        raise ValueError(f"no conversations table at {uri}: materialize some weeks of the pipeline first")
    held = sorted(pl.scan_delta(uri).select("week_start").unique().collect().get_column("week_start").to_list())
    chosen = held[-weeks:]
    return delta.read_weeks(uri, tables.CONVERSATIONS, chosen), chosen


@asset(group_name=GROUP)
def taxonomy_sample(context: AssetExecutionContext, config: TaxonomyConfig, lake: LakeResource) -> MaterializeResult:
    """A sample of conversations stratified over weeks and lengths, and a held-out sample to check the draft on."""
    conversations, weeks = recent_conversations(lake, config.weeks)
    sampled, held = steps.sample(conversations, config.discovery())
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    sampled.write_parquet(config.path("sample.parquet"))
    held.write_parquet(config.path("holdout.parquet"))
    return MaterializeResult(
        metadata={
            "weeks": MetadataValue.json([w.isoformat() for w in weeks]),
            "sampled": sampled.height,
            "holdout": held.height,
            "strata": MetadataValue.json(stratum_counts(sampled)),
        }
    )


@asset(group_name=GROUP, deps=[taxonomy_sample], kinds={"openai"})
def taxonomy_summaries(
    context: AssetExecutionContext, config: TaxonomyConfig, endpoint_pool: EndpointPoolResource
) -> MaterializeResult:
    """One short summary per sampled conversation (the summarize prompt), through the endpoint pool."""
    asker = config.asker(endpoint_pool, context.log.info)
    summarized = steps.summaries(pl.read_parquet(config.path("sample.parquet")), config.discovery(), asker, load_tasks())
    summarized.write_parquet(config.path("summaries.parquet"))
    return MaterializeResult(
        metadata={"summaries": summarized.height, "resumed": asker.resumed, "calls": MetadataValue.json(asker.totals)}
    )


@asset(group_name=GROUP, deps=[taxonomy_summaries], kinds={"openai"})
def taxonomy_draft(
    context: AssetExecutionContext, config: TaxonomyConfig, endpoint_pool: EndpointPoolResource, embedder: EmbedderResource
) -> MaterializeResult:
    """The draft classifier (``<out_dir>/<name>.prompty``) and its report: rounds, shares on the held-out sample."""
    discovery, asker = config.discovery(), config.asker(endpoint_pool, context.log.info)
    summarized = pl.read_parquet(config.path("summaries.parquet"))
    embed = embedder.embedder().embed if discovery.method == "clusters" else None
    evolution, assignments = steps.labels(summarized, discovery, asker, load_tasks(), (lambda: embed) if embed else None)
    result = steps.finish(
        discovery,
        "lake conversations",
        pl.read_parquet(config.path("sample.parquet")),
        summarized,
        evolution,
        assignments,
        pl.read_parquet(config.path("holdout.parquet")),
        asker,
        config.path(f"{discovery.name}.prompty"),
        context.log.info,
    )
    report = write_report(config.path(f"{discovery.name}.md"), result)
    return MaterializeResult(
        metadata={
            "draft": MetadataValue.path(str(config.path(f"{discovery.name}.prompty").resolve())),
            "report": MetadataValue.path(str(report.resolve())),
            "labels": MetadataValue.json([label.name for label in evolution.labels]),
            "rounds": len(evolution.rounds),
            "stopped": evolution.stopped,
            "other_share": result.holdout.get("other_share", float("nan")),
            "budget_reached": result.budget_reached,
            "report_markdown": MetadataValue.md(report.read_text(encoding="utf-8")),
        }
    )
