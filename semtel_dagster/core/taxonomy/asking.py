"""Every LLM call of taxonomy discovery goes through the project's dispatcher: rate control, retries,
hedging, a budget over the whole discovery, and resume.

Answers are appended to a Delta table of ``llm_responses`` rows (``store``) as they arrive; a rerun with
the same sample and prompts finds each step's requests answered (their ids cover the inputs, see
``tasks.TaskPrompt.request``) and sends only what is missing. The budget given to the pool caps the
whole discovery: each dispatch gets what earlier ones left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import polars as pl

from semtel_dagster.core.classify.answering import Calls, logged_send
from semtel_dagster.core.classify.plan import WALL_SEQUENTIAL, ClassifyPlan, answered_request_ids, merge_stats
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.requests import STATUS_OK, LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.llm.stats import DispatchStats

# The partition the answers are stored under: discovery answers belong to no week of the pipeline.
ANSWERS_WEEK = dt.date(2026, 1, 5)


def _quiet(line: str) -> None:
    """The default log: nothing."""


@dataclass
class Asker:
    """Sends requests to the pool and returns their answers (``request_id -> raw_text``)."""

    calls: Calls
    store: str | None = None  # Delta table of answers; None keeps nothing between runs
    log: Callable[[str], None] = _quiet
    runs: list[dict] = field(default_factory=list)  # DispatchStats of each dispatch, in order
    resumed: int = 0  # requests answered by an earlier run
    exhausted: bool = False  # the budget is spent: nothing more is sent
    _answers: dict[str, str] | None = None

    def ask(self, requests: Sequence[LLMRequest], step: str) -> dict[str, str]:
        """Answers of ``requests`` that have one (a failed or unsent request is missing from the result)."""
        known = self._known()
        todo = list({r.request_id: r for r in requests if r.request_id not in known}.values())
        self.resumed += len({r.request_id for r in requests}) - len(todo)
        settings = self._settings_left()
        if todo and settings is not None:
            send = logged_send(
                lambda: Dispatcher(self.calls.endpoints, settings),
                flush_rows=self.calls.flush_rows,
                flush_seconds=self.calls.flush_seconds,
                log=self.log,
                where=f"taxonomy {step}",
            )
            stats = send(ClassifyPlan(len(requests), len(requests) - len(todo), iter(todo)), self._write)
            self.runs.append(stats.as_dict())
            self.exhausted = self.exhausted or bool(stats.budget_exhausted)
        return {r.request_id: known[r.request_id] for r in requests if r.request_id in known}

    @property
    def totals(self) -> dict:
        """The dispatch totals of every step (``DispatchStats.as_dict()`` form)."""
        return merge_stats(self.runs, WALL_SEQUENTIAL) if self.runs else DispatchStats().as_dict()

    def _known(self) -> dict[str, str]:
        if self._answers is None:
            self._answers = {}
            if self.store and delta.table_exists(self.store):
                stored = delta.read_all(self.store, tables.LLM_RESPONSES)
                ok = answered_request_ids(stored, set(self.calls.models))
                self._answers = {
                    rid: text
                    for rid, text in stored.select("request_id", "raw_text").iter_rows()
                    if rid in ok and text is not None
                }
        return self._answers

    def _write(self, batch: list[dict]) -> None:
        self._known().update(
            {row["request_id"]: row["raw_text"] for row in batch if row["status"] == STATUS_OK and row["raw_text"]}
        )
        if self.store:
            delta.append(self.store, pl.DataFrame(batch, schema=tables.LLM_RESPONSES), tables.LLM_RESPONSES)

    def _settings_left(self) -> DispatchSettings | None:
        """The pool's settings with the budget earlier dispatches left; None once it is spent."""
        settings, totals = self.calls.settings, self.totals
        if self.exhausted:
            return None
        tokens = settings.budget_tokens - totals["budget_spent_tokens"] if settings.budget_tokens is not None else None
        cost = settings.budget_cost - totals["budget_spent_cost"] if settings.budget_cost is not None else None
        if (tokens is not None and tokens <= 0) or (cost is not None and cost <= 0):
            self.exhausted = True
            return None
        return replace(settings, budget_tokens=tokens, budget_cost=cost)
