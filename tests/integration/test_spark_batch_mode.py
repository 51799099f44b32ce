"""Batch mode on the Spark engine: one submitter on the driver over the week's planned requests, the
same batches' answers and labels as the Polars engine."""

from __future__ import annotations

import polars as pl
import pytest
from test_batch_mode import _classify, _labels, sample  # noqa: F401  # the module's sample fixture

from semtel_dagster.core.llm import batch_state as bs

pytestmark = pytest.mark.integration


def test_spark_engine_in_batch_mode_matches_polars(tmp_path, sample):  # noqa: F811
    code, polars_run = _classify(tmp_path, sample, tmp_path / "polars", "--mode", "batch")
    assert code == 0
    code, spark_run = _classify(
        tmp_path, sample, tmp_path / "spark", "--mode", "batch", "--engine", "spark", "--spark-master", "local[2]"
    )
    assert code == 0 and spark_run["requests"] == polars_run["requests"]
    assert _labels(tmp_path / "spark").equals(_labels(tmp_path / "polars"))
    records = bs.latest_records(pl.read_delta(str(tmp_path / "spark" / "llm_batches")))
    expected = {rid for r in bs.latest_records(pl.read_delta(str(tmp_path / "polars" / "llm_batches"))) for rid in r.request_ids}
    assert {r.status for r in records} == {bs.COLLECTED} and {rid for r in records for rid in r.request_ids} == expected
