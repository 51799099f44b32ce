"""The single-machine engine: each stage's ``core`` function over the whole week in Polars."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import polars as pl

from semtel_dagster.core.classify import reuse
from semtel_dagster.core.classify.answering import Answering, Calls, answer, batch_send, logged_send
from semtel_dagster.core.classify.parse import answered_labels
from semtel_dagster.core.classify.plan import latest_per_request
from semtel_dagster.core.classify.prompts import Classifier
from semtel_dagster.core.insights.aggregate import label_counts, pair_counts
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.lake.streams import CORES, ordered_map
from semtel_dagster.core.llm.batch import DeltaLedger
from semtel_dagster.core.prepare.dedupe import (
    HASHED,
    cluster_exact,
    clusters_by_hash,
    embed_representatives,
    hashed_texts,
    merge_near_duplicates,
    representative_embeddings,
)
from semtel_dagster.core.prepare.embeddings import Embedder
from semtel_dagster.engines import Classified, Parser, Reader, Stage, Written

PROCESS_ROWS = 50_000  # conversations in a week from which map_week runs its batches in processes


class PolarsEngine:
    name = "polars"

    def __init__(self, lake_root: str) -> None:
        self.lake_root = lake_root

    def uri(self, table: str) -> str:
        return delta.table_uri(self.lake_root, table)

    def read(self, table: str, week: dt.date) -> pl.DataFrame:
        return delta.read_weeks(self.uri(table), tables.TABLES[table], [week])

    def write(self, table: str, frame: pl.DataFrame, week: dt.date) -> Written:
        return Written(table, delta.overwrite_weeks(self.uri(table), frame, tables.TABLES[table], [week]), frame)

    def write_stream(self, table: str, frames: Iterable[pl.DataFrame], week: dt.date) -> Written:
        """The week written as its frames come (one commit), described lazily by the committed version: a
        week of any size, with a frame of it in memory at a time."""
        uri, schema = self.uri(table), tables.TABLES[table]
        version = delta.overwrite_weeks(uri, frames, schema, [week])
        return Written(table, version, delta.scan_week(uri, schema, week, version))

    def ingest(self, week: dt.date, landing_dir: str, read: Reader) -> tuple[Written, Written, int]:
        stream = read(landing_dir)
        conversations = self.write_stream("conversations", stream, week)
        result = stream.done
        return conversations, self.write("ingest_rejects", result.rejects, week), result.files_read

    def map_week(self, source: str, target: str, week: dt.date, stage: Stage) -> Written:
        """A row-local stage over the week a batch at a time (``delta.read_week_batches``), a batch per core at
        once: on threads, or for a week of ``PROCESS_ROWS`` or more in processes, whose start (about 2 s)
        is then small beside what they save (the token counter holds the GIL)."""
        batches = delta.read_week_batches(self.uri(source), tables.TABLES[source], week)
        processes = delta.week_rows(self.uri(source), week) >= PROCESS_ROWS
        return self.write_stream(target, ordered_map(stage, batches, workers=CORES, processes=processes), week)

    def cluster_exact(self, week: dt.date) -> Written:
        """Hashes a batch of transcripts per core at once; the clusters need only ids and hashes of the whole week."""
        batches = delta.read_week_batches(
            self.uri("conversations_truncated"),
            tables.CONVERSATIONS_TRUNCATED,
            week,
            columns=["conversation_id", "week_start", "transcript"],
        )
        hashed = pl.concat([tables.empty(HASHED), *ordered_map(hashed_texts, batches, workers=CORES)])
        return self.write("conversation_clusters", clusters_by_hash(hashed), week)

    def cluster_embedding(
        self, week: dt.date, embedder: Callable[[], Embedder], threshold: float
    ) -> tuple[Written, Written, dict]:
        truncated = self.read("conversations_truncated", week)
        model = embedder()
        exact = cluster_exact(truncated)
        embedded = embed_representatives(exact, truncated, model.embed)
        clusters = self.write("conversation_clusters", merge_near_duplicates(exact, embedded, threshold), week)
        vectors = self.write("conversation_embeddings", representative_embeddings(clusters.frame, embedded, model.name), week)
        return clusters, vectors, {"embedder": model.name, **model.stats.as_dict()}

    def read_weeks(self, table: str, weeks: list[dt.date]) -> pl.DataFrame:
        return delta.read_weeks(self.uri(table), tables.TABLES[table], weeks)

    def classify(
        self,
        week: dt.date,
        answering: Answering,
        calls: Calls,
        *,
        reuse_weeks: list[dt.date],
        match_threshold: float | None,
        embedder: Callable[[], Embedder] | None,
        log: Callable[[str], None],
    ) -> Classified:
        """The whole week in this process; answers are committed in small appends while calls are in flight."""
        clusters = self.read("conversation_clusters", week)
        where = f"week {week} ({answering.strategy}, to {[e.name for e in calls.endpoints]})"
        if calls.batch_endpoints:
            send = batch_send(calls, DeltaLedger(self.uri("llm_batches"), week), log=log, where=where)
        else:
            send = logged_send(
                calls.dispatcher, flush_rows=calls.flush_rows, flush_seconds=calls.flush_seconds, log=log, where=where
            )
        report = answer(
            answering,
            clusters,
            self.read("conversations_truncated", week),
            self.read("llm_responses", week),
            self._reuse_candidates(week, clusters, reuse_weeks, match_threshold, answering.classifiers),
            send=send,
            write=partial(delta.append, self.uri("llm_responses"), schema=tables.LLM_RESPONSES),
            embed=(lambda texts: embedder().embed(texts)) if answering.embedding and embedder else None,
            vectors=self.read("conversation_embeddings", week) if answering.embedding else None,
        )
        return Classified(self.write("llm_responses", latest_per_request(self.read("llm_responses", week)), week), report)

    def _reuse_candidates(
        self,
        week: dt.date,
        clusters: pl.DataFrame,
        weeks: list[dt.date],
        match_threshold: float | None,
        classifiers: dict[str, Classifier],
    ) -> pl.DataFrame:
        """Earlier weeks' labels of the same text (``core.reuse.candidates``) and, with ``match_threshold``,
        of the most similar earlier representative (``core.reuse.embedding_candidates``). The labels are
        those of the earlier weeks' answers (``parse.answered_labels``)."""
        if not weeks:
            return tables.empty(reuse.CANDIDATES)
        earlier = self.read_weeks("conversation_clusters", weeks)
        labels = answered_labels(earlier, self.read_weeks("llm_responses", weeks), classifiers)
        found = reuse.candidates(clusters, earlier, labels)
        if match_threshold is None:
            return found
        similar = reuse.embedding_candidates(
            found,
            self.read("conversation_embeddings", week),
            self.read_weeks("conversation_embeddings", weeks),
            labels,
            match_threshold,
        )
        return pl.concat([found, similar])

    def parse(self, week: dt.date, parse: Parser) -> tuple[Written, Written]:
        classifications, rejects = parse(self.read("conversation_clusters", week), self.read("llm_responses", week))
        return self.write("classifications", classifications, week), self.write("classification_rejects", rejects, week)

    def label_counts(self, week: dt.date, pairs: Sequence[tuple[str, str]]) -> tuple[pl.DataFrame, pl.DataFrame]:
        classifications = self.read("classifications", week)
        return label_counts(classifications), pair_counts(classifications, pairs)


def open_engine(lake_root: str, config: Any) -> PolarsEngine:
    """Nothing to configure on one machine."""
    return PolarsEngine(lake_root)
