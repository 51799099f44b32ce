"""The weekly report for product teams: what changed this week, with the evidence behind it.

One pure model (:func:`build_report`) is made from a week's tables: per classifier the published
distribution with 95 % Wilson intervals, the change from the previous week (two-proportion z-tests,
Benjamini–Hochberg over every comparison of the report, so only real movers are called out), the
trend over the last weeks, the cross-tab heatmaps, engagement per label when the landing records
carried it, a data-quality panel, and conversation ids per cell for drill-down (ids, never text).

Every number shown holds at least ``min_group_size`` conversations. Distributions, trends and
heatmaps come from the published tables (``weekly_insights``, ``weekly_crosstabs``), already
suppressed with complementary suppression (``core.insights.privacy``); what the report counts itself
(drill-down ids, engagement groups, reject reasons) goes through the same rules, and a suppressed
cell shows no ids.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from semtel_dagster.core.classify.plan import STRATEGY_EMBEDDING, STRATEGY_REUSE
from semtel_dagster.core.insights.privacy import SUPPRESSED, hidden_in_distribution
from semtel_dagster.core.insights.stats import benjamini_hochberg, mean_interval, two_proportion_p, wilson_interval
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.lake.weeks import WEEK, parse_week
from semtel_dagster.core.llm.endpoints import ModelPrice, load_endpoints
from semtel_dagster.core.llm.requests import STATUS_OK

REPORTS_FOLDER = "reports"
ALPHA = 0.05  # false-discovery rate of the movers called out
MAX_IDS = 200  # drill-down ids listed per cell; the rest are in `classifications`
HEADLINE_MOVERS = 6
# What a report reads of its week (and, for weekly_insights, the weeks before it).
WEEK_TABLES = (
    "conversations",
    "ingest_rejects",
    "conversation_clusters",
    "llm_responses",
    "classifications",
    "classification_rejects",
    "weekly_crosstabs",
)
# Engagement columns and how they are summarized: a mean (numbers) or a share of true (flags).
ENGAGEMENT_METRICS = {
    "rating": "mean",
    "thumbs_up": "share",
    "session_seconds": "mean",
    "returned_next_week": "share",
}


@dataclass(frozen=True)
class LabelRow:
    label: str
    conversations: int
    share: float
    low: float
    high: float
    previous_share: float | None = None
    q_value: float | None = None
    significant: bool = False
    ids: tuple[str, ...] = ()  # empty for a <suppressed> bucket
    ids_total: int = 0
    suppressed_labels: int = 0


@dataclass(frozen=True)
class Distribution:
    classifier: str
    labeled: int | None  # None: withheld, under the minimum group size
    rows: tuple[LabelRow, ...]
    trend: dict[str, tuple[float | None, ...]]  # label -> share per report week (None: not published that week)


@dataclass(frozen=True)
class Mover:
    classifier: str
    label: str
    before: float
    after: float
    q_value: float

    def sentence(self) -> str:
        direction = "up" if self.after > self.before else "down"
        points = (self.after - self.before) * 100
        return (
            f"{self.classifier}: {self.label} {direction} from {self.before:.1%} to {self.after:.1%} "
            f"({points:+.1f} pts, q = {self.q_value:.3g})"
        )


@dataclass(frozen=True)
class Heatmap:
    classifier_a: str
    classifier_b: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: tuple[tuple[int | None, ...], ...]  # None: no such cell, or a withheld bucket
    labeled_both: int | None
    ids: dict[tuple[str, str], tuple[tuple[str, ...], int]]  # published cells: (first ids, how many)


@dataclass(frozen=True)
class EngagementCell:
    label: str
    n: int
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class EngagementTable:
    classifier: str
    metric: str
    kind: str  # mean | share
    cells: tuple[EngagementCell, ...]


@dataclass(frozen=True)
class Quality:
    conversations: int | None
    coverage: dict[str, float | None]  # classifier -> labeled share of the week's conversations
    ingest_rejects: tuple[tuple[str, int | None], ...]  # reason, records (a <suppressed> bucket may be withheld)
    parse_failures: tuple[tuple[str, str, int | None], ...]  # classifier, reason, pairs
    requests: int
    llm_calls: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None: no price for the models that answered
    unpriced_models: tuple[str, ...]
    saved: dict[str, int]  # why a pair needed no call: duplicates, label reuse, embedding classifier


@dataclass(frozen=True)
class WeeklyReport:
    week: dt.date
    weeks: tuple[dt.date, ...]  # oldest first, the report's week last
    min_group_size: int
    comparisons: int
    movers: tuple[Mover, ...]
    distributions: tuple[Distribution, ...]
    heatmaps: tuple[Heatmap, ...]
    engagement: tuple[EngagementTable, ...]  # empty: the week's records carried no engagement fields
    quality: Quality
    alpha: float = ALPHA
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ReportInputs:
    """A week's tables as the report reads them; ``insights`` covers the trend weeks."""

    week: dt.date
    weeks: tuple[dt.date, ...]
    insights: pl.DataFrame
    frames: dict[str, pl.DataFrame]  # WEEK_TABLES of the report's week


