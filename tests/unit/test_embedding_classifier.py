"""Embedding classification (core/embedding_classifier.py): calibration, split, versioned artifacts."""

import numpy as np
import pytest

from semtel_dagster.core.classify.embedding_classifier import (
    calibrate_threshold,
    load_latest,
    save,
    split_by_confidence,
    train,
)


def _blobs(n=300, noise=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 16)) * 2
    y = rng.integers(0, 3, n)
    x = centers[y] + noise * rng.standard_normal((n, 16))
    return x.astype(np.float32), [f"label{k}" for k in y]


def test_calibrate_threshold_picks_lowest_confidence_meeting_target():
    conf = np.array([0.99, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, False])
    assert calibrate_threshold(conf, correct, 0.75) == (0.7, 0.75, 0.8)
    assert calibrate_threshold(conf, correct, 1.0) == (0.8, 1.0, 0.6)
    assert calibrate_threshold(conf, np.zeros(5, bool), 0.5)[2] == 0.0


def test_train_split_and_store_roundtrip(tmp_path):
    x, y = _blobs()
    model = train("topic", x, y, prompt_version="v1", llm_model="m", embedder="e", target_agreement=0.97)
    assert model.card.heldout_agreement >= 0.97 and 0 < model.card.heldout_coverage <= 1
    xt, yt = _blobs(100, seed=0)
    confident, to_llm = split_by_confidence(model, [f"c{i}" for i in range(100)], xt)
    assert confident.height + len(to_llm) == 100
    truth = dict(zip([f"c{i}" for i in range(100)], yt))
    agree = np.mean([truth[c] == label for c, label in confident.select("conversation_id", "label").iter_rows()])
    assert agree >= 0.9
    folder = save(model, tmp_path)
    assert folder == tmp_path / "_models" / "topic" / model.card.version
    loaded = load_latest(tmp_path, "topic", "v1", "m", "e")
    assert loaded.card == model.card and (loaded.predict(xt)[0] == model.predict(xt)[0]).all()
    assert load_latest(tmp_path, "topic", "v2", "m", "e") is None  # a new prompt version never reuses it


def test_train_needs_two_labels():
    x, _ = _blobs(20)
    with pytest.raises(ValueError, match="two labels"):
        train("t", x, ["a"] * 20, prompt_version="v", llm_model="m", embedder="e")
