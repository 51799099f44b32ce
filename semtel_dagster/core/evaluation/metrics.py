"""Evaluation metrics for classifiers: pure functions over label lists and Polars frames.

Used to compare two configurations on the same sample (prompt A vs B, model X vs Y, batching 1 vs 2)
and to score a configuration against human labels. No I/O here; ``core/experiment.py`` runs the
configurations and ``core/eval_report.py`` writes the report.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import narwhals.stable.v2 as nw
import polars as pl

from semtel_dagster.core.classify.parse import NO_RESPONSE, REQUEST_FAILED
from semtel_dagster.core.lake.frames import collect_small


def raw_agreement(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of items with the same label (items where either side has no label are left out by callers)."""
    if len(a) != len(b):
        raise ValueError("label lists differ in length")
    return sum(x == y for x, y in zip(a, b)) / len(a) if a else float("nan")


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Agreement corrected for chance: (p_o - p_e) / (1 - p_e); 1.0 when both sides use one identical label."""
    if not a:
        return float("nan")
    observed = raw_agreement(a, b)
    count_a, count_b, n = Counter(a), Counter(b), len(a)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def confusion_matrix(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``m[i][j]`` = items with ``labels[i]`` on the first side and ``labels[j]`` on the second."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for x, y in zip(truth, predicted):
        if x in index and y in index:
            matrix[index[x]][index[y]] += 1
    return matrix


def distribution(labels: Sequence[str] | Mapping[str, int], label_set: Sequence[str]) -> list[float]:
    """Share of each label of ``label_set``, from the labels or from counts per label."""
    counts = Counter(labels)
    total = sum(counts[label] for label in label_set)
    return [counts[label] / total if total else 0.0 for label in label_set]


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits (0: same distribution, 1: disjoint)."""

    def kl(x, y):
        return sum(xi * math.log2(xi / yi) for xi, yi in zip(x, y) if xi > 0)

    m = [(pi + qi) / 2 for pi, qi in zip(p, q)]
    return max(0.0, (kl(p, m) + kl(q, m)) / 2)


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return raw_agreement(truth, predicted)