def report_weeks(week: dt.date, weeks: int) -> tuple[dt.date, ...]:
    """The trend window: ``weeks`` weeks ending with ``week``, oldest first."""
    if weeks < 2:
        raise ValueError(f"a report needs at least 2 weeks (this one and the previous), got {weeks}")
    return tuple(week - WEEK * k for k in range(weeks - 1, -1, -1))


def read_inputs(lake_root: str, week: dt.date, weeks: int) -> ReportInputs:
    """The week's tables (and ``weeks`` weeks of ``weekly_insights``) from the lake."""
    week = parse_week(week)
    window = report_weeks(week, weeks)
    uri = lambda name: delta.table_uri(lake_root, name)  # noqa: E731
    if not delta.table_exists(uri("weekly_insights")):
        raise FileNotFoundError(f"no weekly_insights table under {lake_root}: run the weekly pipeline first")
    insights = delta.read_weeks(uri("weekly_insights"), tables.WEEKLY_INSIGHTS, list(window))
    if insights.filter(pl.col("week_start") == week).is_empty():
        raise ValueError(f"weekly_insights has no rows for week {week}: materialize that week first")
    frames = {
        name: delta.read_weeks(uri(name), tables.TABLES[name], [week])
        if delta.table_exists(uri(name))
        else tables.empty(tables.TABLES[name])
        for name in WEEK_TABLES
    }
    return ReportInputs(week, window, insights, frames)


def build_report(
    inputs: ReportInputs,
    min_group_size: int,
    prices: Mapping[str, ModelPrice] | None = None,
    alpha: float = ALPHA,
    max_ids: int = MAX_IDS,
) -> WeeklyReport:
    """The report's model, every shown count at least ``min_group_size``."""
    k = min_group_size
    week = inputs.week
    earliest: dt.date = min(inputs.insights.get_column("week_start").to_list(), default=week)
    # the trend starts at the first week with insights (a young lake has fewer weeks than the window)
    weeks = tuple(w for w in inputs.weeks if w >= earliest or w >= inputs.weeks[-2])
    insights = inputs.insights.filter(pl.col("conversations").is_null() | (pl.col("conversations") >= k))
    labels = inputs.frames["classifications"].select("conversation_id", "classifier", "label")
    previous = weeks[-2]
    tests: list[tuple[str, str, float, float, float]] = []  # classifier, label, before, after, p
    current: dict[str, pl.DataFrame] = {
        c: g for (c,), g in insights.filter(pl.col("week_start") == week).group_by("classifier", maintain_order=True)
    }
    for classifier, rows in current.items():
        before = _published(insights, previous, classifier)
        for label, n, total in rows.select("label", "conversations", "labeled_conversations").iter_rows():
            if label == SUPPRESSED or n is None or label not in before:
                continue
            x0, n0 = before[label]
            tests.append((classifier, label, x0 / n0, n / total, two_proportion_p(n, total, x0, n0)))
    q_values = benjamini_hochberg([p for *_, p in tests])
    tested = {(c, label): (b, q) for (c, label, b, _, _), q in zip(tests, q_values)}
    movers = sorted(
        (Mover(c, label, b, a, q) for (c, label, b, a, _), q in zip(tests, q_values) if q <= alpha),
        key=lambda m: (-abs(m.after - m.before), m.classifier, m.label),
    )
    distributions = tuple(
        _distribution(classifier, rows, insights, weeks, tested, alpha, labels, k, max_ids)
        for classifier, rows in sorted(current.items())
    )
    return WeeklyReport(
        week=week,
        weeks=weeks,
        min_group_size=k,
        comparisons=len(tests),
        movers=tuple(movers),
        distributions=distributions,
        heatmaps=_heatmaps(inputs.frames["weekly_crosstabs"], labels, k, max_ids),
        engagement=_engagement(inputs.frames["conversations"], labels, current, k),
        quality=_quality(inputs.frames, current, k, prices or {}),
        alpha=alpha,
    )


