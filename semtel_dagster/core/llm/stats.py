"""Counters of a dispatch, per endpoint and in total, as summable plain data.

``timeouts`` counts every attempt that ran out of time; of those, a streamed attempt's say which limit
ran out: ``queue_timeouts`` (the server had not started), ``work_timeouts`` (started, not finished in the
work's time), ``stall_timeouts`` (started, then silent). The rest are plain requests' whole-request timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from semtel_dagster.core.llm.stream import QUEUE, STALL, WORK


@dataclass
class EndpointStats:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: int = 0
    timeouts: int = 0
    queue_timeouts: int = 0
    work_timeouts: int = 0
    stall_timeouts: int = 0
    hedges: int = 0
    breaker_opens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens the provider served from its prompt cache
    latency_ms_total: float = 0.0


@dataclass
class DispatchStats:
    requests: int = 0  # HTTP attempts, hedges included
    ok: int = 0
    errors: int = 0
    retries: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    queue_timeouts: int = 0
    work_timeouts: int = 0
    stall_timeouts: int = 0
    hedges: int = 0
    hedge_wins: int = 0
    unfinished: int = 0  # started but stopped by the budget: no row, a rerun asks again
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, served from the provider's prompt cache
    wall_seconds: float = 0.0
    budget_exhausted: int = 0  # 1: the budget stopped dispatch (counts stay summable across tasks and rounds)
    budget_spent_tokens: int = 0
    budget_spent_cost: float = 0.0
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "timeouts": self.timeouts,
            "queue_timeouts": self.queue_timeouts,
            "work_timeouts": self.work_timeouts,
            "stall_timeouts": self.stall_timeouts,
            "hedges": self.hedges,
            "hedge_wins": self.hedge_wins,
            "unfinished": self.unfinished,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "wall_seconds": round(self.wall_seconds, 3),
            "budget_exhausted": self.budget_exhausted,
            "budget_spent_tokens": self.budget_spent_tokens,
            "budget_spent_cost": round(self.budget_spent_cost, 6),
            "endpoints": {name: vars(stats) for name, stats in self.endpoints.items()},
        }


def count_timeout(stats: EndpointStats | DispatchStats, phase: str) -> None:
    """One more timeout, and one more of its streamed phase's (``stream.QUEUE``, ``WORK``, ``STALL``)."""
    stats.timeouts += 1
    if phase == QUEUE:
        stats.queue_timeouts += 1
    elif phase == WORK:
        stats.work_timeouts += 1
    elif phase == STALL:
        stats.stall_timeouts += 1
