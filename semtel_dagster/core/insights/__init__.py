"""What a week says: label aggregates, run summaries and the weekly report, read back from the lake."""

TREND_WEEKS = 8  # weeks of weekly_insights the weekly report reads at most, its own included