def _published(insights: pl.DataFrame, week: dt.date, classifier: str) -> dict[str, tuple[int, int]]:
    """label -> (conversations, labeled) of a week's published own-label rows."""
    rows = insights.filter(
        (pl.col("week_start") == week) & (pl.col("classifier") == classifier) & (pl.col("label") != SUPPRESSED)
    )
    return {
        label: (n, total)
        for label, n, total in rows.select("label", "conversations", "labeled_conversations").iter_rows()
        if n is not None and total
    }


def _ids(labels: pl.DataFrame, classifier: str, label: str, max_ids: int) -> tuple[tuple[str, ...], int]:
    ids = labels.filter((pl.col("classifier") == classifier) & (pl.col("label") == label)).get_column("conversation_id").sort()
    return tuple(ids.head(max_ids).to_list()), ids.len()


def _distribution(classifier, rows, insights, weeks, tested, alpha, labels, k, max_ids) -> Distribution:
    out = []
    for label, n, total, merged in rows.select(
        "label", "conversations", "labeled_conversations", "suppressed_labels"
    ).iter_rows():
        if n is None:  # a bucket withheld under the minimum: nothing about it is shown
            continue
        low, high = wilson_interval(n, total)
        before, q = tested.get((classifier, label), (None, None))
        ids, ids_total = _ids(labels, classifier, label, max_ids) if label != SUPPRESSED else ((), 0)
        if ids_total < k:  # a published label always has k; never list fewer ids than that
            ids, ids_total = (), 0
        out.append(LabelRow(label, n, n / total, low, high, before, q, q is not None and q <= alpha, ids, ids_total, merged or 0))
    history = insights.filter((pl.col("classifier") == classifier) & (pl.col("label") != SUPPRESSED))
    shares = {(w, label): s for w, label, s in history.select("week_start", "label", "share").iter_rows() if s is not None}
    trend = {r.label: tuple(shares.get((w, r.label)) for w in weeks) for r in out if r.label != SUPPRESSED}
    labeled = rows.get_column("labeled_conversations").drop_nulls()
    return Distribution(classifier, int(labeled[0]) if labeled.len() else None, tuple(out), trend)


def _heatmaps(crosstabs: pl.DataFrame, labels: pl.DataFrame, k: int, max_ids: int) -> tuple[Heatmap, ...]:
    out = []
    for (a, b), cells in crosstabs.group_by("classifier_a", "classifier_b", maintain_order=True):
        by_cell = {
            (la, lb): n if n is None or n >= k else None
            for la, lb, n in cells.select("label_a", "label_b", "conversations").iter_rows()
        }
        rows = tuple(sorted({la for la, _ in by_cell}, key=lambda x: (x == SUPPRESSED, x)))
        columns = tuple(sorted({lb for _, lb in by_cell}, key=lambda x: (x == SUPPRESSED, x)))
        pairs = labels.filter(pl.col("classifier") == a).join(
            labels.filter(pl.col("classifier") == b), on="conversation_id", suffix="_b"
        )
        ids = {}
        for (la, lb), n in by_cell.items():
            if n is None or SUPPRESSED in (la, lb):
                continue
            cell = pairs.filter((pl.col("label") == la) & (pl.col("label_b") == lb)).get_column("conversation_id").sort()
            if cell.len() >= k:
                ids[(la, lb)] = (tuple(cell.head(max_ids).to_list()), cell.len())
        both = cells.get_column("labeled_both").drop_nulls()
        out.append(
            Heatmap(
                a,
                b,
                rows,
                columns,
                tuple(tuple(by_cell.get((r, c)) for c in columns) for r in rows),
                int(both[0]) if both.len() else None,
                ids,
            )
        )
    return tuple(sorted(out, key=lambda h: (h.classifier_a, h.classifier_b)))


