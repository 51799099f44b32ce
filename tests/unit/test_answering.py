"""``core.answering.answer`` with real parts: the simulator over HTTP, its embeddings endpoint, sample weeks.

Week A is answered by the LLM alone; week B repeats some of A's texts and is answered in batches after
label reuse and an embedding classifier trained on A: the pairs they answer are never sent, batched
answers that miss a pair are re-asked alone, and a rerun sends nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.core.classify import embedding_classifier as ec
from semtel_dagster.core.classify import reuse
from semtel_dagster.core.classify.answering import Answering, answer, logged_send
from semtel_dagster.core.classify.parse import ANSWERED, answered_labels, answered_pairs, parse_week
from semtel_dagster.core.classify.plan import CALL_SAVING, STRATEGY_FOLLOWUP, representatives
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.prepare.dedupe import cluster_exact
from semtel_dagster.core.prepare.embeddings import OpenAIEmbedder
from semtel_dagster.core.prepare.truncate import TruncationConfig, truncate_conversations
from semtel_dagster.sim.sample import write_week

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
WEEK_A, WEEK_B = dt.date(2026, 11, 9), dt.date(2026, 11, 16)
MODEL = "sim-model"


def _week(landing: Path, week: dt.date, seed: int, repeats: pl.DataFrame | None = None) -> tuple[pl.DataFrame, ...]:
    """The week's conversations, clusters and truncated transcripts, ingested like the pipeline does."""
    write_week(landing, landing / "truth", week, n=40, seed=seed)
    conversations = read_landing(landing, week).conversations
    if repeats is not None:  # the same texts asked again by other users
        again = repeats.with_columns(
            ("again-" + pl.col("conversation_id")).alias("conversation_id"), pl.lit(week).alias("week_start")
        )
        conversations = pl.concat([conversations, again.select(conversations.columns)])
    truncated = truncate_conversations(conversations, TruncationConfig())
    return conversations, cluster_exact(truncated), truncated


@pytest.fixture(scope="module")
def sim(clean_and_messy_sim):
    return clean_and_messy_sim


def _run(config, clusters, truncated, stored, found, endpoint, embed=None, vectors=None):
    written: list[pl.DataFrame] = []
    send = logged_send(lambda: Dispatcher([endpoint]), flush_rows=50, flush_seconds=0.2, log=lambda line: None, where="test")
    report = answer(config, clusters, truncated, stored, found, send=send, write=written.append, embed=embed, vectors=vectors)
    return report, pl.concat([tables.empty(tables.LLM_RESPONSES), *written])


