"""The simulator's honest labeler: the nearest label definition by sentence embedding, with calibrated noise.

The keyword labeler (:mod:`.labeler`) scores the words of the label definitions, the very words the
sample generator writes its conversations with, so figures measured with it on generated data measure
the project against itself. This labeler matches no word list: each label's line of the prompt (name,
definition, example, as the request carries it) and the conversation are embedded with the local
sentence-embedding model (all-MiniLM-L6-v2 from the ``embeddings`` extra, offline), and the label whose
line is nearest by cosine wins. The conversation's vector is the weighted mean of its turns, cut into
windows the model reads whole, so the whole transcript counts, not only its first 256 word pieces.

A real model does not answer the nearest definition: it disagrees with it on a share of conversations
that depends on the classifier. So each label's similarity gets an offset, ``scale`` times a fixed,
smooth pseudo-random function of the conversation's vector (random Fourier features of an RBF kernel,
seeded by classifier and label). Each classifier's scale is calibrated (``calibration.json``) so that
the share of answers that differ from the nearest definition is the real model's measured
disagreement with it. Smooth: a conversation and a lightly truncated copy get nearly the same answer,
as from a model, while unrelated conversations draw independent offsets; and the offsets are no linear
function of an embedding, so an embedding classifier cannot learn them back.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semtel_dagster.sim.labeler import Chooser, turns

if TYPE_CHECKING:
    from semtel_dagster.core.prepare.embeddings import Embedder

CALIBRATION = Path(__file__).with_name("calibration.json")
CHUNK_WORDS = 120  # all-MiniLM-L6-v2 reads 256 word pieces: a window of 120 words fits whole
ASSISTANT_WEIGHT = 0.5  # what the user writes says more about intent, topic and expertise than the replies
FEATURES = 256  # random Fourier features of the noise function
# RBF length scale of the noise: offsets correlate 0.84 between conversations at cosine 0.98, 0.41 at
# 0.9 and about 0 between unrelated ones (cosine 0.3 or less)
FREQUENCY = 3.0
NOISE_SEED = 0  # one noise function for every endpoint: a pool's answers must not depend on which one answered
CACHE_TEXTS = 100_000  # chunk vectors kept (1.5 KB each)
LABELER_FEATURE = "the simulator's embedding labeler"


def label_text(label: str, definition: str) -> str:
    """What is embedded for a label: its prompt line without the bullet (``_`` read as a space)."""
    return f"{label.replace('_', ' ')}: {definition}".strip()


def chunks(conversation: str) -> list[tuple[float, str]]:
    """``(weight, text)`` windows of at most ``CHUNK_WORDS`` words per turn; user turns weigh 1."""
    out = []
    for is_user, text in turns(conversation):
        words = text.split()
        weight = 1.0 if is_user else ASSISTANT_WEIGHT
        out += [(weight, " ".join(words[i : i + CHUNK_WORDS])) for i in range(0, len(words), CHUNK_WORDS)]
    return out or [(1.0, "")]


@dataclass(frozen=True)
class Calibration:
    """Per classifier, the noise scale that makes the simulator disagree with the nearest definition as
    often as the real model measured did; a request names its classifier, or is matched by label set."""

    scales: dict[str, float]
    label_sets: dict[frozenset[str], str]

    def classifier(self, name: str | None, labels: Sequence[str]) -> str:
        """The calibrated classifier a request is for, else its name, else its label set."""
        if name in self.scales:
            return str(name)
        return self.label_sets.get(frozenset(labels)) or name or "|".join(sorted(labels))

    def scale(self, classifier: str) -> float:
        """The classifier's scale; a classifier never measured gets the median of those measured."""
        if classifier in self.scales:
            return self.scales[classifier]
        return statistics.median(self.scales.values()) if self.scales else 0.0


def load_calibration(path: Path | str | None = None) -> Calibration:
    """``calibration.json`` (or another file of the same shape): ``{"classifiers": {name: {"labels",
    "noise_scale", ...}}}``."""
    data = json.loads(Path(path or CALIBRATION).read_text(encoding="utf-8"))
    entries = data["classifiers"]
    return Calibration(
        scales={name: float(e["noise_scale"]) for name, e in entries.items()},
        label_sets={frozenset(e["labels"]): name for name, e in entries.items()},
    )