def _engagement(
    conversations: pl.DataFrame, labels: pl.DataFrame, current: Mapping[str, pl.DataFrame], k: int
) -> tuple[EngagementTable, ...]:
    """Per classifier and engagement metric, the mean (or share of true) per published label, and for the
    labels merged into <suppressed> together; a group with fewer than ``k`` values is left out."""
    present = [m for m in ENGAGEMENT_METRICS if m in conversations.columns and conversations.get_column(m).drop_nulls().len()]
    if not present:
        return ()
    joined = labels.join(conversations.select("conversation_id", *present), on="conversation_id")
    out = []
    for classifier, rows in sorted(current.items()):
        shown = {label for label in rows.get_column("label").to_list() if label != SUPPRESSED}
        mine = joined.filter(pl.col("classifier") == classifier).with_columns(
            group=pl.when(pl.col("label").is_in(list(shown))).then(pl.col("label")).otherwise(pl.lit(SUPPRESSED))
        )
        for metric in present:
            cells = []
            for (group,), values in mine.group_by("group", maintain_order=True):
                data = values.get_column(metric).drop_nulls()
                if data.len() < k:
                    continue
                if ENGAGEMENT_METRICS[metric] == "share":
                    hits = int(data.cast(pl.Int64).sum())
                    low, high = wilson_interval(hits, data.len())
                    cells.append(EngagementCell(group, data.len(), hits / data.len(), low, high))
                else:
                    mean, low, high = mean_interval(data.cast(pl.Float64).to_list())
                    cells.append(EngagementCell(group, data.len(), mean, low, high))
            if cells:
                ordered = sorted(cells, key=lambda c: (c.label == SUPPRESSED, -c.value, c.label))
                out.append(EngagementTable(classifier, metric, ENGAGEMENT_METRICS[metric], tuple(ordered)))
    return tuple(out)


def _suppressed_counts(counts: Mapping[str, int], k: int) -> list[tuple[str, int | None]]:
    """Counts per reason with the distribution rule of ``privacy``: small ones merged, a bucket under the
    minimum withheld (None)."""
    hidden = hidden_in_distribution(counts, k)
    shown = sorted(((r, n) for r, n in counts.items() if r not in hidden), key=lambda x: (-x[1], x[0]))
    out: list[tuple[str, int | None]] = list(shown)
    if hidden:
        merged = sum(counts[r] for r in hidden)
        out.append((SUPPRESSED, merged if merged >= k else None))
    return out


