"""Live progress of a dispatch: a terminal bar when there is a terminal, and periodic log lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm

from semtel_dagster.core.llm.stats import DispatchStats


class DispatchProgress:
    """Call with (done, stats) after every answer; reports at most every ``interval_s`` seconds."""

    def __init__(self, total: int, log: Callable[[str], None], interval_s: float = 5.0, bar: bool | None = None):
        self.total = total
        self.log = log
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._last = self.started
        show_bar = sys.stderr.isatty() if bar is None else bar
        self._bar = tqdm(total=total, unit="req", desc="classify", disable=not show_bar, dynamic_ncols=True)

    def line(self, done: int, stats: DispatchStats) -> str:
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        tokens_per_min = (stats.prompt_tokens + stats.completion_tokens) / elapsed * 60
        per_endpoint = ", ".join(
            f"{name}: {s.ok} ok, {(s.prompt_tokens + s.completion_tokens) / elapsed * 60:,.0f} tok/min, "
            f"{s.rate_limited} x429, {s.errors} errors"
            for name, s in stats.endpoints.items()
        )
        return (
            f"{done}/{self.total} done ({stats.ok} answered, {stats.errors} failed), {rate:.1f} req/s, {tokens_per_min:,.0f} tok/min, "
            f"{stats.rate_limited} rate-limited, {stats.retries} retries, {stats.timeouts} timeouts, "
            f"{stats.hedges} hedged, ETA {eta:.0f}s [{per_endpoint}]"
        )

    def __call__(self, done: int, stats: DispatchStats) -> None:
        self._bar.update(done - self._bar.n)
        now = time.monotonic()
        if now - self._last >= self.interval_s or done == self.total:
            self._last = now
            self.log(self.line(done, stats))

    def close(self) -> None:
        self._bar.close()


class BatchProgress:
    """Batches by status and items answered, failed and waiting, logged at most every ``interval_s``."""

    def __init__(self, total: int, log: Callable[[str], None], interval_s: float = 5.0) -> None:
        self.total = total
        self.log = log
        self.interval_s = interval_s
        self._last = float("-inf")

    @staticmethod
    def line(batches: dict[str, int], answered: int, failed: int, total: int) -> str:
        by_status = ", ".join(f"{count} {status}" for status, count in sorted(batches.items())) or "none"
        return f"batches: {by_status}; items: {answered}/{total} answered, {failed} failed, {total - answered - failed} waiting"

    def __call__(self, batches: dict[str, int], answered: int, failed: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            self._last = now
            self.log(self.line(batches, answered, failed, self.total))