def test_batched_week_after_reuse_and_embedding_answers_then_rerun(sim, tmp_path):
    classifiers = load_classifiers(PROMPTS, ["topic", "satisfaction"])
    clean = Endpoint(name="clean", base_url=sim.base_url("clean"), model=MODEL)
    messy = Endpoint(name="messy", base_url=sim.base_url("messy"), model=MODEL)
    empty = tables.empty(tables.LLM_RESPONSES)

    conversations_a, clusters_a, truncated_a = _week(tmp_path / "a", WEEK_A, seed=1)
    report_a, responses_a = _run(
        Answering(WEEK_A, classifiers, frozenset({MODEL})), clusters_a, truncated_a, empty, tables.empty(reuse.CANDIDATES), clean
    )
    assert report_a.sent == report_a.needed == clusters_a["is_representative"].sum() * 2 and report_a.followups_sent == 0
    labels_a = answered_labels(clusters_a, responses_a, classifiers)
    assert labels_a.equals(parse_week(clusters_a, responses_a, classifiers)[0].select(labels_a.columns))

    _, clusters_b, truncated_b = _week(tmp_path / "b", WEEK_B, seed=2, repeats=conversations_a.head(5))
    found = reuse.candidates(clusters_b, clusters_a, labels_a)
    embedder = OpenAIEmbedder(sim.base_url("clean"), model="sim-hashed", progress=False)
    model, why = ec.train_from_history(
        "satisfaction",
        classifiers["satisfaction"].version,
        answered_pairs(responses_a, classifiers),
        truncated_a,
        {MODEL},
        lambda: embedder,
        min_labels=20,
        target_agreement=0.5,
    )
    assert model is not None, why
    config = Answering(WEEK_B, classifiers, frozenset({MODEL}), "multi_conversation", 4, (model,))
    report, rows = _run(config, clusters_b, truncated_b, empty, found, messy, embed=embedder.embed)

    saved = rows.filter(pl.col("strategy").is_in(CALL_SAVING))
    assert report.reused >= 5 and report.embedded.get("satisfaction", 0) > 0
    assert saved.height == report.reused + report.embedded["satisfaction"]
    preanswered = set(saved.select(pl.col("conversation_ids").list.first(), pl.col("classifiers").list.first()).iter_rows())
    llm = rows.filter(~pl.col("strategy").is_in(CALL_SAVING))
    sent_pairs = {
        (cid, name) for ids, names in llm.select("conversation_ids", "classifiers").iter_rows() for cid in ids for name in names
    }
    assert not preanswered & sent_pairs  # what reuse or the embedding classifier answered is never asked
    assert report.followups_sent > 0 and llm.filter(pl.col("strategy") == STRATEGY_FOLLOWUP).height == report.followups_sent
    labels, rejects = parse_week(clusters_b, rows, classifiers, "multi_conversation", 4)
    assert labels.height + rejects.height == clusters_b.height * 2  # row conservation
    # what later weeks learn from: the same labels, decoded without knowing the strategy that planned them
    assert answered_labels(clusters_b, rows, classifiers).equals(labels.select(list(ANSWERED)))
    assert not rejects.filter(pl.col("reason").str.starts_with("no response")).height

    again, more = _run(config, clusters_b, truncated_b, rows, found, messy, embed=embedder.embed)
    assert again.sent == 0 and more.height == 0 and again.resumed == again.needed >= report.needed


def test_embedding_classifier_answers_from_the_weeks_stored_vectors(sim, tmp_path):
    """Vectors embedding dedupe stored for the week stand in for embedding the transcripts again."""
    classifiers = load_classifiers(PROMPTS, ["satisfaction"])
    clean = Endpoint(name="clean", base_url=sim.base_url("clean"), model=MODEL)
    empty, none_found = tables.empty(tables.LLM_RESPONSES), tables.empty(reuse.CANDIDATES)
    _, clusters_a, truncated_a = _week(tmp_path / "a", WEEK_A, seed=1)
    _, responses_a = _run(Answering(WEEK_A, classifiers, frozenset({MODEL})), clusters_a, truncated_a, empty, none_found, clean)
    embedder = OpenAIEmbedder(sim.base_url("clean"), model="sim-hashed", progress=False)
    model, why = ec.train_from_history(
        "satisfaction",
        classifiers["satisfaction"].version,
        answered_pairs(responses_a, classifiers),
        truncated_a,
        {MODEL},
        lambda: embedder,
        min_labels=20,
        target_agreement=0.5,
    )
    assert model is not None, why
    config = Answering(WEEK_B, classifiers, frozenset({MODEL}), embedding=(model,))

    _, clusters_b, truncated_b = _week(tmp_path / "b", WEEK_B, seed=2)
    reps = representatives(clusters_b, truncated_b)
    vectors = reps.select(
        "conversation_id",
        "week_start",
        pl.lit(embedder.name).alias("embedder"),
        pl.Series("vector", [v.tolist() for v in embedder.embed(reps["transcript"].to_list())]),
    )
    fresh, fresh_rows = _run(config, clusters_b, truncated_b, empty, none_found, clean, embed=embedder.embed)
    stored, stored_rows = _run(config, clusters_b, truncated_b, empty, none_found, clean, embed=None, vectors=vectors)

    assert stored.embedded == fresh.embedded and fresh.embedded["satisfaction"] > 0
    by_classifier = pl.col("endpoint") == ec.ENDPOINT
    assert set(stored_rows.filter(by_classifier).select("request_id", "raw_text").iter_rows()) == set(
        fresh_rows.filter(by_classifier).select("request_id", "raw_text").iter_rows()
    )
    other = vectors.with_columns(pl.lit("another-embedder").alias("embedder"))  # never compared across embedders
    with pytest.raises(ValueError, match="without a stored vector"):
        _run(config, clusters_b, truncated_b, empty, none_found, clean, embed=None, vectors=other)
