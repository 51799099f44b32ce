"""A token or cost cap per run: requests reserve their worst case before they are sent."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from semtel_dagster.core.llm.endpoints import ModelPrice
from semtel_dagster.core.llm.requests import LLMRequest
from semtel_dagster.core.llm.settings import DispatchSettings


class Budget:
    """A cap on tokens or cost per run; requests reserve their worst case before they are sent."""

    def __init__(self, settings: DispatchSettings, models: Iterable[str]) -> None:
        self.max_tokens = settings.budget_tokens
        self.max_cost = settings.budget_cost
        self.prices = settings.prices
        if self.max_cost is not None:
            missing = sorted(set(models) - set(self.prices))
            if missing:
                raise ValueError(f"a cost budget needs prices for every model of the pool; missing {missing}")
        priced = [self.prices[m] for m in models if m in self.prices]
        self._worst = ModelPrice(
            prompt_per_1m=max((p.prompt_per_1m for p in priced), default=0.0),
            completion_per_1m=max((p.completion_per_1m for p in priced), default=0.0),
        )
        self.spent_tokens = 0
        self.spent_cost = 0.0
        self._reserved_tokens = 0
        self._reserved_cost = 0.0
        self.exhausted = False

    def reserve(self, request: LLMRequest) -> bool:
        cost = self._worst.cost(request.prompt_tokens, request.max_tokens)
        if (self.max_tokens is not None and self.spent_tokens + self._reserved_tokens + request.cost > self.max_tokens) or (
            self.max_cost is not None and self.spent_cost + self._reserved_cost + cost > self.max_cost
        ):
            self.exhausted = True
            return False
        self._reserved_tokens += request.cost
        self._reserved_cost += cost
        return True

    def settle(
        self, request: LLMRequest, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = 0
    ) -> None:
        """Release the reservation and charge what the attempt used (a lost attempt: its prompt); cached
        prompt tokens (None: not reported) at the model's cached-input price."""
        self._reserved_tokens -= request.cost
        self._reserved_cost -= self._worst.cost(request.prompt_tokens, request.max_tokens)
        self.spent_tokens += prompt_tokens + completion_tokens
        price = self.prices.get(model)
        if price is not None:
            self.spent_cost += price.cost(prompt_tokens, completion_tokens, cached_tokens or 0)


def budget_summary(totals: dict, max_tokens: int | None, max_cost: float | None) -> dict:
    """What a run's budget allowed and what it spent (``totals`` is ``DispatchStats.as_dict()``)."""
    return {
        "max_tokens": max_tokens,
        "max_cost": max_cost,
        "spent_tokens": totals["budget_spent_tokens"],
        "spent_cost": totals["budget_spent_cost"],
        "exhausted": bool(totals["budget_exhausted"]),
        "unfinished_requests": totals["unfinished"],
    }


def responses_cost(responses: pl.DataFrame, prices: dict[str, ModelPrice]) -> float:
    """What the ``llm_responses`` rows cost at ``prices`` (by the model that answered): cached prompt
    tokens at the cached-input price. Rows answered without a call carry no tokens; a model without a
    price is an error, so a cost figure never leaves tokens out."""
    used = (
        responses.filter(pl.col("prompt_tokens").fill_null(0) + pl.col("completion_tokens").fill_null(0) > 0)
        .group_by("model")
        .agg(pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum(), pl.col("cached_tokens").fill_null(0).sum())
    )
    missing = sorted(set(used.get_column("model").to_list()) - set(prices))
    if missing:
        raise ValueError(f"no price for models {missing}")
    return sum(prices[model].cost(prompt, completion, cached) for model, prompt, completion, cached in used.iter_rows())