def _quality(frames: Mapping[str, pl.DataFrame], current: Mapping[str, pl.DataFrame], k: int, prices) -> Quality:
    conversations = frames["conversations"].height
    coverage = {}
    for classifier, rows in sorted(current.items()):
        labeled = rows.get_column("labeled_conversations").drop_nulls()
        coverage[classifier] = int(labeled[0]) / conversations if labeled.len() and conversations >= k else None
    ingest = dict(frames["ingest_rejects"].group_by("reason").len().iter_rows())
    parse = frames["classification_rejects"].group_by("classifier", "reason").len()
    failures: list[tuple[str, str, int | None]] = []
    for (classifier,), group in parse.sort("classifier").group_by("classifier", maintain_order=True):
        failures += [(classifier, r, n) for r, n in _suppressed_counts(dict(group.select("reason", "len").iter_rows()), k)]
    responses = frames["llm_responses"]
    local = responses.filter(pl.col("endpoint").is_in([STRATEGY_REUSE, STRATEGY_EMBEDDING]))
    called = responses.filter(~pl.col("endpoint").is_in([STRATEGY_REUSE, STRATEGY_EMBEDDING]))
    by_model = called.group_by("model").agg(pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum())
    unpriced = tuple(sorted(m for m in by_model.get_column("model").to_list() if m not in prices))
    cost = sum(prices[m].cost(p or 0, c or 0) for m, p, c in by_model.iter_rows() if m in prices)
    clusters = frames["conversation_clusters"]
    saved = {
        "duplicates (labels fanned out)": clusters.filter(~pl.col("is_representative")).height,
        "label reuse": local.filter(pl.col("endpoint") == STRATEGY_REUSE).height,
        "embedding classifier": local.filter(pl.col("endpoint") == STRATEGY_EMBEDDING).height,
    }
    return Quality(
        conversations=conversations if conversations >= k else None,
        coverage=coverage,
        ingest_rejects=tuple(_suppressed_counts(ingest, k)),
        parse_failures=tuple(failures),
        requests=called.height,
        llm_calls=int(called.get_column("attempts").sum() or 0),
        failed_requests=called.filter(pl.col("status") != STATUS_OK).height,
        prompt_tokens=int(called.get_column("prompt_tokens").sum() or 0),
        completion_tokens=int(called.get_column("completion_tokens").sum() or 0),
        cost=cost if not unpriced or cost else None,
        unpriced_models=unpriced,
        saved=saved,
    )


# ---- rendering -------------------------------------------------------------------------------------


def headline(report: WeeklyReport) -> list[str]:
    """The analyst's first lines: the significant movers, largest first, or that nothing moved."""
    previous = report.weeks[-2]
    if not report.movers:
        return [
            f"No label share changed significantly from the week of {previous} "
            f"(Benjamini–Hochberg, q ≤ {report.alpha}, over {report.comparisons} comparisons)."
        ]
    lines = [m.sentence() for m in report.movers[:HEADLINE_MOVERS]]
    if len(report.movers) > HEADLINE_MOVERS:
        lines.append(f"… and {len(report.movers) - HEADLINE_MOVERS} more significant movers below.")
    return lines


def _n(value: int | None) -> str:
    return "withheld" if value is None else f"{value:,}"


def render_markdown(report: WeeklyReport) -> str:
    """A short summary for the Dagster UI: the headline, the top labels, the data-quality totals."""
    q = report.quality
    lines = [f"# Weekly report, week of {report.week}", "", "## What changed this week", ""]
    lines += [f"- {line}" for line in headline(report)]
    lines += ["", "| classifier | top labels (share, 95% CI) |", "|---|---|"]
    for d in report.distributions:
        top = [r for r in d.rows if r.label != SUPPRESSED][:3]
        lines.append(
            f"| {d.classifier} | " + "; ".join(f"{r.label} {r.share:.1%} ({r.low:.1%}–{r.high:.1%})" for r in top) + " |"
        )
    cost = "n/a (no prices)" if q.cost is None else f"{q.cost:.4f}"
    lines += [
        "",
        f"Conversations: {_n(q.conversations)}; LLM requests {q.requests:,} ({q.llm_calls:,} HTTP calls, "
        f"{q.failed_requests} failed), {q.prompt_tokens:,} prompt + {q.completion_tokens:,} completion tokens, cost {cost}; "
        f"saved: " + ", ".join(f"{why} {n:,}" for why, n in q.saved.items()) + ".",
        "",
        f"Every number holds at least {report.min_group_size} conversations (min_group_size).",
    ]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;line-height:1.45}
