"""The classify stage without I/O: which requests a week needs, and streaming their answers out.

Only cluster representatives are sent. Every request has a stable id (conversations, classifiers,
prompt version), so a rerun skips what was already answered by a model of the pool and only repeats
calls whose answers had not been flushed when the previous run stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl

from semtel_dagster.core.dispatch import STATUS_OK, Dispatcher, DispatchStats, LLMRequest, request_id
from semtel_dagster.core.prompts import Classifier
from semtel_dagster.core.tokens import count_tokens

# Chat formatting adds a few tokens per message beyond the text itself.
_MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True)
class ClassifyPlan:
    """The requests a week needs, split into already answered and still to send."""

    total: int
    answered: int
    to_send: list[LLMRequest]


def representatives(clusters: pl.DataFrame, truncated: pl.DataFrame) -> pl.DataFrame:
    return (
        clusters.filter(pl.col("is_representative"))
        .select("conversation_id", "week_start")
        .join(truncated.select("conversation_id", "transcript", "tokens_after"), on="conversation_id", how="inner")
        .sort("conversation_id")
    )


def expected_request_ids(clusters: pl.DataFrame, classifiers: dict[str, Classifier]) -> pl.DataFrame:
    """(representative_id, classifier, request_id) for every request the week needs."""
    reps = clusters.filter(pl.col("is_representative")).get_column("conversation_id").sort().to_list()
    return pl.DataFrame(
        [
            (rep, name, request_id([rep], [name], classifier.version))
            for rep in reps
            for name, classifier in classifiers.items()
        ],
        schema={"representative_id": pl.String, "classifier": pl.String, "request_id": pl.String},
        orient="row",
    )


def plan_requests(
    clusters: pl.DataFrame,
    truncated: pl.DataFrame,
    classifiers: dict[str, Classifier],
    answered_ids: set[str],
) -> ClassifyPlan:
    """One request per representative x classifier, minus those already answered."""
    base_tokens = {
        name: sum(count_tokens(m["content"]) + _MESSAGE_OVERHEAD_TOKENS for m in c.messages(""))
        for name, c in classifiers.items()
    }
    to_send: list[LLMRequest] = []
    total = 0
    for conversation_id, week_start, transcript, tokens in representatives(clusters, truncated).iter_rows():
        for name, classifier in classifiers.items():
            total += 1
            rid = request_id([conversation_id], [name], classifier.version)
            if rid in answered_ids:
                continue
            to_send.append(
                LLMRequest(
                    request_id=rid,
                    week_start=week_start,
                    conversation_ids=(conversation_id,),
                    classifiers=(name,),
                    prompt_name=name,
                    prompt_version=classifier.version,
                    messages=classifier.messages(transcript),
                    response_format=classifier.response_format(),
                    max_tokens=classifier.max_tokens,
                    temperature=classifier.temperature,
                    prompt_tokens=base_tokens[name] + tokens,
                )
            )
    return ClassifyPlan(total=total, answered=total - len(to_send), to_send=to_send)


def answered_request_ids(responses: pl.DataFrame, models: set[str]) -> set[str]:
    """Requests already answered successfully by one of the pool's models."""
    done = responses.filter((pl.col("status") == STATUS_OK) & pl.col("model").is_in(sorted(models)))
    return set(done.get_column("request_id").to_list())


def latest_per_request(responses: pl.DataFrame) -> pl.DataFrame:
    """One row per request id: a success beats a failure, then the newest wins."""
    return (
        responses.sort(
            [pl.col("status") == STATUS_OK, pl.col("created_at")], descending=[True, True], nulls_last=True
        )
        .unique(subset="request_id", keep="first", maintain_order=True)
        .sort("request_id")
    )


async def dispatch_streaming(
    dispatcher: Dispatcher,
    requests: Iterator[LLMRequest] | list[LLMRequest],
    write_batch: Callable[[list[dict]], None],
    *,
    flush_rows: int = 200,
    flush_seconds: float = 2.0,
    on_progress: Callable[[int, DispatchStats], None] | None = None,
) -> DispatchStats:
    """Dispatch while a background task commits answers every ``flush_rows`` rows or ``flush_seconds``.

    Commits run in a worker thread so slow storage never stalls the requests in flight; a crash loses
    at most the rows of one flush interval, which the rerun asks again.
    """
    pending: list[dict] = []
    wake = asyncio.Event()
    finished = asyncio.Event()
    done = 0

    def on_result(row: dict) -> None:
        nonlocal done
        pending.append(row)
        done += 1
        if len(pending) >= flush_rows:
            wake.set()
        if on_progress:
            on_progress(done, dispatcher.stats)

    async def flusher() -> None:
        while True:
            try:
                await asyncio.wait_for(wake.wait(), timeout=flush_seconds)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            batch = pending[:]
            del pending[: len(batch)]
            if batch:
                await asyncio.to_thread(write_batch, batch)
            if finished.is_set() and not pending:
                return

    flush_task = asyncio.create_task(flusher())
    try:
        stats = await dispatcher.run(requests, on_result)
    finally:
        finished.set()
        wake.set()
        await flush_task
    return stats


def run_dispatch(
    plan: ClassifyPlan,
    dispatcher: Dispatcher,
    write_batch: Callable[[list[dict]], None],
    *,
    flush_rows: int,
    flush_seconds: float,
    on_progress: Callable[[int, DispatchStats], None] | None = None,
) -> DispatchStats:
    """Synchronous entry point for callers without an event loop (Dagster steps, the CLI)."""
    return asyncio.run(
        dispatch_streaming(
            dispatcher,
            plan.to_send,
            write_batch,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
            on_progress=on_progress,
        )
    )
