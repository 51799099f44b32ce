"""Embedders (core/embeddings.py): the real local model, and the simulator's /v1/embeddings over HTTP."""

import numpy as np
import pytest

from semtel_dagster.core.prepare.embeddings import OnceEmbedder, OpenAIEmbedder
from semtel_dagster.sim import SimulatorThread
from semtel_dagster.sim.embeddings import hashed_embedding


def test_local_model_puts_paraphrases_closer_than_unrelated(local_embedder):
    v = local_embedder.embed(
        ["How do I reset my password?", "I forgot my password, how can I change it?", "Write a poem about the sea."]
    )
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]
    assert local_embedder.stats.texts_per_second > 0


def test_local_model_keeps_input_order(local_embedder):
    texts = ["a much longer sentence about cooking pasta at home", "short", "medium length text here"]
    together = local_embedder.embed(texts)
    alone = np.vstack([local_embedder.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_simulator_embeddings_over_http():
    with SimulatorThread() as sim:
        embedder = OpenAIEmbedder(base_url=sim.base_url(), model="sim-embed", batch_size=2, progress=False)
        v = embedder.embed(["tax refund form", "Tax refund forms!", "quantum chromodynamics"])
    assert v.shape == (3, 384)
    assert v[0] @ v[1] == pytest.approx(1.0, abs=1e-5)  # same words after stemming and case folding
    assert abs(v[0] @ v[2]) < 0.3
    assert hashed_embedding("tax refund form") == hashed_embedding("tax refund form")  # deterministic


def test_once_embedder_embeds_each_distinct_text_once():
    with SimulatorThread() as sim:
        inner = OpenAIEmbedder(base_url=sim.base_url(), model="sim-embed", progress=False)
        once = OnceEmbedder(inner)
        first = once.embed(["alpha beta", "gamma", "alpha beta"])
        second = once.embed(["gamma", "delta epsilon"])
        assert inner.stats.texts == 3  # alpha beta, gamma, delta epsilon
        assert once.name == inner.name
        assert np.array_equal(first[0], first[2]) and np.array_equal(first[1], second[0])
        assert np.allclose(second, OpenAIEmbedder(base_url=sim.base_url(), model="sim-embed").embed(["gamma", "delta epsilon"]))
