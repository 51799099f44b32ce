"""Embedding classification (TnT-LLM style): a light model learns the LLM's own labels.

Per classifier, a logistic regression over sentence embeddings is trained on labels the LLM gave in
earlier weeks. At run time the conversations it labels with a confidence at or above a calibrated
threshold skip the LLM; the rest go to the LLM. The threshold is the lowest confidence at which
held-out agreement with the LLM still meets the target, so the saving is bought at a known quality.

Artifacts live beside the tables, versioned: ``<lake>/_models/<classifier>/<version>/`` with
``model.joblib`` and ``meta.json``; the version hashes the prompt version, the LLM model, the
embedder and the training labels, so a prompt or model change never reuses a stale classifier.
The hook is off until a classifier has ``min_labels`` training labels.

Wiring into the classify stage (``PipelineSettings.embedding_classifier``, every batching strategy,
both engines): ``training_set`` picks the LLM's own labels of earlier weeks (pool models only, so the
classifier never learns from its own answers; under the classifier's current prompt, asked alone or
batched; the most recent ``max_rows``), training runs once on the driver, and ``answer_confident``
turns the confident representatives of the week into ``llm_responses`` rows under the single request
id of their pair (endpoint ``embedding_classifier``, model = the artifact version, zero tokens), so
parse, fan-out, gates and resume treat them like any other answer and only the rest is dispatched
(``core.answering``; on Spark, in each task, with the trained model pickled into it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from semtel_dagster.core.classify.plan import STRATEGY_EMBEDDING, local_answer
from semtel_dagster.extras import require

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

FEATURE = "the embedding classifier"

MIN_LABELS = 500
MAX_TRAIN_ROWS = 20_000  # enough for a linear model over 384 dimensions; bounds driver memory and time
ENDPOINT = STRATEGY_EMBEDDING  # endpoint and strategy of the rows the model answers


@dataclass(frozen=True)
class ModelCard:
    classifier: str
    version: str
    prompt_version: str
    llm_model: str
    embedder: str
    labels: list[str]
    trained_on: int
    threshold: float
    target_agreement: float
    heldout_agreement: float  # of rows at or above the threshold
    heldout_coverage: float  # share of held-out rows at or above the threshold


@dataclass
class EmbeddingClassifier:
    card: ModelCard
    model: LogisticRegression

    def predict(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(label, confidence) per row; confidence is the top class probability."""
        proba = self.model.predict_proba(vectors)
        best = proba.argmax(axis=1)
        return self.model.classes_[best], proba[np.arange(len(best)), best]


def fit(vectors: np.ndarray, labels: list[str], *, c: float = 4.0, seed: int = 0) -> LogisticRegression:
    linear_model = require("sklearn.linear_model", "embeddings", FEATURE)
    model = linear_model.LogisticRegression(C=c, max_iter=2000, random_state=seed)
    return model.fit(vectors, np.asarray(labels))


def calibrate_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> tuple[float, float, float]:
    """Lowest threshold whose accepted rows agree at least ``target``: (threshold, agreement, coverage).

    Scans thresholds from the most confident row down; returns (inf, 1.0, 0.0) if none qualifies.
    """
    order = np.argsort(-confidence, kind="stable")
    agree = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    ok = np.nonzero(agree >= target)[0]
    if len(ok) == 0:
        return float("inf"), 1.0, 0.0
    k = int(ok[-1])
    return float(confidence[order][k]), float(agree[k]), (k + 1) / len(order)


