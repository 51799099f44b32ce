"""How the dispatcher retries, hedges, opens breakers and stops at a budget."""

from __future__ import annotations

from dataclasses import dataclass, field

from semtel_dagster.core.llm.endpoints import ModelPrice


@dataclass(frozen=True)
class DispatchSettings:
    max_attempts: int = 6
    give_up_s: float = 90.0  # a request still failing this long after its first failure (429s aside) gets an error row
    stop_after_failing_s: float = 30.0  # every endpoint failing (no answer from any) this long: the run stops
    backoff_base_s: float = 0.25
    backoff_max_s: float = 20.0
    hedge_quantile: float | None = 0.95  # hedge a request still running past this latency quantile; None: off
    hedge_factor: float = 1.5  # ... times this factor
    hedge_min_samples: int = 20
    hedge_max_share: float = 0.05  # hedges never exceed this share of requests (no load doubling when all is slow)
    breaker_failures: int = 5  # consecutive failures that open an endpoint's circuit
    breaker_open_s: float = 1.0  # first open period; doubles while probes fail
    breaker_max_open_s: float = 8.0
    budget_tokens: int | None = None  # stop dispatch before prompt + completion tokens (retries included) pass this
    budget_cost: float | None = None  # ... or before the cost passes this (needs prices)
    prices: dict[str, ModelPrice] = field(default_factory=dict)  # per model
    seed: int = 0
    quota_peers: int = 2  # processes expected to share a contended quota (see fair_share); headers cannot count them