h1{font-size:1.6rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.up{color:#1a7f37}.down{color:#cf222e}
.headline{background:#f6f8fa;border-left:4px solid #0969da;padding:.6rem 1rem}img{max-width:100%;height:auto}
details code{display:block;white-space:normal;word-break:break-all;font-size:.75rem;max-height:12rem;overflow:auto}
.muted{color:#656d76;font-size:.85rem}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _img(png_b64: str, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{png_b64}">'


def _drill(ids: Sequence[str], total: int) -> str:
    if not ids:
        return ""
    shown = f"first {len(ids)} of {total:,}" if total > len(ids) else f"{total:,}"
    return f"<details><summary>ids ({shown})</summary><code>{_e(' '.join(ids))}</code></details>"


def render_html(report: WeeklyReport, charts) -> str:
    """One self-contained page: styles inline, charts as data URIs, nothing fetched."""
    q = report.quality
    weeks = f"{report.weeks[0]} to {report.week}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>semtel weekly report {report.week}</title><style>{_CSS}</style></head><body>",
        f"<h1>Weekly report: week of {report.week}</h1>",
        f"<p class='muted'>Trend window {weeks}. Every number holds at least {report.min_group_size} conversations "
        f"(smaller groups are merged into {_e(SUPPRESSED)} or withheld). Changes: two-proportion z-tests against the "
        f"previous week, Benjamini–Hochberg over {report.comparisons} comparisons, q ≤ {report.alpha}.</p>",
        "<h2>What changed this week</h2><div class='headline'><ul>",
        *(f"<li>{_e(line)}</li>" for line in headline(report)),
        "</ul></div>",
    ]
    for d in report.distributions:
        parts.append(f"<h2>{_e(d.classifier)}</h2><p class='muted'>{_n(d.labeled)} conversations labeled.</p>")
        parts.append(_img(charts.distribution(d), f"{d.classifier} distribution"))
        parts.append(
            "<table><tr><th>label</th><th>conversations</th><th>share</th><th>95% CI</th><th>previous week</th>"
            "<th>q</th><th>drill-down</th></tr>"
        )
        for r in d.rows:
            change = ""
            if r.previous_share is not None:
                css = ("up" if r.share > r.previous_share else "down") if r.significant else ""
                change = f"<span class='{css}'>{r.previous_share:.1%} → {r.share:.1%}</span>"
            name = f"{_e(r.label)} ({r.suppressed_labels} labels)" if r.label == SUPPRESSED else _e(r.label)
            parts.append(
                f"<tr><td>{name}</td><td class='n'>{r.conversations:,}</td><td class='n'>{r.share:.1%}</td>"
                f"<td class='n'>{r.low:.1%}–{r.high:.1%}</td><td>{change}</td>"
                f"<td class='n'>{'' if r.q_value is None else f'{r.q_value:.3g}'}</td><td>{_drill(r.ids, r.ids_total)}</td></tr>"
            )
        parts.append("</table>")
        if any(v is not None for series in d.trend.values() for v in series):
            parts.append(_img(charts.trend(d, report.weeks), f"{d.classifier} trend"))
    if report.heatmaps:
        parts.append("<h2>Cross-tabs</h2>")
        for h in report.heatmaps:
            parts.append(f"<h3>{_e(h.classifier_a)} × {_e(h.classifier_b)}</h3>")
            parts.append(
                f"<p class='muted'>{_n(h.labeled_both)} conversations labeled by both; blank cells: none or withheld.</p>"
            )
            parts.append(_img(charts.heatmap(h), f"{h.classifier_a} x {h.classifier_b} heatmap"))
            if h.ids:
                parts.append("<details><summary>drill-down ids per cell</summary><table>")
                parts += [
                    f"<tr><td>{_e(la)} × {_e(lb)}</td><td>{_drill(ids, total)}</td></tr>"
                    for (la, lb), (ids, total) in sorted(h.ids.items())
                ]
                parts.append("</table></details>")
    if report.engagement:
        parts.append(
            "<h2>Engagement by label</h2><p class='muted'>Mean (or share of true) per label with 95% intervals, "
            "over the conversations whose records carried the signal.</p>"
        )
        for t in report.engagement:
            parts.append(f"<h3>{_e(t.metric)} by {_e(t.classifier)}</h3>")
            parts.append(_img(charts.engagement(t), f"{t.metric} by {t.classifier}"))
            fmt = "{:.1%}" if t.kind == "share" else "{:,.2f}"
            parts.append("<table><tr><th>label</th><th>conversations</th><th>value</th><th>95% CI</th></tr>")
            parts += [
                f"<tr><td>{_e(c.label)}</td><td class='n'>{c.n:,}</td><td class='n'>{fmt.format(c.value)}</td>"
                f"<td class='n'>{fmt.format(c.low)}–{fmt.format(c.high)}</td></tr>"
                for c in t.cells
            ]
            parts.append("</table>")
    parts.append("<h2>Data quality</h2><table>")
    cost = "n/a (no prices in the endpoints file)" if q.cost is None else f"{q.cost:,.4f}"
    if q.unpriced_models and q.cost is not None:
        cost += f" (no price for {', '.join(q.unpriced_models)})"
    rows = [
        ("conversations", _n(q.conversations)),
        *((f"coverage: {c}", "withheld" if v is None else f"{v:.1%}") for c, v in q.coverage.items()),
        ("LLM requests (failed)", f"{q.requests:,} ({q.failed_requests:,})"),
        ("HTTP calls (retries included)", f"{q.llm_calls:,}"),
        ("prompt / completion tokens", f"{q.prompt_tokens:,} / {q.completion_tokens:,}"),
        ("cost", cost),
        *((f"saved: {why}", f"{n:,}") for why, n in q.saved.items()),
    ]
    parts += [f"<tr><th>{_e(k)}</th><td class='n'>{_e(v)}</td></tr>" for k, v in rows]
    parts.append("</table><h3>Ingest rejects by reason</h3>")
    parts.append(_reasons([("", r, n) for r, n in q.ingest_rejects]))
    parts.append("<h3>Parse failures by classifier and reason</h3>")
    parts.append(_reasons(list(q.parse_failures)))
    parts.append("</body></html>")
    return "\n".join(parts)


def _reasons(rows: list[tuple[str, str, int | None]]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    body = "".join(f"<tr><td>{_e(c)}</td><td>{_e(r)}</td><td class='n'>{_n(n)}</td></tr>" for c, r, n in rows)
    return f"<table><tr><th></th><th>reason</th><th>count</th></tr>{body}</table>"


# ---- writing ---------------------------------------------------------------------------------------


def report_path(lake_root: str, week: dt.date) -> str:
    """``<lake>/reports/week_start=YYYY-MM-DD/report.html``: one file per week, replaced by a rerun."""
    return f"{lake_root.rstrip('/')}/{REPORTS_FOLDER}/week_start={week.isoformat()}/report.html"


def write_text_atomic(path: str, text: str) -> str:
    """Write ``text`` so a reader sees the old file or the new one, never half of one: a temporary file
    renamed over the target on a local path, one object upload (atomic by itself) on an object store."""
    data = text.encode("utf-8")
    if "://" in path and not path.startswith("file://"):
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        with filesystem.open_output_stream(inner) as out:
            out.write(data)
        return path
    target = Path(path.removeprefix("file://")).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".report-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return str(target)


def prices_of(endpoints_file: str | None) -> dict[str, ModelPrice]:
    """The ``prices`` of an endpoints file, for the cost line; none for the simulator (``sim``) or no file."""
    if not endpoints_file or not Path(endpoints_file).is_file():
        return {}
    return dict(load_endpoints(endpoints_file).prices)


@dataclass(frozen=True)
class WrittenReport:
    path: str
    markdown: str
    report: WeeklyReport


def weekly_report(
    lake_root: str,
    week: dt.date,
    *,
    weeks: int,
    min_group_size: int,
    prices: Mapping[str, ModelPrice] | None = None,
    out: str | None = None,
) -> WrittenReport:
    """Read the week, build the report, write its HTML (default under the lake's reports folder)."""
    from semtel_dagster.core.insights import charts

    plotter = charts.Charts()  # fails first, naming the extra, when matplotlib is missing
    report = build_report(read_inputs(lake_root, week, weeks), min_group_size, prices)
    path = write_text_atomic(out or report_path(lake_root, report.week), render_html(report, plotter))
    return WrittenReport(path, render_markdown(report), report)
