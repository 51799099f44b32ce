"""Answering representatives: call-saving steps first, then the LLM in one or two rounds.

The Polars engine runs ``answer`` on the whole week; the Spark engine runs the very same function in
each task on whole batches (a task holds complete chunks of the week's sorted representatives, their
transcripts, their stored answers and their reuse candidates), so both engines send the same requests
under the same ids.

In order: (1) labels of the same text (or, optionally, of a near-duplicate by embedding) from earlier
weeks (``core.reuse``) and (2) confident answers of the embedding classifiers trained on earlier weeks
(``core.embedding_classifier``) are written as ``llm_responses`` rows, which makes their pairs
pre-answered (``core.classify``); (3) the LLM calls for the rest, with the single re-asks an earlier run
left to do; (4) under a batched strategy, single re-asks of the pairs a batched answer of (3) missed.
A rerun finds everything answered and sends nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from semtel_dagster.core.classify.parse import followup_pairs
from semtel_dagster.core.classify.plan import (
    DEFAULT_BATCH_SIZE,
    STRATEGY_SINGLE,
    WALL_SEQUENTIAL,
    ClassifyPlan,
    answered_request_ids,
    merge_stats,
    plan_requests,
    preanswered_pairs,
    representatives,
    run_dispatch,
    run_sync,
)
from semtel_dagster.core.classify.prompts import Classifier
from semtel_dagster.core.classify.reuse import reused_answers
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.batch import BatchRun, Ledger, submit_batches
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.progress import DispatchProgress
from semtel_dagster.core.llm.requests import request_id
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.stats import DispatchStats

if TYPE_CHECKING:  # scikit-learn loads only where an embedding classifier runs (seconds per Spark worker)
    from semtel_dagster.core.classify.embedding_classifier import EmbeddingClassifier

MODE_ONLINE, MODE_BATCH = "online", "batch"
MODES = (MODE_ONLINE, MODE_BATCH)
Send = Callable[[ClassifyPlan, Callable[[list[dict]], None]], DispatchStats]  # (plan, write_batch) -> stats
Write = Callable[[pl.DataFrame], None]  # appends rows to llm_responses
Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Answering:
    """How a week's representatives are answered; picklable, so the Spark engine ships it to its tasks."""

    week: dt.date
    classifiers: dict[str, Classifier]
    models: frozenset[str]  # the pool's LLM models: answers of other models are asked again
    strategy: str = STRATEGY_SINGLE
    batch_size: int = DEFAULT_BATCH_SIZE
    embedding: tuple[EmbeddingClassifier, ...] = ()  # trained on earlier weeks, at most one per classifier

    @property
    def answerers(self) -> set[str]:
        """Models whose answers count: the pool's, and the embedding classifiers' versions."""
        return set(self.models) | {model.card.version for model in self.embedding}


@dataclass(frozen=True)
class Calls:
    """Where and how LLM requests go: the endpoints, the dispatch settings, how often answers are committed.
    Picklable: the Spark engine gives each task a share of it."""

    endpoints: list[Endpoint]
    settings: DispatchSettings = field(default_factory=DispatchSettings)
    flush_rows: int = 200
    flush_seconds: float = 2.0
    mode: str | None = None  # online | batch for every endpoint; None: each endpoint's own mode

    def __post_init__(self) -> None:
        if self.mode not in (None, *MODES):
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")

    @property
    def models(self) -> frozenset[str]:
        return frozenset(endpoint.model for endpoint in self.endpoints)

    @property
    def batch_endpoints(self) -> list[Endpoint]:
        """Endpoints whose batch API answers the week (empty: everything is sent online)."""
        if self.mode is not None:
            return list(self.endpoints) if self.mode == MODE_BATCH else []
        return [e for e in self.endpoints if e.mode == MODE_BATCH]

    def dispatcher(self) -> Dispatcher:
        return Dispatcher(self.endpoints, self.settings)


