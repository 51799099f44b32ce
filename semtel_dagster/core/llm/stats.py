"""Counters of a dispatch, per endpoint and in total, as summable plain data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EndpointStats:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: int = 0
    timeouts: int = 0
    hedges: int = 0
    breaker_opens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms_total: float = 0.0


@dataclass
class DispatchStats:
    requests: int = 0  # HTTP attempts, hedges included
    ok: int = 0
    errors: int = 0
    retries: int = 0
    rate_limited: int = 0
    timeouts: int = 0
    hedges: int = 0
    hedge_wins: int = 0
    unfinished: int = 0  # started but stopped by the budget: no row, a rerun asks again
    prompt_tokens: int = 0
    completion_tokens: int = 0
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
            "hedges": self.hedges,
            "hedge_wins": self.hedge_wins,
            "unfinished": self.unfinished,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "wall_seconds": round(self.wall_seconds, 3),
            "budget_exhausted": self.budget_exhausted,
            "budget_spent_tokens": self.budget_spent_tokens,
            "budget_spent_cost": round(self.budget_spent_cost, 6),
            "endpoints": {name: vars(stats) for name, stats in self.endpoints.items()},
        }
