"""The week's stage chain, composed once: truncate -> dedupe -> classify (answer) -> parse, on any engine.

The Dagster assets call one stage each, ``semtel classify`` and evaluations call ``run_week``, and the
savings benchmark measures the same calls, so a saving added to a stage reaches every caller. Each
stage binds its ``core`` function to the settings and hands it to the engine (``engines.Engine``);
nothing here knows which engine runs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import TYPE_CHECKING

import polars as pl

from semtel_dagster.core.classify import embedding_classifier as ec
from semtel_dagster.core.classify.answering import Answering, Calls
from semtel_dagster.core.classify.parse import answered_pairs, parse_week
from semtel_dagster.core.classify.plan import label_versions
from semtel_dagster.core.classify.prompts import Classifier
from semtel_dagster.core.insights.aggregate import weekly_crosstabs, weekly_insights
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.prepare.dedupe import singleton_clusters
from semtel_dagster.core.prepare.embeddings import Embedder, OnceEmbedder
from semtel_dagster.core.prepare.scrub import scrub_messages
from semtel_dagster.core.prepare.truncate import TruncationConfig, truncate_conversations
from semtel_dagster.engines import Classified, Engine, Written

if TYPE_CHECKING:
    from semtel_dagster.resources.settings import PipelineSettings


@dataclass(frozen=True)
class Deduped:
    clusters: Written
    vectors: Written  # the final representatives' vectors; none unless dedupe is by embedding
    embedding: dict = field(default_factory=dict)  # the embedder's name and statistics (embedding dedupe)


@dataclass(frozen=True)
class WeekRun:
    truncated: Written
    deduped: Deduped
    classified: Classified
    classifications: Written
    rejects: Written


_STAGE_ROWS = 20_000  # conversations scrubbed and truncated at once


def scrubbed_truncation(
    conversations: pl.DataFrame, *, config: TruncationConfig, scrub_pii: bool, scrub_names: bool = False
) -> pl.DataFrame:
    """``conversations_truncated`` rows: messages scrubbed of PII (``core.prepare.scrub``), then truncated.

    Scrubbing comes first so that a value the cut would split (half an email at the omission marker) is
    still whole when it is found, and the token counts are those of the text that is sent. Without
    ``scrub_pii`` the counts are null: not looked for, rather than none found. ``scrub_names`` adds person
    names (a named-entity model, the ``pii-ner`` extra).
    """
    if conversations.height > _STAGE_ROWS:  # row-local: a slice at a time holds one slice's scrubbed copy
        parts = [
            scrubbed_truncation(part, config=config, scrub_pii=scrub_pii, scrub_names=scrub_names)
            for part in conversations.iter_slices(_STAGE_ROWS)
        ]
        return pl.concat(parts)
    if scrub_pii:
        conversations, redactions = scrub_messages(conversations, names=scrub_names)
    else:
        redactions = pl.Series([None] * conversations.height, dtype=tables.REDACTIONS)
    counts = pl.DataFrame({"conversation_id": conversations.get_column("conversation_id"), "redactions": redactions})
    truncated = truncate_conversations(conversations, config)
    return tables.conform(
        truncated.join(counts, on="conversation_id", how="left", maintain_order="left"), tables.CONVERSATIONS_TRUNCATED
    )


def _quiet(line: str) -> None:
    """The default log: nothing."""


@dataclass
class Pipeline:
    """The stages of one lake under ``settings``. ``calls`` is needed from classify on; ``embedder`` (a
    picklable factory, e.g. ``EmbedderResource.factory()``) by embedding dedupe, reuse by embedding and
    embedding classifiers."""

    engine: Engine
    settings: PipelineSettings
    calls: Calls | None = None
    embedder: Callable[[], Embedder] | None = None
    log: Callable[[str], None] = _quiet

    @cached_property
    def classifiers(self) -> dict[str, Classifier]:
        return self.settings.load_classifiers()

    def truncate(self, week: dt.date) -> Written:
        settings = self.settings
        stage = partial(
            scrubbed_truncation, config=settings.truncation(), scrub_pii=settings.scrub_pii, scrub_names=settings.scrub_names
        )
        return self.engine.map_week("conversations", "conversations_truncated", week, stage)

    def dedupe(self, week: dt.date) -> Deduped:
        """Clusters by the configured method. Under exact (or no) dedupe the week's vectors are replaced by
        none, so the table never holds vectors of an older clustering."""
        method = self.settings.dedupe_method
        if method == "embedding":  # on Spark the model runs on the executors
            clusters, vectors, stats = self.engine.cluster_embedding(week, self._embedder(), self.settings.dedupe_threshold)
            return Deduped(clusters, vectors, stats)
        if method == "none":
            clusters = self.engine.map_week("conversations_truncated", "conversation_clusters", week, singleton_clusters)
        else:
            clusters = self.engine.cluster_exact(week)
        none = self._overwrite("conversation_embeddings", tables.empty(tables.CONVERSATION_EMBEDDINGS), week)
        return Deduped(clusters, none)

    def classify(self, week: dt.date) -> Classified:
        """Answers the week's representatives: labels reused from earlier weeks, confident answers of
        embedding classifiers trained on earlier weeks, then the LLM (``core.answering``)."""
        if self.calls is None:
            raise ValueError("classify needs calls (the endpoints to send requests to)")
        models = self.calls.models
        trained, cards = self.embedding_classifiers(week, models)
        answering = Answering(week, self.classifiers, models, self.settings.batching_strategy, self.settings.batch_size, trained)
        reuse_weeks = [week - dt.timedelta(weeks=k) for k in range(1, self.settings.reuse_labels_weeks + 1)]
        classified = self.engine.classify(
            week,
            answering,
            self.calls,
            reuse_weeks=reuse_weeks,
            match_threshold=self.settings.reuse_threshold if self.settings.reuse_match == "embedding" else None,
            embedder=self._embedder() if answering.embedding else None,
            log=self.log,
        )
        return replace(classified, embedding_classifiers=cards)

    def parse(self, week: dt.date) -> tuple[Written, Written]:
        """(classifications, classification_rejects). The engine reads ``strategy`` and ``batch_size`` off the
        bound function: the Spark engine keeps whole batches in one task, so every task plans classify's units."""
        parse = partial(
            parse_week,
            classifiers=self.classifiers,
            strategy=self.settings.batching_strategy,
            batch_size=self.settings.batch_size,
        )
        return self.engine.parse(week, parse)

    def aggregate(self, week: dt.date) -> tuple[Written, Written]:
        """(weekly_insights, weekly_crosstabs): the engine counts, the published tables are made here with
        the minimum group size, and committed from this process (they are small on any engine)."""
        counts, paired = self.engine.label_counts(week, self.settings.pairs_run(self.classifiers))
        k = self.settings.min_group_size
        return (
            self._overwrite("weekly_insights", weekly_insights(counts, k), week),
            self._overwrite("weekly_crosstabs", weekly_crosstabs(paired, k), week),
        )

    def run_week(self, week: dt.date) -> WeekRun:
        """Every stage after ingest, in order, for one week whose ``conversations`` are in the lake."""
        truncated = self.truncate(week)
        deduped = self.dedupe(week)
        classified = self.classify(week)
        classifications, rejects = self.parse(week)
        return WeekRun(truncated, deduped, classified, classifications, rejects)

    def embedding_classifiers(self, week: dt.date, models: frozenset[str]) -> tuple[tuple[ec.EmbeddingClassifier, ...], dict]:
        """Per classifier, an embedding classifier trained here (the driver, on Spark) on the LLM's labels of
        the ``embedding_classifier_train_weeks`` weeks strictly before this one (decoded from their
        ``llm_responses``, which the asset declares), once ``min_labels`` exist.

        Training is deterministic (the same history gives the same version, so a rerun of the week gets the
        same answers), embeds each history text once for all classifiers, and is capped at the most recent ``ec.MAX_TRAIN_ROWS`` labels; artifacts are stored
        versioned under ``<lake>/_models/``. Returns (models, per-classifier metadata).
        """
        settings = self.settings
        if not settings.embedding_classifier:
            return (), {}
        earlier = [week - dt.timedelta(weeks=k) for k in range(1, settings.embedding_classifier_train_weeks + 1)]
        history = answered_pairs(self._read_weeks("llm_responses", earlier), self.classifiers)
        history_text = self._read_weeks("conversations_truncated", earlier)
        versions = label_versions(self.classifiers)
        once: list[OnceEmbedder] = []  # built on first need, shared: each history text is embedded once

        def embedder() -> OnceEmbedder:
            if not once:
                once.append(OnceEmbedder(self._embedder()()))
            return once[0]

        trained, cards = [], {}
        for name, classifier in self.classifiers.items():
            model, why = (
                ec.train_from_history(
                    name,
                    classifier.version,
                    history,
                    history_text,
                    set(models),
                    embedder,
                    versions=versions[name],
                    min_labels=settings.embedding_classifier_min_labels,
                    target_agreement=settings.embedding_classifier_target_agreement,
                )
                if history.height
                else (None, "no earlier labels")
            )
            if model is None:
                cards[name] = {"used": False, "reason": why}
                continue
            if "://" not in self.engine.lake_root:  # artifacts on local lakes only (object stores: left to do in ec.save)
                ec.save(model, self.engine.lake_root)
            trained.append(model)
            card = model.card
            cards[name] = {
                "used": True,
                "reason": why,
                "version": card.version,
                "threshold": card.threshold if math.isfinite(card.threshold) else None,
                "heldout_agreement": card.heldout_agreement,
                "heldout_coverage": card.heldout_coverage,
            }
            self.log(f"{name}: embedding classifier {card.version} ({why})")
        return tuple(trained), cards

    def _embedder(self) -> Callable[[], Embedder]:
        if self.embedder is None:
            raise ValueError(
                "this configuration needs an embedder (embedding dedupe, reuse by embedding or embedding classifiers)"
            )
        return self.embedder

    def _uri(self, table: str) -> str:
        return delta.table_uri(self.engine.lake_root, table)

    def _overwrite(self, table: str, frame, week: dt.date) -> Written:
        schema = tables.TABLES[table]
        return Written(table, delta.overwrite_weeks(self._uri(table), frame, schema, [week]), frame)

    def _read_weeks(self, table: str, weeks: list[dt.date]):
        """Driver-side reads (delta-rs) of small inputs: the training history of the embedding classifiers."""
        return delta.read_weeks(self._uri(table), tables.TABLES[table], weeks)
