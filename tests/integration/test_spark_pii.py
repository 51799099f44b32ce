"""The Spark engine writes the same scrubbed ``conversations_truncated`` as Polars: the scrubber runs per
partition (``mapInArrow``), its redaction totals are counted on Spark, and no planted value is in the table."""

import polars as pl
import pytest

from benchmarks.pii.plant import planted_sample
from semtel_dagster.core.evaluation.experiment import EVAL_WEEK, sample_week
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.prepare.scrub import redaction_totals
from semtel_dagster.engines.pipeline import Pipeline
from semtel_dagster.resources import EngineResource, PipelineSettings

pytestmark = pytest.mark.integration


def test_spark_scrubs_and_counts_as_polars_does(tmp_path, spark):
    planted, values = planted_sample(60)
    conversations = sample_week(
        pl.DataFrame(planted, schema={"conversation_id": pl.String, "messages": tables.CONVERSATIONS["messages"]})
    )
    written, tables_read = {}, {}
    for kind in ("polars", "spark"):
        engine = EngineResource(kind=kind, spark_master="local[2]").for_lake(str(tmp_path / kind))
        delta.overwrite_weeks(
            delta.table_uri(str(tmp_path / kind), "conversations"), conversations, tables.CONVERSATIONS, [EVAL_WEEK]
        )
        written[kind] = Pipeline(engine, PipelineSettings()).truncate(EVAL_WEEK)
        uri = delta.table_uri(str(tmp_path / kind), "conversations_truncated")
        tables_read[kind] = delta.read_weeks(uri, tables.CONVERSATIONS_TRUNCATED, [EVAL_WEEK]).sort("conversation_id")
    assert tables_read["spark"].equals(tables_read["polars"])
    totals = redaction_totals(written["spark"].frame)  # on the Spark DataFrame
    assert totals == redaction_totals(written["polars"].frame) and sum(totals.values()) >= len(values)
    transcripts = "\n".join(tables_read["spark"].get_column("transcript").to_list())
    assert [v for v in values if v in transcripts] == []
