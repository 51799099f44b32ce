"""Weekly partitions and the backfill policy.

Partitions run Monday 00:00 UTC to Monday, keyed ``YYYY-MM-DD`` (the ``week_start`` Date of every
table).

Backfills run one week per run. A week is the unit of everything that
can go wrong: its LLM calls can hit quotas, its blocking checks gate its downstream steps, and its
rerun resumes from its own answers. Separate runs keep a bad week from failing, or hiding inside, a
range; let Dagster retry weeks independently; and show a per-week status in the backfill view. The
Delta layer could write a range in one commit, but at weekly granularity nothing is cheaper per run.

The assets declare no ``BackfillPolicy``: without one the backfill daemon launches a run per week
tagged ``dagster/partition``. ``BackfillPolicy.multi_run(1)`` gives the same runs but tags each as a
one-week range, and Dagster 1.13 then records asset-check results without their week (every check
shows "skipped" per week after a backfill).
"""

from __future__ import annotations

import datetime as dt
import os
import warnings

from dagster import BetaWarning, TimeWindowPartitionMapping, WeeklyPartitionsDefinition

from semtel_dagster.core.insights import TREND_WEEKS
from semtel_dagster.core.lake.weeks import parse_week

FIRST_WEEK = os.environ.get("SEMTEL_FIRST_WEEK", "2025-01-06")

weekly_partitions = WeeklyPartitionsDefinition(start_date=FIRST_WEEK, day_offset=1, timezone="UTC", fmt="%Y-%m-%d")

# Steps that read earlier weeks (label reuse, embedding-classifier training, drift) read at most this
# many; their settings are capped here so the declared dependency covers every week they can read.
HISTORY_WEEKS = 4
# The weekly report's trend window reads at most this many weeks of weekly_insights (its own included).
REPORT_WEEKS = TREND_WEEKS


def earlier_weeks(weeks: int = HISTORY_WEEKS, *, and_this_week: bool = False) -> TimeWindowPartitionMapping:
    """Week N depends on weeks N-``weeks`` .. N-1 (and N itself with ``and_this_week``; none before the
    first partition): Dagster draws the edge in the lineage and a backfill runs those weeks first."""
    with warnings.catch_warnings():  # allow_nonexistent_upstream_partitions is beta; the first weeks need it
        warnings.simplefilter("ignore", BetaWarning)
        return TimeWindowPartitionMapping(
            start_offset=-weeks, end_offset=0 if and_this_week else -1, allow_nonexistent_upstream_partitions=True
        )


def partition_week(partition_key: str) -> dt.date:
    return parse_week(partition_key)
