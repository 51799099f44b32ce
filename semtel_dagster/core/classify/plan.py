"""The classify stage without I/O: which requests a week needs, and streaming their answers out.

Only cluster representatives are sent. Every request has a stable id (conversations, classifiers,
prompt version), so a rerun skips what was already answered by a model of the pool and only repeats
calls whose answers had not been flushed when the previous run stopped.

Batching strategies trade calls and prompt tokens against answer quality: one conversation x one
classifier per call, one conversation x every classifier (one combined schema), or several
conversations x one classifier (ids in, ids out). Pairs a batched answer misses are re-asked alone.

Pairs already answered by a call-saving step (a label reused from an earlier week, a confident
embedding classifier) are *pre-answered*: they leave the unit that would have carried them, and the
unit keeps its other pairs. Units are cut from the week's representatives, not from the pairs still to
ask, so a pre-answered pair changes the id of its own unit only and every other request id stays put
on reruns. The transcript tokens of a pre-answered pair are saved; under ``multi_conversation`` the
call itself is saved only when its whole chunk is pre-answered.

The plan streams: requests are built one at a time as the dispatcher pulls them, and transcripts are
read from the week's representatives a block at a time, so planning memory does not grow with the week.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import polars as pl

from semtel_dagster.core.classify.prompts import (
    LAYOUT_CONVERSATION_FIRST,
    Classifier,
    answer_max_tokens,
    multi_classifier_label_version,
    multi_classifier_messages,
    multi_classifier_response_format,
    multi_classifier_version,
    multi_conversation_messages,
    multi_conversation_response_format,
    multi_conversation_version,
)
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.requests import STATUS_OK, LLMRequest, request_id
from semtel_dagster.core.llm.stats import DispatchStats
from semtel_dagster.core.prepare.tokens import count_tokens

# Single requests go classifier by classifier over runs of this many representatives: consecutive requests
# share their prompt's prefix, which a server that caches it (llama.cpp, vLLM, hosted prompt caching) does not
# compute again; measured on llama-cpp-python, a topic request took 1.9 s after another topic request and 7-8 s
# after other classifiers'. Runs keep the transcript lookups within one block (``TranscriptWindow``).
PREFIX_RUN = 64
# Chat formatting adds a few tokens per message beyond the text itself.
_MESSAGE_OVERHEAD_TOKENS = 4

STRATEGY_SINGLE = "single"  # one conversation x one classifier per call
STRATEGY_MULTI_CLASSIFIER = "multi_classifier"  # one conversation x every classifier (one combined schema)
STRATEGY_MULTI_CONVERSATION = "multi_conversation"  # several conversations x one classifier (ids in, ids out)
STRATEGIES = (STRATEGY_SINGLE, STRATEGY_MULTI_CLASSIFIER, STRATEGY_MULTI_CONVERSATION)
STRATEGY_FOLLOWUP = "followup"  # recorded on single re-asks of pairs a batched answer missed
STRATEGY_REUSE = "label_reuse"  # a label of the same text from an earlier week (core.reuse)
STRATEGY_EMBEDDING = "embedding_classifier"  # a confident embedding classifier (core.embedding_classifier)


def local_answer(
    week_start: dt.date,
    conversation_id: str,
    classifier: str,
    prompt_version: str,
    model: str,
    answer: dict,
    source: str,
    created_at: dt.datetime,
) -> dict:
    """An ``llm_responses`` row answered without a call (``source``: label reuse or an embedding
    classifier), standing in for the pair's single request under ``prompt_version`` (same request id),
    so parse, gates and resume treat it as any answer."""
    return {
        "request_id": request_id([conversation_id], [classifier], prompt_version),
        "week_start": week_start,
        "conversation_ids": [conversation_id],
        "classifiers": [classifier],
        "prompt_name": classifier,
        "prompt_version": prompt_version,
        "model": model,
        "endpoint": source,
        "status": STATUS_OK,
        "error": None,
        "finish_reason": "stop",
        "raw_text": json.dumps(answer),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "latency_ms": 0.0,
        "attempts": 0,
        "rate_limited": 0,
        "created_at": created_at,
        "strategy": source,
    }


CALL_SAVING = (STRATEGY_REUSE, STRATEGY_EMBEDDING)  # steps that answer pairs before any LLM call
DEFAULT_BATCH_SIZE = 8

Pair = tuple[str, str]  # (representative_id, classifier)


@dataclass(frozen=True)
class ClassifyPlan:
    """The requests a week needs, split into already answered and still to send.

    ``to_send`` is consumed once (a lazy stream from ``plan_requests``); ``sending`` counts it up front.
    """

    total: int
    answered: int
    to_send: Iterable[LLMRequest]

    @property
    def sending(self) -> int:
        return self.total - self.answered


def representatives(clusters: pl.DataFrame, truncated: pl.DataFrame) -> pl.DataFrame:
    return (
        clusters.filter(pl.col("is_representative"))
        .select("conversation_id", "week_start")
        .join(truncated.select("conversation_id", "transcript", "tokens_after"), on="conversation_id", how="inner")
        .sort("conversation_id")
    )


@dataclass(frozen=True)
class Unit:
    """One LLM call's worth of work: conversations x classifiers under one prompt version."""

    conversation_ids: tuple[str, ...]
    classifiers: tuple[str, ...]
    prompt_version: str
    strategy: str

    @property
    def request_id(self) -> str:
        return request_id(self.conversation_ids, self.classifiers, self.prompt_version)