def _local_embedder() -> Embedder:
    from semtel_dagster.core.prepare.embeddings import LocalEmbedder

    return LocalEmbedder(progress=False, feature=LABELER_FEATURE)


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "little")


class EmbeddingLabeler:
    """Embeds texts once (a bounded cache), scores labels, and answers as a :data:`Chooser`."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder or _local_embedder()
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._labels: dict[tuple[str, ...], np.ndarray] = {}
        self._weights: dict[tuple[str, str], np.ndarray] = {}
        self._projection: np.ndarray | None = None
        self._phase = np.random.default_rng(NOISE_SEED).uniform(0.0, 2 * np.pi, FEATURES)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, each distinct text embedded once while it stays in the cache."""
        new = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if new:
            self._vectors.update(zip(new, np.asarray(self.embedder.embed(new), dtype=np.float64)))
            while len(self._vectors) > CACHE_TEXTS:
                self._vectors.popitem(last=False)
        for t in texts:
            self._vectors.move_to_end(t)
        return np.stack([self._vectors[t] for t in texts])

    def conversation_vector(self, conversation: str) -> np.ndarray:
        weighted = chunks(conversation)
        vectors = self.embed([text for _, text in weighted])
        mean = np.asarray([w for w, _ in weighted]) @ vectors
        return mean / (np.linalg.norm(mean) or 1.0)

    def label_vectors(self, definitions: Sequence[tuple[str, str]]) -> np.ndarray:
        key = tuple(label_text(label, d) for label, d in definitions)
        if key not in self._labels:
            self._labels[key] = self.embed(list(key))
        return self._labels[key]

    def _features(self, vector: np.ndarray) -> np.ndarray:
        if self._projection is None or self._projection.shape[1] != vector.shape[0]:
            self._projection = np.random.default_rng(NOISE_SEED + 1).standard_normal((FEATURES, vector.shape[0]))
        return np.sqrt(2.0 / FEATURES) * np.cos(FREQUENCY * (self._projection @ vector) + self._phase)

    def offsets(self, classifier: str, labels: Sequence[str], vector: np.ndarray) -> np.ndarray:
        """Per label, the noise function at ``vector``: about unit variance, smooth in ``vector``."""
        features = self._features(vector)
        for label in labels:
            if (classifier, label) not in self._weights:
                self._weights[classifier, label] = np.random.default_rng(_seed(classifier, label)).standard_normal(FEATURES)
        return np.asarray([self._weights[classifier, label] @ features for label in labels])

    def scores(self, classifier: str, definitions: Sequence[tuple[str, str]], conversation: str) -> tuple[np.ndarray, np.ndarray]:
        """(cosine of the conversation to each label's line, each label's unscaled offset)."""
        vector = self.conversation_vector(conversation)
        similarities = self.label_vectors(definitions) @ vector
        return similarities, self.offsets(classifier, [label for label, _ in definitions], vector)

    def chooser(self, calibration: Calibration, noise_scale: float | None = None) -> Chooser:
        """Answers with the calibrated scale of each classifier, or ``noise_scale`` for all (0: the
        nearest definition)."""

        def choose(name: str | None, definitions: Sequence[tuple[str, str]], conversation: str) -> str:
            if not definitions:
                return "other"
            labels = [label for label, _ in definitions]
            classifier = calibration.classifier(name, labels)
            similarities, offsets = self.scores(classifier, definitions, conversation)
            scale = calibration.scale(classifier) if noise_scale is None else noise_scale
            return labels[int(np.argmax(similarities + scale * offsets))]

        return choose


def agreement_with_nearest(similarities: np.ndarray, offsets: np.ndarray, scale: float) -> float:
    """Share of requests (rows) whose noisy answer is still the nearest definition."""
    return float((np.argmax(similarities + scale * offsets, axis=1) == np.argmax(similarities, axis=1)).mean())


def fit_noise_scale(similarities: np.ndarray, offsets: np.ndarray, target: float, largest: float = 2.0) -> float:
    """The smallest scale (steps of 0.002 up to ``largest``) whose agreement with the nearest definition
    is closest to ``target``: the real model's measured agreement with it."""
    scales = np.linspace(0.0, largest, 1001)
    gaps = [abs(agreement_with_nearest(similarities, offsets, float(s)) - target) for s in scales]
    return round(float(scales[int(np.argmin(gaps))]), 3)
