"""One definition of a computation for both engines' frames, through narwhals.

A function written against narwhals runs on a Polars DataFrame (one machine) and, distributed, on a
Spark DataFrame, where it stays lazy. Only results known to be small (a row of aggregates, counts per
label, a few rows) are collected into Polars, so a Spark week never crosses into the driver.
"""

from __future__ import annotations

import narwhals.stable.v2 as nw
import polars as pl


def collect_small(frame) -> pl.DataFrame:
    """A small result as Polars: collected from Spark, as it is from Polars."""
    frame = nw.from_native(frame)
    return frame.collect(backend="polars").to_native() if isinstance(frame, nw.LazyFrame) else frame.to_polars()


def summary(frame, **aggregations: nw.Expr) -> dict:
    """One row of aggregates, computed where the frame lives."""
    return collect_small(nw.from_native(frame).select(**aggregations)).row(0, named=True)


def value_counts(frame, *by: str | nw.Expr, top: int | None = None) -> pl.DataFrame:
    """Rows per distinct ``by`` (column ``len``), counted where the frame lives; ``top`` keeps the most frequent."""
    counted = nw.from_native(frame).group_by(*by).agg(nw.len().cast(nw.Int64))
    return collect_small(counted if top is None else counted.sort("len", descending=True).head(top))
