"""Week arithmetic: every table is partitioned by ``week_start``, the Monday (UTC) of a week."""

from __future__ import annotations

import datetime as dt
import os

WEEK = dt.timedelta(days=7)
DEFAULT_FIRST_WEEK = "2025-01-06"


def week_start_of(ts: dt.datetime | dt.date) -> dt.date:
    """The Monday (UTC) of the week holding ``ts``; naive datetimes are taken as UTC."""
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is not None:
            ts = ts.astimezone(dt.UTC)
        ts = ts.date()
    return ts - dt.timedelta(days=ts.weekday())


def parse_week(value: str | dt.date) -> dt.date:
    """A partition key (``YYYY-MM-DD``) as a Monday date; anything else is a clear error."""
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if day.weekday() != 0:
        raise ValueError(f"week_start must be a Monday, got {day.isoformat()} ({day:%A})")
    return day


def last_complete_week(today: dt.date | None = None) -> dt.date:
    """The week that ended most recently: what the weekly schedule asks for on Monday."""
    today = today or dt.datetime.now(dt.UTC).date()
    return week_start_of(today) - WEEK


def first_week() -> dt.date:
    """The first weekly partition (``SEMTEL_FIRST_WEEK``): nothing earlier is ever run."""
    return parse_week(os.environ.get("SEMTEL_FIRST_WEEK", DEFAULT_FIRST_WEEK))
