"""The local embedding model with an on-disk cache, shared by the benchmarks (``.semtel/bench-cache``)."""

from __future__ import annotations

import atexit
import hashlib
import time
from pathlib import Path

import numpy as np

from semtel_dagster.core.prepare.embeddings import LOCAL_MODEL, EmbeddingStats, LocalEmbedder

CACHE = Path(__file__).resolve().parents[1] / ".semtel" / "bench-cache"


class CachedEmbedder:
    """The local model with an on-disk cache (text hash -> vector), so reruns skip the model. An ``Embedder``
    (name, stats, embed): the pipeline's embedding dedupe and embedding classifiers, and the simulator's
    embedding labeler, use it as they would the model itself. New vectors are written every ``SAVE_EVERY``
    and at exit (the labeler asks for a few texts per request)."""

    name = LOCAL_MODEL
    SAVE_EVERY = 2000

    def __init__(self) -> None:
        self._model: LocalEmbedder | None = None
        CACHE.mkdir(parents=True, exist_ok=True)
        self.path = CACHE / "minilm.npz"
        self.store: dict[str, np.ndarray] = dict(np.load(self.path)) if self.path.exists() else {}
        self.stats = EmbeddingStats()
        self._unsaved = 0
        atexit.register(self.save)

    def model(self) -> LocalEmbedder:
        if self._model is None:
            self._model = LocalEmbedder(progress=False)
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.store}.items())
        if missing:
            start = time.perf_counter()
            vectors = self.model().embed([t for _, t in missing])
            self.stats.seconds += time.perf_counter() - start
            self.stats.texts += len(missing)
            self.store.update({k: v for (k, _), v in zip(missing, vectors)})
            self._unsaved += len(missing)
            if self._unsaved >= self.SAVE_EVERY:
                self.save()
        return np.stack([self.store[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        if self._unsaved:
            np.savez(self.path, **self.store)
            self._unsaved = 0
