"""The weekly report's charts as base64 PNG (matplotlib, Agg backend), to inline in one HTML file.

Charts draw only what the report model holds, which is already at the minimum group size: a
withheld cell is blank, a week where a label was not published is a gap in its line.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math

from semtel_dagster.core.insights.privacy import SUPPRESSED
from semtel_dagster.core.insights.report import Distribution, EngagementTable, Heatmap
from semtel_dagster.extras import require

FEATURE = "the weekly report charts"
TREND_LABELS = 8  # lines per trend chart: the largest labels of the week


class Charts:
    """matplotlib imported once, here and not at import: the code location loads this module's callers
    and never plots unless a report is made."""

    def __init__(self) -> None:
        require("matplotlib", "eval", FEATURE).use("Agg")  # files only, no display
        self.plt = require("matplotlib.pyplot", "eval", FEATURE)
        self.percent = require("matplotlib.ticker", "eval", FEATURE).PercentFormatter(1.0)

    def _png(self, fig) -> str:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=96)
        self.plt.close(fig)
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    def distribution(self, d: Distribution) -> str:
        """Shares with their 95 % Wilson intervals, largest first."""
        rows = list(d.rows)[::-1]
        fig, ax = self.plt.subplots(figsize=(7.5, max(1.6, 0.32 * len(rows) + 0.8)))
        shares = [r.share for r in rows]
        errors = [[r.share - r.low for r in rows], [r.high - r.share for r in rows]]
        colors = ["#8c959f" if r.label == SUPPRESSED else ("#0969da" if not r.significant else "#bf8700") for r in rows]
        ax.barh([r.label for r in rows], shares, xerr=errors, color=colors, ecolor="#57606a", capsize=2)
        ax.set_xlabel("share of labeled conversations (95% Wilson interval; amber: significant change)")
        ax.xaxis.set_major_formatter(self.percent)
        ax.tick_params(axis="y", labelsize=8)
        return self._png(fig)

    def trend(self, d: Distribution, weeks: tuple[dt.date, ...]) -> str:
        """Share per week of the week's largest labels; gaps where a week did not publish the label."""
        fig, ax = self.plt.subplots(figsize=(7.5, 3.0))
        labels = [r.label for r in d.rows if r.label in d.trend][:TREND_LABELS]
        x = [w.isoformat()[5:] for w in weeks]
        for label in labels:
            ax.plot(x, [math.nan if v is None else v for v in d.trend[label]], marker="o", markersize=3, label=label)
        ax.yaxis.set_major_formatter(self.percent)
        ax.set_xlabel("week (month-day)")
        ax.set_title(f"{d.classifier}: share per week", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        return self._png(fig)

    def heatmap(self, h: Heatmap) -> str:
        """Conversations per pair of labels; blank where there is no published count."""
        import numpy as np

        values = np.array([[math.nan if v is None else v for v in row] for row in h.counts], dtype=float)
        fig, ax = self.plt.subplots(figsize=(max(4.5, 0.45 * len(h.columns) + 2.5), max(2.5, 0.3 * len(h.rows) + 1.5)))
        ax.imshow(np.ma.masked_invalid(values), cmap="Blues", aspect="auto")
        ax.set_xticks(range(len(h.columns)), h.columns, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(h.rows)), h.rows, fontsize=7)
        peak = np.nanmax(values) if np.isfinite(values).any() else 0
        for i, row in enumerate(h.counts):
            for j, v in enumerate(row):
                if v is not None:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color="white" if v > peak / 2 else "black")
        ax.set_xlabel(h.classifier_b)
        ax.set_ylabel(h.classifier_a)
        return self._png(fig)

    def engagement(self, t: EngagementTable) -> str:
        """Mean (or share) per label with its 95 % interval."""
        cells = list(t.cells)[::-1]
        fig, ax = self.plt.subplots(figsize=(7.5, max(1.6, 0.3 * len(cells) + 0.8)))
        errors = [[c.value - c.low for c in cells], [c.high - c.value for c in cells]]
        ax.barh([c.label for c in cells], [c.value for c in cells], xerr=errors, color="#2da44e", ecolor="#57606a", capsize=2)
        if t.kind == "share":
            ax.xaxis.set_major_formatter(self.percent)
        ax.set_xlabel(f"{t.metric} ({'share true' if t.kind == 'share' else 'mean'}, 95% interval)")
        ax.tick_params(axis="y", labelsize=8)
        return self._png(fig)
