"""The classify plan streams: its requests are built as they are pulled, with the ids and order of the full plan."""

from __future__ import annotations

import asyncio
import datetime as dt
import tracemalloc
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.core.classify import plan as plan_module
from semtel_dagster.core.classify.plan import STRATEGIES, TranscriptWindow, plan_requests, plan_units, run_sync
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.tokens import count_tokens

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
WEEK = dt.date(2026, 11, 16)


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers(PROMPTS, names=["topic", "satisfaction"])


def _week(n: int, words: int = 150) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``n`` representatives of distinct transcripts of about ``words`` words (ids deliberately unsorted)."""
    ids = [f"c{(i * 7919) % n:07d}" for i in range(n)]
    filler = " ".join(["the model answered my python question about tables"] * (words // 8))
    clusters = pl.DataFrame(
        {
            "conversation_id": ids,
            "week_start": [WEEK] * n,
            "representative_id": ids,
            "is_representative": [True] * n,
            "cluster_size": [1] * n,
            "method": ["exact"] * n,
            "similarity": [1.0] * n,
            "text_hash": ids,
        },
        schema=tables.CONVERSATION_CLUSTERS,
    )
    truncated = pl.DataFrame(
        {
            "conversation_id": ids,
            "transcript": [f"User: {filler} #{cid}" for cid in ids],
            "tokens_after": [words + 4] * n,
        }
    )
    return clusters, truncated


def test_first_request_is_built_without_building_the_rest(classifiers, monkeypatch):
    monkeypatch.setattr(plan_module, "TRANSCRIPT_BLOCK_ROWS", 128)  # a week of many blocks, in a small week
    clusters, truncated = _week(1_500)
    count_tokens("load the tokenizer before measuring")
    list(plan_requests(*_week(2), classifiers, set()).to_send)  # and the prompts' templates (built once per process)
    tracemalloc.start()
    try:
        plan = plan_requests(clusters, truncated, classifiers, set())
        first = next(iter(plan.to_send))
        _, peak_first = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        every = [first, *plan.to_send]
        _, peak_all = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan.total == plan.sending == len(every) == 3_000
    # The whole list holds 3k requests of ~2 KB each; the first request costs a block of transcripts.
    assert peak_all > 4_000_000
    assert peak_first < peak_all / 10


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_streamed_requests_keep_the_ids_and_order_of_the_units(classifiers, strategy):
    clusters, truncated = _week(300)
    units = plan_units(sorted(clusters.get_column("conversation_id")), classifiers, strategy, 8)
    answered = {units[3].request_id, units[10].request_id}
    followups = {("c0000007", "topic"), ("c0000299", "satisfaction")}
    plan = plan_requests(clusters, truncated, classifiers, answered, strategy=strategy, batch_size=8, followups=followups)
    sent = list(plan.to_send)
    expected = [u.request_id for u in units if u.request_id not in answered]
    assert [r.request_id for r in sent[: len(expected)]] == expected
    assert [r.strategy for r in sent[len(expected) :]] == ["followup", "followup"]
    assert (plan.total, plan.answered, plan.sending) == (len(units) + 2, 2, len(sent))
    assert all(f"#{cid}" in r.messages[-1]["content"] for r in sent for cid in r.conversation_ids)


def test_transcript_window_reads_any_representative_and_refuses_unknown_ones():
    _, truncated = _week(10_000)
    reps = truncated.sort("conversation_id")
    window = TranscriptWindow(reps, block_rows=100)
    for cid in ["c0009999", "c0000000", "c0004321", "c0004322", "c0000001"]:
        text, tokens = window[cid]
        assert text.endswith(f"#{cid}") and tokens == 154
    with pytest.raises(KeyError):
        window["c9999999"]


def test_run_sync_also_inside_a_running_event_loop():
    """A notebook, or a run launcher executing runs inside its loop, still dispatches synchronously."""

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def caller() -> int:
        return run_sync(answer)  # a loop is running in this thread: asyncio.run would refuse

    assert run_sync(answer) == 42
    assert asyncio.run(caller()) == 42
