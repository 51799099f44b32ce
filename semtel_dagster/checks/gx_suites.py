"""Run great-expectations 1.x suites on stage outputs, on the engine the week lives on.

GX 1.x has no Polars support, so Polars frames are validated through pandas (Arrow-backed, no copy of
strings); Spark DataFrames through GX's Spark data source, whose metrics are Spark aggregations that
return counts and a few unexpected values, never the rows. One ephemeral context per process keeps
validation fast and leaves no files behind. Invariants that span tables (row conservation,
representatives that exist) are first derived as boolean columns (``invariants``), then asserted with
ordinary expectations, so every gate reads the same way in the UI on either engine: a suite, its
expectations, and what each observed.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from functools import lru_cache

import polars as pl

_names = itertools.count()


@dataclass(frozen=True)
class SuiteOutcome:
    suite: str
    success: bool
    results: list[dict]
    engine: str  # where GX computed the metrics: "pandas" or "spark"

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if not r["success"]]

    def metadata(self) -> dict:
        """Check metadata for the Dagster UI: counts, and each expectation with what it observed."""
        return {
            "suite": self.suite,
            "expectations": len(self.results),
            "failed_expectations": len(self.failed),
            "results": json.loads(json.dumps(self.results, default=_json_value)),
        }


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx  # ~2 s: imported by the first check, not by the code location
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _observed(result: dict) -> object:
    if "observed_value" in result:
        return result["observed_value"]
    return {k: result[k] for k in ("element_count", "unexpected_count", "partial_unexpected_list") if k in result}


def validate(frame, suite_name: str, expectations: list) -> SuiteOutcome:
    """Validate ``frame`` (Polars, or a Spark DataFrame) against the expectations; never raises on failed ones."""
    from great_expectations import ExpectationSuite

    context = _context()
    unique = f"{suite_name}_{next(_names)}"
    on_spark = not isinstance(frame, pl.DataFrame)
    if on_spark:  # persisted for the suite's few passes over it, released below; GX's own persist never is
        source, data = context.data_sources.add_spark(unique, persist=False), frame.persist()
    else:
        source, data = context.data_sources.add_pandas(unique), frame.to_pandas(use_pyarrow_extension_array=True)
    batch_definition = source.add_dataframe_asset(unique).add_batch_definition_whole_dataframe(unique)
    suite = context.suites.add(ExpectationSuite(name=unique))
    for expectation in expectations:
        suite.add_expectation(expectation)
    try:
        result = batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(suite)
    finally:
        context.suites.delete(unique)
        context.data_sources.delete(unique)
        if on_spark:
            data.unpersist()
    results = [
        {
            "expectation": r.expectation_config.type,
            "kwargs": {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id" and not _is_big(v)},
            "success": bool(r.success),
            "observed": _observed(r.result or {}),
        }
        for r in result.results
    ]
    return SuiteOutcome(suite=suite_name, success=bool(result.success), results=results, engine="spark" if on_spark else "pandas")


def _json_value(value: object) -> object:
    """pandas' missing value is null, as Spark reports it; dates and the like as text."""
    import pandas as pd  # here: the code location imports this module, only a running gate needs pandas

    return None if value is pd.NA else str(value)


def _is_big(value: object) -> bool:
    return isinstance(value, (list, set, tuple)) and len(value) > 30
