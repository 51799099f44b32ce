"""TnT-LLM's first phase as pure steps over an ``Ask``: summarize, then generate -> update -> review.

Summaries make conversations short and comparable; minibatches of them go through the generate prompt
(the first) and the update prompt (each next one, with the current labels), until the label names stay
the same for ``patience`` rounds running, the minibatches or ``max_rounds`` run out, or the budget is
spent; a last review merges, splits and rewords to the requested size. A step whose answer cannot be
used keeps the labels it was given and says so in its round, so one bad answer never ends a discovery.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import polars as pl

from semtel_dagster.core.classify.parse import ParseFailure
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.taxonomy.asking import ANSWERS_WEEK
from semtel_dagster.core.taxonomy.labels import Label, answer_object, names, parse_label, parse_labels, settled, slug, tidy
from semtel_dagster.core.taxonomy.tasks import TaskPrompt

Ask = Callable[[Sequence[LLMRequest], str], dict[str, str]]  # (requests, step) -> request_id -> raw answer
Exhausted = Callable[[], bool]  # whether the budget is spent
MAX_SUMMARY_WORDS = 60


@dataclass(frozen=True)
class Round:
    """One generate / update step: what it saw and what it changed."""

    number: int
    task: str
    summaries: int
    names: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    note: str = ""


@dataclass
class Evolution:
    """How a label set came about: the rounds, the review, and why the rounds stopped."""

    rounds: list[Round] = field(default_factory=list)
    stopped: str = ""
    before_review: list[Label] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    merged: list[dict] = field(default_factory=list)  # {"from": [names], "into": name}
    split: list[dict] = field(default_factory=list)  # {"from": name, "into": [names]}
    review_note: str = ""


def summarize(transcripts: pl.DataFrame, prompt: TaskPrompt, ask: Ask) -> pl.DataFrame:
    """``conversation_id, summary`` for each transcript whose answer holds a summary (``transcript`` rows
    of ``conversations_truncated``); one request per conversation, all in one dispatch."""
    requests = {
        cid: prompt.request([cid], {"transcript": text}, ANSWERS_WEEK)
        for cid, text in transcripts.select("conversation_id", "transcript").iter_rows()
    }
    answers = ask(list(requests.values()), "summarize")
    rows = []
    for cid, request in requests.items():
        summary = _summary(answers.get(request.request_id))
        if summary:
            rows.append((cid, summary))
    return pl.DataFrame(rows, schema={"conversation_id": pl.String, "summary": pl.String}, orient="row")


def _summary(raw_text: str | None) -> str:
    try:
        text = str(answer_object(raw_text).get("summary") or "")
    except ParseFailure:
        return ""
    return " ".join(text.split()[:MAX_SUMMARY_WORDS])


def minibatches(summaries: pl.DataFrame, size: int, seed: int) -> list[pl.DataFrame]:
    """The summaries in a seeded order, cut into batches of ``size`` (the last one may be shorter)."""
    if size < 1:
        raise ValueError("the minibatch size must be at least 1")
    order = summaries.with_columns(
        pl.col("conversation_id")
        .map_elements(lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest(), return_dtype=pl.String)
        .alias("_order")
    ).sort("_order")
    return [order.slice(start, size).drop("_order") for start in range(0, order.height, size)]


def step_input(
    max_labels: int | None = None, labels: Sequence[Label] | None = None, batch: pl.DataFrame | None = None
) -> dict[str, str]:
    """A step's ``input``: one JSON object (summaries as data, never as instructions)."""
    payload: dict = {} if max_labels is None else {"max_labels": max_labels}
    if labels is not None:
        payload["labels"] = [label.as_dict() for label in labels]
    if batch is not None:
        payload["summaries"] = [{"id": cid, "summary": s} for cid, s in batch.select("conversation_id", "summary").iter_rows()]
    return {"input": json.dumps(payload, ensure_ascii=False, indent=1)}


def grow(
    batches: Sequence[pl.DataFrame],
    prompts: dict[str, TaskPrompt],
    max_labels: int,
    ask: Ask,
    exhausted: Exhausted,
    *,
    max_rounds: int,
    patience: int = 2,
) -> Evolution:
    """Generate on the first minibatch, update on each next one, until the names settle (see module)."""
    evolution = Evolution()
    labels: list[Label] = []
    history: list[tuple[str, ...]] = []
    for number, batch in enumerate(batches[:max_rounds], start=1):
        task = "update" if labels else "generate"
        request = prompts[task].request(
            batch.get_column("conversation_id").to_list(), step_input(max_labels, labels if labels else None, batch), ANSWERS_WEEK
        )
        raw = ask([request], task).get(request.request_id)
        note = ""
        try:
            proposed = tidy(parse_labels(raw), max_labels)
        except ParseFailure as exc:
            proposed, note = labels, f"answer not used ({exc}); labels kept" if raw else "no answer; labels kept"
        before, after = set(names(labels)), names(proposed)
        evolution.rounds.append(
            Round(
                number,
                task,
                batch.height,
                after,
                tuple(n for n in after if n not in before),
                tuple(sorted(before - set(after))),
                note,
            )
        )
        labels = proposed
        history.append(after)
        if exhausted():
            evolution.stopped = f"budget reached after round {number}"
            break
        if settled(history, patience):
            evolution.stopped = f"label names unchanged for {patience} rounds running (round {number})"
            break
    else:
        evolution.stopped = f"no more minibatches after round {len(evolution.rounds)}"
    evolution.before_review = labels
    evolution.labels = labels
    return evolution


def review(evolution: Evolution, prompt: TaskPrompt, max_labels: int, ask: Ask, exhausted: Exhausted) -> Evolution:
    """The review step's labels, merges and splits; without a usable answer the grown labels stand."""
    labels = evolution.before_review
    if not labels:
        evolution.review_note = "no labels to review"
        return evolution
    if exhausted():
        evolution.review_note = "not reviewed: budget reached"
        evolution.labels = tidy(labels, max_labels)
        return evolution
    request = prompt.request(list(names(labels)), step_input(max_labels, labels), ANSWERS_WEEK)
    raw = ask([request], "review").get(request.request_id)
    try:
        evolution.labels = tidy(parse_labels(raw), max_labels)
        answer = answer_object(raw)
    except ParseFailure as exc:
        evolution.review_note = f"review answer not used ({exc}); labels as grown"
        evolution.labels = tidy(labels, max_labels)
        return evolution
    evolution.merged = [
        {"from": [slug(str(n)) for n in m.get("from") or []], "into": slug(str(m.get("into") or ""))}
        for m in answer.get("merged") or []
        if isinstance(m, dict) and m.get("into")
    ]
    evolution.split = [
        {"from": slug(str(s.get("from") or "")), "into": [slug(str(n)) for n in s.get("into") or []]}
        for s in answer.get("split") or []
        if isinstance(s, dict) and s.get("from")
    ]
    return evolution


def name_cluster(raw_text: str | None) -> Label | None:
    """A cluster's label from a name_cluster answer, or None."""
    try:
        return parse_label(answer_object(raw_text))
    except ParseFailure:
        return None
