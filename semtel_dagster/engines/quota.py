"""Sharing an endpoint pool between concurrent dispatchers (one per Spark task).

Each task runs its own dispatcher with its own rate buckets, so the pool's quotas are divided
statically: every task gets ``1/n`` of each endpoint's TPM, RPM and concurrency. The tasks together
never exceed a declared quota; the price is idle headroom when tasks finish at different times.
A run's token or cost budget is divided the same way.
"""

from __future__ import annotations

import dataclasses
import math

from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.settings import DispatchSettings


def share_endpoints(endpoints: list[Endpoint], tasks: int) -> list[Endpoint]:
    if tasks < 1:
        raise ValueError("tasks must be at least 1")

    def part(value: int | None, round_up: bool = False) -> int | None:
        if value is None:
            return None
        return max(1, math.ceil(value / tasks) if round_up else value // tasks)

    return [
        e.model_copy(update={"tpm": part(e.tpm), "rpm": part(e.rpm), "max_concurrency": part(e.max_concurrency, round_up=True)})
        for e in endpoints
    ]


def share_settings(settings: DispatchSettings, tasks: int) -> DispatchSettings:
    """Each task's part of the run's budget, so the tasks together stay within it."""
    return dataclasses.replace(
        settings,
        budget_tokens=max(1, settings.budget_tokens // tasks) if settings.budget_tokens else None,
        budget_cost=settings.budget_cost / tasks if settings.budget_cost else None,
    )