@dataclass
class Answered:
    """What ``answer`` did: counts for metadata and summaries, and the dispatch totals."""

    needed: int = 0  # LLM requests of the first round (pre-answered pairs need none)
    resumed: int = 0  # ... already answered by an earlier run
    sent: int = 0  # requests sent, follow-ups included
    followups_sent: int = 0
    reused: int = 0  # pairs answered from earlier weeks' labels
    embedded: dict[str, int] = field(default_factory=dict)  # pairs answered per embedding classifier
    stats: dict = field(default_factory=lambda: DispatchStats().as_dict())

    @staticmethod
    def merge(reports: list[Answered], wall: str) -> Answered:
        """One report for several runs: ``wall`` is ``WALL_SEQUENTIAL`` (weeks) or ``WALL_PARALLEL`` (tasks)."""
        embedded: dict[str, int] = {}
        for report in reports:
            for name, count in report.embedded.items():
                embedded[name] = embedded.get(name, 0) + count
        counts = {key: sum(getattr(r, key) for r in reports) for key in ("needed", "resumed", "sent", "followups_sent", "reused")}
        return Answered(**counts, embedded=embedded, stats=merge_stats([r.stats for r in reports], wall))


def answer(
    config: Answering,
    clusters: pl.DataFrame,
    truncated: pl.DataFrame,
    stored: pl.DataFrame,
    found: pl.DataFrame,
    *,
    send: Send,
    write: Write,
    embed: Embed | None = None,
    vectors: pl.DataFrame | None = None,
    now: dt.datetime | None = None,
) -> Answered:
    """Answer the representatives of ``clusters`` (transcripts in ``truncated``).

    ``stored``: their ``llm_responses`` rows so far; ``found``: their reuse candidates
    (``core.reuse.candidates``, empty when reuse is off); ``embed``: needed with embedding classifiers
    for representatives without a vector in ``vectors`` (the week's ``conversation_embeddings``).
    """
    answered = answered_request_ids(stored, config.answerers)
    reused = reused_answers(found, config.classifiers, config.models, config.week, answered, now)
    answered |= set(reused.get_column("request_id").to_list())
    embedded = _embedding_answers(config, representatives(clusters, truncated), answered, embed, vectors, now)
    saved = pl.concat([reused, embedded])
    if saved.height:
        write(saved)
    report = Answered(
        reused=reused.height,
        embedded=dict(embedded.group_by(pl.col("classifiers").list.first()).len().iter_rows()),
    )
    rows: list[dict] = []  # this run's answers, kept only while a follow-up round will read them
    rounds = 1 if config.strategy == STRATEGY_SINGLE else 2

    def write_batch(batch: list[dict]) -> None:
        if len(round_stats) + 1 < rounds:
            rows.extend(batch)
        write(pl.DataFrame(batch, schema=tables.LLM_RESPONSES))

    round_stats: list[dict] = []
    for round_no in range(rounds):
        responses = pl.concat([stored, saved, pl.DataFrame(rows, schema=tables.LLM_RESPONSES)])
        plan = plan_requests(
            clusters,
            truncated,
            config.classifiers,
            answered_request_ids(responses, config.answerers),
            strategy=config.strategy,
            batch_size=config.batch_size,
            followups=followup_pairs(clusters, responses, config.classifiers, config.strategy, config.batch_size),
            preanswered=preanswered_pairs(responses, config.classifiers),
        )
        if round_no and not plan.sending:
            break
        if round_no:
            report.followups_sent = plan.sending
        else:
            report.needed, report.resumed = plan.total, plan.answered
        report.sent += plan.sending
        round_stats.append(send(plan, write_batch).as_dict())
    report.stats = merge_stats(round_stats, WALL_SEQUENTIAL)
    return report