def macro_f1(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Unweighted mean of per-label F1 over the labels present in the truth (or ``labels``)."""
    labels = list(labels) if labels is not None else sorted(set(truth))
    scores = []
    for label in labels:
        tp = sum(t == label and p == label for t, p in zip(truth, predicted))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else float("nan")


def stratified_sample(frame: pl.DataFrame, by: str, n: int, seed: int = 0, id_column: str = "conversation_id") -> pl.DataFrame:
    """A fixed sample of about ``n`` rows with every stratum in proportion (at least one row each).

    Rows are ranked by a seeded hash of their id, so the same input and seed give the same sample on
    every machine, and growing ``n`` only adds rows.
    """
    if frame.height <= n:
        return frame
    ranked = frame.with_columns(
        pl.col(id_column)
        .map_elements(lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest(), return_dtype=pl.String)
        .alias("_rank")
    )
    shares = ranked.group_by(by).len()
    quota = {key: max(1, round(n * count / frame.height)) for key, count in shares.iter_rows()}
    return (
        ranked.sort("_rank")
        .with_columns(pl.col("_rank").cum_count().over(by).alias("_order"))
        .filter(pl.col("_order") <= pl.col(by).replace_strict(quota, return_dtype=pl.Int64))
        .drop("_rank", "_order")
        .sort(id_column)
    )


def compare_labels(a: pl.DataFrame, b: pl.DataFrame, labels: Sequence[str]) -> dict:
    """Agreement of two labelings of the same conversations for one classifier (``conversation_id, label``)."""
    joined = a.select("conversation_id", pl.col("label").alias("a")).join(
        b.select("conversation_id", pl.col("label").alias("b")), on="conversation_id", how="inner"
    )
    la, lb = joined.get_column("a").to_list(), joined.get_column("b").to_list()
    return {
        "compared": joined.height,
        "raw_agreement": raw_agreement(la, lb),
        "cohen_kappa": cohen_kappa(la, lb),
        "js_divergence": jensen_shannon(
            distribution(a.get_column("label").to_list(), labels), distribution(b.get_column("label").to_list(), labels)
        ),
        "confusion": confusion_matrix(la, lb, labels),
    }


def score_against_truth(predicted: pl.DataFrame, truth: pl.DataFrame, labels: Sequence[str]) -> dict:
    """Accuracy and macro-F1 of labels against human labels; a missing prediction counts as wrong."""
    joined = (
        truth.select("conversation_id", pl.col("label").alias("truth"))
        .join(predicted.select("conversation_id", pl.col("label").alias("predicted")), on="conversation_id", how="left")
        .with_columns(pl.col("predicted").fill_null("<no label>"))
    )
    t, p = joined.get_column("truth").to_list(), joined.get_column("predicted").to_list()
    return {
        "items": joined.height,
        "accuracy": accuracy(t, p),
        "macro_f1": macro_f1(t, p, sorted(set(t))),
        "confusion": confusion_matrix(t, p, labels),
    }


def run_costs(responses: pl.DataFrame, rejects: pl.DataFrame, pairs: int, conversations: int) -> dict:
    """Calls and tokens per conversation, parse-failure rate and reject share of one run."""
    ok = responses.filter(pl.col("status") == "ok")
    parse_failures = rejects.filter(
        ~pl.col("reason").str.starts_with(REQUEST_FAILED) & ~pl.col("reason").str.starts_with(NO_RESPONSE)
    ).height
    return {
        "calls": responses.height,
        "calls_per_conversation": responses.height / conversations if conversations else float("nan"),
        "prompt_tokens_per_conversation": ok.get_column("prompt_tokens").sum() / conversations if conversations else float("nan"),
        "completion_tokens_per_conversation": ok.get_column("completion_tokens").sum() / conversations
        if conversations
        else float("nan"),
        "parse_failure_rate": parse_failures / pairs if pairs else 0.0,
        "reject_share": rejects.height / pairs if pairs else 0.0,
    }


@nw.narwhalify
def label_quality(classifications, rejects):
    """Per classifier: pairs, parse-failure rate (answers with no valid label) and reject share (any reason).

    Frames of either engine (``core.frames``); the result is a frame of the same kind, one row per classifier.
    """
    outcomes = nw.concat(
        [
            classifications.select("classifier", nw.lit(None, nw.String).alias("reason")),
            rejects.select("classifier", "reason"),
        ]
    )
    reason = nw.col("reason")
    parse_failure = ~reason.is_null() & ~reason.str.starts_with(REQUEST_FAILED) & ~reason.str.starts_with(NO_RESPONSE)
    return (
        outcomes.group_by("classifier")
        .agg(
            nw.len().alias("pairs"),
            parse_failure.cast(nw.Float64).mean().alias("parse_failure_rate"),
            (~reason.is_null()).cast(nw.Float64).mean().alias("reject_share"),
        )
        .sort("classifier")
    )


def label_drift(current, previous) -> pl.DataFrame:
    """Per classifier labeled in both weeks: Jensen-Shannon divergence of the label distributions.

    ``current`` and ``previous`` are two weeks of ``weekly_insights`` (conversations per classifier and
    label), on either engine: the drift check reads exactly the weeks its asset declares.
    """
    now, before = _label_counts(current), _label_counts(previous)
    rows = []
    for name in sorted(now.keys() & before.keys()):
        labels = sorted(now[name].keys() | before[name].keys())
        js = jensen_shannon(distribution(now[name], labels), distribution(before[name], labels))
        rows.append((name, sum(now[name].values()), sum(before[name].values()), js))
    return pl.DataFrame(
        rows,
        schema={"classifier": pl.String, "labeled": pl.Int64, "labeled_previous": pl.Int64, "js_divergence": pl.Float64},
        orient="row",
    )


def _label_counts(insights) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for classifier, label, n in collect_small(insights.select("classifier", "label", "conversations")).iter_rows():
        counts.setdefault(classifier, {})[label] = n
    return counts
