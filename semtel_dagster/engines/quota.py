"""Sharing an endpoint pool between concurrent dispatchers (one per Spark task).

Each task runs its own dispatcher with its own rate buckets, so the pool's quotas are divided
statically: every task gets ``1/n`` of each endpoint's TPM, RPM and concurrency. The tasks together
never exceed a declared quota; the price is idle headroom when tasks finish at different times.
"""

from __future__ import annotations

import math

from semtel_dagster.core.dispatch import DispatchStats
from semtel_dagster.core.endpoints import Endpoint


def share_endpoints(endpoints: list[Endpoint], tasks: int) -> list[Endpoint]:
    if tasks < 1:
        raise ValueError("tasks must be at least 1")

    def part(value: int | None, round_up: bool = False) -> int | None:
        if value is None:
            return None
        return max(1, math.ceil(value / tasks) if round_up else value // tasks)

    return [
        e.model_copy(
            update={"tpm": part(e.tpm), "rpm": part(e.rpm), "max_concurrency": part(e.max_concurrency, round_up=True)}
        )
        for e in endpoints
    ]


def merge_stats(per_task: list[dict]) -> dict:
    """Totals of ``DispatchStats.as_dict()`` over tasks; wall time is the slowest task's."""
    total = DispatchStats().as_dict()
    for stats in per_task:
        for key, value in stats.items():
            if key == "endpoints":
                for name, counters in value.items():
                    merged = total["endpoints"].setdefault(name, {})
                    for counter, amount in counters.items():
                        merged[counter] = merged.get(counter, 0) + amount
            elif key == "wall_seconds":
                total[key] = max(total.get(key, 0.0), value)
            elif isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    return total