def logged_send(
    dispatcher: Callable[[], Dispatcher], *, flush_rows: int, flush_seconds: float, log: Callable[[str], None], where: str
) -> Send:
    """A ``Send`` for one process (the Polars engine): logs each round's plan, shows progress."""

    def send(plan: ClassifyPlan, write_batch: Callable[[list[dict]], None]) -> DispatchStats:
        log(f"{where}: {plan.total} requests needed, {plan.answered} already answered, {plan.sending} to send")
        progress = DispatchProgress(plan.sending, log)
        try:
            return run_dispatch(
                plan, dispatcher(), write_batch, flush_rows=flush_rows, flush_seconds=flush_seconds, on_progress=progress
            )
        finally:
            progress.close()

    return send


def batch_send(calls: Calls, ledger: Ledger, *, log: Callable[[str], None], where: str) -> Send:
    """A ``Send`` through the batch APIs of ``calls.batch_endpoints`` (``core.llm.batch``), recorded in
    ``ledger``; the pool's other endpoints answer what batches failed under ``on_failure: online``."""
    batched = calls.batch_endpoints
    online = tuple(e for e in calls.endpoints if e not in batched)

    def send(plan: ClassifyPlan, write_batch: Callable[[list[dict]], None]) -> DispatchStats:
        log(f"{where}: {plan.total} requests needed, {plan.answered} already answered, {plan.sending} to send in batches")
        run = BatchRun(batched, calls.settings, ledger, online, log)
        return run_sync(lambda: submit_batches(plan.to_send, run, write_batch))

    return send


def _embedding_answers(
    config: Answering,
    reps: pl.DataFrame,
    answered: set[str],
    embed: Embed | None,
    vectors: pl.DataFrame | None,
    now: dt.datetime | None,
) -> pl.DataFrame:
    """Confident answers of each embedding classifier for pairs not answered yet. A representative's
    vector comes from ``vectors`` (embedding dedupe stored it) when its embedder is the classifier's;
    each transcript still without one is embedded once."""
    if not config.embedding or not reps.height:
        return tables.empty(tables.LLM_RESPONSES)
    from semtel_dagster.core.classify.embedding_classifier import answer_confident

    ids = reps.get_column("conversation_id").to_list()
    todo = {
        model.card.classifier: [
            cid for cid in ids if request_id((cid,), (model.card.classifier,), model.card.prompt_version) not in answered
        ]
        for model in config.embedding
    }
    known = _known_vectors(vectors, {model.card.embedder for model in config.embedding})
    missing = sorted(
        {cid for model in config.embedding for cid in todo[model.card.classifier] if (model.card.embedder, cid) not in known}
    )
    if missing:
        if embed is None:
            raise ValueError("embedding classifiers need an embedder for representatives without a stored vector")
        transcripts = dict(zip(ids, reps.get_column("transcript").to_list()))
        fresh = embed([transcripts[cid] for cid in missing])
        for model in config.embedding:
            known.update({(model.card.embedder, cid): fresh[i] for i, cid in enumerate(missing)})
    answers = [
        answer_confident(
            model,
            todo[name],
            np.stack([known[(model.card.embedder, cid)] for cid in todo[name]]),
            config.week,
            answered,
            now,
        )
        for model in config.embedding
        for name in [model.card.classifier]
        if todo[name]
    ]
    return pl.concat(answers) if answers else tables.empty(tables.LLM_RESPONSES)


def _known_vectors(vectors: pl.DataFrame | None, embedders: set[str]) -> dict[tuple[str, str], np.ndarray]:
    """(embedder, conversation_id) -> vector for the rows of ``vectors`` made by one of ``embedders``."""
    if vectors is None:
        return {}
    rows = vectors.filter(pl.col("embedder").is_in(sorted(embedders)) & pl.col("vector").is_not_null())
    if not rows.height:
        return {}
    matrix = rows.get_column("vector").explode().to_numpy().astype(np.float32, copy=False).reshape(rows.height, -1)
    keys = zip(rows.get_column("embedder").to_list(), rows.get_column("conversation_id").to_list())
    return {key: matrix[i] for i, key in enumerate(keys)}
