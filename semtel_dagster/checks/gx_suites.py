"""Run great-expectations 1.x suites on stage outputs.

GX 1.x has no Polars support, so frames are validated through pandas (Arrow-backed, no copy of
strings). One ephemeral context per process keeps validation fast and leaves no files behind.
Invariants that span tables (row conservation, representatives that exist) are first derived as
boolean columns with Polars, then asserted with ordinary expectations, so every gate reads the same
way in the UI: a suite, its expectations, and what each observed.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from functools import lru_cache

import great_expectations as gx
import polars as pl
from great_expectations.data_context.types.base import ProgressBarsConfig

_names = itertools.count()


@dataclass(frozen=True)
class SuiteOutcome:
    suite: str
    success: bool
    results: list[dict]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if not r["success"]]

    def metadata(self) -> dict:
        """Check metadata for the Dagster UI: counts, and each expectation with what it observed."""
        return {
            "suite": self.suite,
            "expectations": len(self.results),
            "failed_expectations": len(self.failed),
            "results": json.loads(json.dumps(self.results, default=str)),
        }


@lru_cache(maxsize=1)
def _context():
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _observed(result: dict) -> object:
    if "observed_value" in result:
        return result["observed_value"]
    return {k: result[k] for k in ("element_count", "unexpected_count", "partial_unexpected_list") if k in result}


def validate(frame: pl.DataFrame, suite_name: str, expectations: list) -> SuiteOutcome:
    """Validate ``frame`` against the expectations; never raises on failed expectations."""
    context = _context()
    unique = f"{suite_name}_{next(_names)}"
    source = context.data_sources.add_pandas(unique)
    batch_definition = source.add_dataframe_asset(unique).add_batch_definition_whole_dataframe(unique)
    suite = context.suites.add(gx.ExpectationSuite(name=unique))
    for expectation in expectations:
        suite.add_expectation(expectation)
    try:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas(use_pyarrow_extension_array=True)})
        result = batch.validate(suite)
    finally:
        context.suites.delete(unique)
        context.data_sources.delete(unique)
    results = [
        {
            "expectation": r.expectation_config.type,
            "kwargs": {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id" and not _is_big(v)},
            "success": bool(r.success),
            "observed": _observed(r.result or {}),
        }
        for r in result.results
    ]
    return SuiteOutcome(suite=suite_name, success=bool(result.success), results=results)


def _is_big(value: object) -> bool:
    return isinstance(value, (list, set, tuple)) and len(value) > 30
