"""The embedding-clustering baseline (Clio-style): embed the summaries, k-means them, let the LLM name
each cluster from the summaries nearest its centre.

It needs no rounds, so it costs one call per cluster after summarizing; its clusters are as good as the
embedding's notion of similarity, which is about wording more than about what the user needed. Two
clusters given the same name become one label (recorded as merged).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from semtel_dagster.core.taxonomy.labels import Label, names, slug, tidy
from semtel_dagster.core.taxonomy.rounds import Ask, Evolution, Round, name_cluster, step_input
from semtel_dagster.core.taxonomy.tasks import TaskPrompt
from semtel_dagster.extras import require

Embed = Callable[[list[str]], np.ndarray]
PER_CLUSTER = 10  # summaries shown to the namer, nearest the centre first


def kmeans(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each row, distance of each row to each centre); ``k`` capped at the rows."""
    cluster = require("sklearn.cluster", "embeddings", "the clustering baseline (scikit-learn k-means)")
    model = cluster.KMeans(n_clusters=max(1, min(k, len(vectors))), n_init=10, random_state=seed).fit(vectors)
    return model.labels_, model.transform(vectors)


def cluster_taxonomy(
    summaries: pl.DataFrame, embed: Embed, k: int, prompt: TaskPrompt, ask: Ask, seed: int
) -> tuple[Evolution, dict[str, str]]:
    """(the named clusters as an ``Evolution`` of one round, each summarized conversation's cluster label)."""
    from semtel_dagster.core.taxonomy.asking import ANSWERS_WEEK

    vectors = embed(summaries.get_column("summary").to_list())
    assigned, distances = kmeans(vectors, k, seed)
    requests = []
    for c in range(distances.shape[1]):
        members = np.flatnonzero(assigned == c)
        nearest = members[np.argsort(distances[members, c], kind="stable")][:PER_CLUSTER]
        batch = summaries[nearest.tolist()]
        requests.append(prompt.request(batch.get_column("conversation_id").to_list(), step_input(batch=batch), ANSWERS_WEEK))
    answers = ask(requests, "name_cluster")
    named = []
    for c, request in enumerate(requests):
        label = name_cluster(answers.get(request.request_id))
        if label is None:  # no usable name: the cluster still exists, named by its place
            first = summaries[int(np.flatnonzero(assigned == c)[0])]["summary"].item()
            label = Label(f"cluster_{c + 1}", f"Conversations like: {first}", first)
        named.append(label)
    labels = tidy(named)
    groups: dict[str, list[int]] = {}
    for c, label in enumerate(named):
        groups.setdefault(label.name, []).append(c + 1)
    evolution = Evolution(
        rounds=[Round(1, "name_cluster", summaries.height, names(labels), names(labels), ())],
        stopped=f"k-means into {len(named)} clusters, each named once",
        before_review=labels,
        labels=labels,
        merged=[
            {"from": [f"cluster_{c}" for c in members], "into": name} for name, members in groups.items() if len(members) > 1
        ],
    )
    ids = summaries.get_column("conversation_id").to_list()
    return evolution, {cid: slug(named[c].name) for cid, c in zip(ids, assigned)}