def train(
    classifier: str,
    vectors: np.ndarray,
    labels: list[str],
    *,
    prompt_version: str,
    llm_model: str,
    embedder: str,
    target_agreement: float = 0.95,
    holdout: float = 0.25,
    seed: int = 0,
) -> EmbeddingClassifier:
    """Fit on the LLM's labels, calibrate the threshold on a held-out split, refit on everything."""
    labels = list(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(n, dtype=bool)
    test[rng.permutation(n)[: max(1, int(n * holdout))]] = True
    y = np.asarray(labels)
    if len(set(y[~test])) < 2:
        raise ValueError(f"{classifier}: need at least two labels to train, got {sorted(set(labels))}")
    heldout_model = fit(vectors[~test], y[~test].tolist(), seed=seed)
    proba = heldout_model.predict_proba(vectors[test])
    predicted = heldout_model.classes_[proba.argmax(axis=1)]
    threshold, agreement, coverage = calibrate_threshold(proba.max(axis=1), predicted == y[test], target_agreement)
    model = fit(vectors, labels, seed=seed)
    digest = hashlib.sha256(
        json.dumps([classifier, prompt_version, llm_model, embedder, labels]).encode() + vectors.tobytes()
    ).hexdigest()[:16]
    card = ModelCard(
        classifier,
        digest,
        prompt_version,
        llm_model,
        embedder,
        sorted(set(labels)),
        n,
        threshold,
        target_agreement,
        agreement,
        coverage,
    )
    return EmbeddingClassifier(card, model)


def split_by_confidence(
    model: EmbeddingClassifier, ids: list[str], vectors: np.ndarray, threshold: float | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """(labelled by the model: conversation_id, label, confidence; ids that still need the LLM)."""
    threshold = model.card.threshold if threshold is None else threshold
    labels, confidence = model.predict(vectors) if len(ids) else (np.array([]), np.array([]))
    sure = confidence >= threshold
    confident = pl.DataFrame(
        {
            "conversation_id": [i for i, s in zip(ids, sure) if s],
            "label": labels[sure].tolist(),
            "confidence": confidence[sure].tolist(),
        },
        schema={"conversation_id": pl.String, "label": pl.String, "confidence": pl.Float64},
    )
    return confident, [i for i, s in zip(ids, sure) if not s]


def save(model: EmbeddingClassifier, lake_root: str | Path) -> Path:
    """Write ``<lake>/_models/<classifier>/<version>/`` (local lakes; object stores are left to do)."""
    folder = Path(lake_root) / "_models" / model.card.classifier / model.card.version
    folder.mkdir(parents=True, exist_ok=True)
    require("joblib", "embeddings", FEATURE).dump(model.model, folder / "model.joblib")
    (folder / "meta.json").write_text(json.dumps(asdict(model.card), indent=2), encoding="utf-8")
    return folder


def load_latest(
    lake_root: str | Path, classifier: str, prompt_version: str, llm_model: str, embedder: str
) -> EmbeddingClassifier | None:
    """The newest stored model trained for this prompt version, LLM and embedder, or None."""
    root = Path(lake_root) / "_models" / classifier
    matches = []
    for meta in root.glob("*/meta.json"):
        card = ModelCard(**json.loads(meta.read_text(encoding="utf-8")))
        if (card.prompt_version, card.llm_model, card.embedder) == (prompt_version, llm_model, embedder):
            matches.append((meta.stat().st_mtime, card, meta.parent))
    if not matches:
        return None
    _, card, folder = max(matches, key=lambda m: m[0])
    return EmbeddingClassifier(card, require("joblib", "embeddings", FEATURE).load(folder / "model.joblib"))


def training_set(
    answers: pl.DataFrame,
    truncated: pl.DataFrame,
    classifier: str,
    versions: Collection[str],
    llm_models: set[str],
    max_rows: int = MAX_TRAIN_ROWS,
) -> pl.DataFrame:
    """(conversation_id, transcript, label) the LLM gave representatives in earlier weeks.

    ``answers``: the earlier weeks' labels per representative (``parse.answered_pairs``). Only labels
    from the pool's LLM models under one of ``versions`` (the classifier's current prompt, alone or
    batched) count: answers of an embedding classifier (model = its version id) are left out, so the
    model never trains on its own output. The truncated transcript the LLM saw is the text; the
    ``max_rows`` most recent.
    """
    labels = answers.filter(
        (pl.col("classifier") == classifier)
        & pl.col("prompt_version").is_in(sorted(versions))
        & pl.col("model").is_in(sorted(llm_models))
        & pl.col("label").is_not_null()
    ).select(pl.col("representative_id").alias("conversation_id"), "week_start", "label")
    return (
        labels.join(truncated.select("conversation_id", "week_start", "transcript"), on=["conversation_id", "week_start"])
        .unique(subset=["conversation_id", "week_start"], keep="first")
        .sort(["week_start", "conversation_id"], descending=[True, False])
        .head(max_rows)
        .sort("week_start", "conversation_id")
        .select("conversation_id", "transcript", "label")
    )


def answer_confident(
    model: EmbeddingClassifier,
    ids: list[str],
    vectors: np.ndarray,
    week_start: dt.date,
    answered_ids: Collection[str] = frozenset(),
    now: dt.datetime | None = None,
) -> pl.DataFrame:
    """``llm_responses`` rows for the representatives the model labels at or above its threshold.

    Each row stands in for exactly the single LLM request of that representative x classifier (same
    request id): status ok, raw text ``{"label": ...}``, zero tokens, endpoint and strategy
    ``embedding_classifier``, model = the artifact version. Requests in ``answered_ids`` are skipped,
    so a rerun adds nothing for pairs already answered (by the LLM or by this model).
    """
    from semtel_dagster.core.lake import tables
    from semtel_dagster.core.llm.requests import request_id

    now = now or dt.datetime.now(dt.UTC)
    card = model.card
    confident, _ = split_by_confidence(model, ids, vectors)
    rows = []
    for cid, label in confident.select("conversation_id", "label").iter_rows():
        rid = request_id((cid,), (card.classifier,), card.prompt_version)
        if rid in answered_ids:
            continue
        rows.append(
            local_answer(week_start, cid, card.classifier, card.prompt_version, card.version, {"label": label}, ENDPOINT, now)
        )
    return pl.DataFrame(rows, schema=tables.LLM_RESPONSES) if rows else tables.empty(tables.LLM_RESPONSES)


def train_from_history(
    classifier: str,
    prompt_version: str,
    answers: pl.DataFrame,
    truncated: pl.DataFrame,
    llm_models: set[str],
    get_embedder,
    *,
    versions: Collection[str] | None = None,
    min_labels: int = MIN_LABELS,
    target_agreement: float = 0.95,
    max_rows: int = MAX_TRAIN_ROWS,
) -> tuple[EmbeddingClassifier | None, str]:
    """(model or None, why) trained on the LLM's labels of earlier weeks (``answers``, see ``training_set``).

    ``versions``: prompt versions whose labels count (default: ``prompt_version`` only).
    None while fewer than ``min_labels`` labels (or a single label value) exist: the LLM answers all.
    Deterministic for the same history, so a rerun of a week uses the same model version.
    ``get_embedder`` is called only when there is enough to train (a local model takes ~10 s to load).
    """
    history = training_set(answers, truncated, classifier, versions or {prompt_version}, llm_models, max_rows)
    if history.height < min_labels:
        return None, f"{history.height} LLM labels < {min_labels}"
    if history.get_column("label").n_unique() < 2:
        return None, "a single label value"
    embedder = get_embedder()
    vectors = embedder.embed(history.get_column("transcript").to_list())
    try:
        model = train(
            classifier,
            vectors,
            history.get_column("label").to_list(),
            prompt_version=prompt_version,
            llm_model=",".join(sorted(llm_models)),
            embedder=embedder.name,
            target_agreement=target_agreement,
        )
    except ValueError as error:
        return None, str(error)
    return model, f"trained on {history.height} LLM labels"