def _single(rep: str, classifier: Classifier, strategy: str = STRATEGY_SINGLE) -> Unit:
    return Unit((rep,), (classifier.name,), classifier.version, strategy)


def batch_width(strategy: str, batch_size: int) -> int:
    """Representatives that must be planned together (a distributed engine keeps them in one task)."""
    return batch_size if strategy == STRATEGY_MULTI_CONVERSATION else 1


def plan_units(
    reps: Sequence[str] | pl.Series,
    classifiers: dict[str, Classifier],
    strategy: str,
    batch_size: int,
    preanswered: set[Pair] | frozenset[Pair] = frozenset(),
) -> list[Unit]:
    """How the week's representative x classifier pairs are grouped into calls (deterministic).

    ``reps`` are sorted; ``multi_conversation`` cuts them into chunks of ``batch_size``. A group of one
    pair is always a plain single request, so it shares its id with the single strategy. Pre-answered
    pairs are left out of their unit (see the module docstring).
    """
    return list(iter_units(reps, classifiers, strategy, batch_size, preanswered))


def iter_units(
    reps: Sequence[str] | pl.Series,
    classifiers: dict[str, Classifier],
    strategy: str,
    batch_size: int,
    preanswered: set[Pair] | frozenset[Pair] = frozenset(),
) -> Iterator[Unit]:
    """``plan_units`` one unit at a time, for a week too large to hold its units."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown batching strategy {strategy!r}; choose one of {STRATEGIES}")
    if strategy == STRATEGY_MULTI_CONVERSATION:
        for name, classifier in classifiers.items():
            version = multi_conversation_version(classifier)
            for start in range(0, len(reps), batch_size):
                chunk = tuple(rep for rep in reps[start : start + batch_size] if (rep, name) not in preanswered)
                if len(chunk) > 1:
                    yield Unit(chunk, (name,), version, strategy)
                elif chunk:
                    yield _single(chunk[0], classifier)
        return
    if strategy == STRATEGY_SINGLE:
        for start in range(0, len(reps), PREFIX_RUN):
            run = reps[start : start + PREFIX_RUN]
            for group in _single_order(run, list(classifiers.values())):
                yield from (_single(rep, classifier) for rep, classifier in group if (rep, classifier.name) not in preanswered)
        return
    combined: dict[tuple[str, ...], str] = {}
    for rep in reps:
        names = tuple(name for name in classifiers if (rep, name) not in preanswered)
        if len(names) == 1:
            yield from (_single(rep, classifiers[name]) for name in names)
        elif names:
            if names not in combined:
                combined[names] = multi_classifier_version([classifiers[name] for name in names])
            yield Unit((rep,), names, combined[names], strategy)


def _single_order(run: Sequence[str] | pl.Series, classifiers: list[Classifier]) -> Iterator[list[tuple[str, Classifier]]]:
    """The order of a run's single requests, as groups that share a prompt prefix.

    ``classifier_first``: classifier by classifier (the shared prefix is the classifier's instructions).
    ``conversation_first``: the first classifier over the run, then the other classifiers conversation by
    conversation: a provider caches a prefix once a request carrying it was processed, so the first pass
    writes every conversation's prefix before the five that read it, and a serial server keeps one
    conversation in its KV cache over those five.
    """
    if not classifiers or classifiers[0].layout != LAYOUT_CONVERSATION_FIRST:
        yield from ([(rep, classifier) for rep in run] for classifier in classifiers)
        return
    first, *others = classifiers
    yield [(rep, first) for rep in run]
    yield from ([(rep, classifier) for classifier in others] for rep in run)


def expected_request_ids(
    clusters: pl.DataFrame,
    classifiers: dict[str, Classifier],
    strategy: str = STRATEGY_SINGLE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    preanswered: set[Pair] | frozenset[Pair] = frozenset(),
) -> pl.DataFrame:
    """(representative_id, classifier, request_id, single_request_id) for every pair the week needs.

    ``request_id`` is the call that carries the pair (for a pre-answered pair, the single request its
    stored answer stands in for); ``single_request_id`` the follow-up that re-asks it alone when a
    batched answer did not yield its label (the same id for the single strategy).
    """
    reps = clusters.filter(pl.col("is_representative")).get_column("conversation_id").sort().to_list()
    rows = [
        (rep, name, unit.request_id, _single(rep, classifiers[name]).request_id)
        for unit in plan_units(reps, classifiers, strategy, batch_size, preanswered)
        for rep in unit.conversation_ids
        for name in unit.classifiers
    ]
    known = set(reps)
    rows += [
        (rep, name, single, single)
        for rep, name in preanswered
        if rep in known and name in classifiers
        for single in [_single(rep, classifiers[name]).request_id]
    ]
    return pl.DataFrame(
        rows,
        schema={"representative_id": pl.String, "classifier": pl.String, "request_id": pl.String, "single_request_id": pl.String},
        orient="row",
    ).sort("representative_id", "classifier")


def preanswered_pairs(responses: pl.DataFrame, classifiers: dict[str, Classifier]) -> set[Pair]:
    """Pairs a call-saving step answered under the classifier's current prompt (never sent to the LLM).

    Read from the stored rows themselves, so planning, parsing and the gates agree without being told.
    """
    current = pl.DataFrame(
        {"classifier": list(classifiers), "prompt_version": [c.version for c in classifiers.values()]},
        schema={"classifier": pl.String, "prompt_version": pl.String},
    )
    saved = responses.filter((pl.col("status") == STATUS_OK) & pl.col("strategy").is_in(CALL_SAVING)).select(
        pl.col("conversation_ids").list.first().alias("representative_id"),
        pl.col("classifiers").list.first().alias("classifier"),
        "prompt_version",
    )
    return set(saved.join(current, on=["classifier", "prompt_version"]).select("representative_id", "classifier").iter_rows())


def label_versions(classifiers: dict[str, Classifier]) -> dict[str, frozenset[str]]:
    """Every prompt version a label of each classifier carries under the current prompts: asked alone, in
    a batch of conversations, or with other classifiers (one version whatever shared the call, see
    ``prompts.multi_classifier_label_version``). Labels of earlier weeks are reused or learned from only
    under one of these: three per classifier.
    """
    return {
        name: frozenset({c.version, multi_conversation_version(c), multi_classifier_label_version(c)})
        for name, c in classifiers.items()
    }


TRANSCRIPT_BLOCK_ROWS = 4096  # representatives' transcripts the plan holds at once


class TranscriptWindow:
    """(transcript, tokens) by representative id, read from the sorted representatives a block at a time.

    Requests are built in id order (once per classifier under ``multi_conversation``, and over runs of
    ``PREFIX_RUN`` under ``single``), so nearly every
    lookup hits the block in hand and memory stays one block whatever the week's size.
    """

    def __init__(self, reps: pl.DataFrame, block_rows: int) -> None:
        self._reps = reps.select("conversation_id", "transcript", "tokens_after")
        self._ids = self._reps.get_column("conversation_id")
        self._block_rows = block_rows
        self._block: dict[str, tuple[str, int]] = {}

    def __getitem__(self, conversation_id: str) -> tuple[str, int]:
        found = self._block.get(conversation_id)
        if found is None:
            start = self._ids.search_sorted(conversation_id, side="left")
            if start >= len(self._ids) or self._ids[start] != conversation_id:
                raise KeyError(conversation_id)
            block = self._reps.slice(start, self._block_rows)
            self._block = {cid: (text, tokens) for cid, text, tokens in block.iter_rows()}
            found = self._block[conversation_id]
        return found


def _build_request(
    unit: Unit, week_start, transcripts: TranscriptWindow, classifiers: dict[str, Classifier], structured: bool
) -> LLMRequest:
    """The chat request of a unit; without structured outputs the JSON format is asked for in the text only."""
    chosen = [classifiers[name] for name in unit.classifiers]
    if len(unit.conversation_ids) == 1 and len(chosen) == 1:
        # One classifier reads the transcript cut to its own budget, if its prompt file sets one.
        text, transcript_tokens = chosen[0].fit(*transcripts[unit.conversation_ids[0]])
        messages = chosen[0].messages(text)
        response_format = chosen[0].response_format()
        max_tokens = chosen[0].max_tokens
        prompt_tokens = _base_tokens(chosen[0]) + transcript_tokens
    else:  # batches share the stage's transcripts
        if len(unit.conversation_ids) > 1:
            classifier = chosen[0]
            items = [(cid, transcripts[cid][0]) for cid in unit.conversation_ids]
            messages = multi_conversation_messages(classifier, items)
            response_format = multi_conversation_response_format(classifier, list(unit.conversation_ids))
            max_tokens = answer_max_tokens(response_format, array_items=len(items))
        else:
            messages = multi_classifier_messages(chosen, transcripts[unit.conversation_ids[0]][0])
            response_format = multi_classifier_response_format(chosen)
            max_tokens = answer_max_tokens(response_format)
        prompt_tokens = sum(count_tokens(m["content"]) for m in messages)
    return LLMRequest(
        request_id=unit.request_id,
        week_start=week_start,
        conversation_ids=unit.conversation_ids,
        classifiers=unit.classifiers,
        prompt_name="+".join(unit.classifiers),
        prompt_version=unit.prompt_version,
        messages=messages,
        response_format=response_format if structured else None,
        max_tokens=max_tokens,
        temperature=max(c.temperature for c in chosen),
        prompt_tokens=prompt_tokens + _MESSAGE_OVERHEAD_TOKENS * len(messages),
        strategy=unit.strategy,
    )


_BASE_TOKENS: dict[str, int] = {}


def _base_tokens(classifier: Classifier) -> int:
    """Tokens of a classifier's prompt without the transcript (once per prompt version)."""
    if classifier.version not in _BASE_TOKENS:
        probe = "\u2063"  # in no prompt's wording: the layout finds the transcript's message by its text
        rendered = sum(count_tokens(m["content"]) for m in classifier.messages(probe))
        _BASE_TOKENS[classifier.version] = rendered - count_tokens(probe)
    return _BASE_TOKENS[classifier.version]


def plan_requests(
    clusters: pl.DataFrame,
    truncated: pl.DataFrame,
    classifiers: dict[str, Classifier],
    answered_ids: set[str],
    *,
    strategy: str = STRATEGY_SINGLE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    structured: bool = True,
    followups: set[Pair] | frozenset[Pair] = frozenset(),
    preanswered: set[Pair] | frozenset[Pair] = frozenset(),
) -> ClassifyPlan:
    """The week's calls under ``strategy``, plus single follow-ups for ``followups`` pairs, minus answered ones.

    Units are counted in one pass; the requests are built lazily in a second as ``to_send`` is consumed.
    """
    reps = representatives(clusters, truncated)
    week_start = reps.get_column("week_start").first() if reps.height else None
    ids = reps.get_column("conversation_id")
    ordered_followups = sorted(followups)

    def units() -> Iterator[Unit]:
        yield from iter_units(ids, classifiers, strategy, batch_size, preanswered)
        yield from (_single(rep, classifiers[name], STRATEGY_FOLLOWUP) for rep, name in ordered_followups)

    total = answered = 0
    for unit in units():
        total += 1
        answered += unit.request_id in answered_ids

    def to_send() -> Iterator[LLMRequest]:
        transcripts = TranscriptWindow(reps, TRANSCRIPT_BLOCK_ROWS)
        for unit in units():
            if unit.request_id not in answered_ids:
                yield _build_request(unit, week_start, transcripts, classifiers, structured)

    return ClassifyPlan(total=total, answered=answered, to_send=to_send())


def answered_request_ids(responses: pl.DataFrame, models: set[str]) -> set[str]:
    """Requests already answered successfully by one of the pool's models."""
    done = responses.filter((pl.col("status") == STATUS_OK) & pl.col("model").is_in(sorted(models)))
    return set(done.get_column("request_id").to_list())


def latest_per_request(responses: pl.DataFrame) -> pl.DataFrame:
    """One row per request id: a success beats a failure, then the newest wins."""
    return (
        responses.sort([pl.col("status") == STATUS_OK, pl.col("created_at")], descending=[True, True], nulls_last=True)
        .unique(subset="request_id", keep="first", maintain_order=True)
        .sort("request_id")
    )


async def dispatch_streaming(
    dispatcher: Dispatcher,
    requests: Iterable[LLMRequest],
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=flush_seconds)
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


T = TypeVar("T")


def run_dispatch(
    plan: ClassifyPlan,
    dispatcher: Dispatcher,
    write_batch: Callable[[list[dict]], None],
    *,
    flush_rows: int,
    flush_seconds: float,
    on_progress: Callable[[int, DispatchStats], None] | None = None,
) -> DispatchStats:
    """Synchronous entry point (Dagster steps, the CLI, notebooks)."""
    return run_sync(
        lambda: dispatch_streaming(
            dispatcher,
            plan.to_send,
            write_batch,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
            on_progress=on_progress,
        )
    )


def run_sync(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run``, also where this thread's event loop is already running (a notebook, or a run
    launcher that executes runs inside its own loop): the coroutine then gets a loop of its own in a
    worker thread, as nesting loops is not allowed."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtel-dispatch") as worker:
        return worker.submit(lambda: asyncio.run(coroutine())).result()


WALL_SEQUENTIAL = "sequential"  # dispatch runs one after another (rounds, weeks): wall times add
WALL_PARALLEL = "parallel"  # dispatch runs side by side (Spark tasks): the slowest one's wall time


def merge_stats(parts: list[dict], wall: str) -> dict:
    """Totals of ``DispatchStats.as_dict()`` over several dispatch runs; every counter (per endpoint too)
    adds, and ``wall`` says how their wall times combine."""
    if wall not in (WALL_SEQUENTIAL, WALL_PARALLEL):
        raise ValueError(f"wall must be {WALL_SEQUENTIAL!r} or {WALL_PARALLEL!r}, got {wall!r}")
    total = DispatchStats().as_dict()
    for stats in parts:
        for key, value in stats.items():
            if key == "endpoints":
                for name, counters in value.items():
                    merged = total["endpoints"].setdefault(name, {})
                    for counter, amount in counters.items():
                        merged[counter] = merged.get(counter, 0) + amount
            elif key == "wall_seconds" and wall == WALL_PARALLEL:
                total[key] = max(total[key], value)
            else:
                total[key] += value
    return total
