"""Deliberately broken tables fail the same gates, the same way, whether GX runs on pandas or on Spark.

A hand-made week with a duplicated id, a lost and an invented conversation, a transcript over budget,
an out-of-set label and unlabeled pairs; only the gates run (through Dagster), once per engine, and
their outcomes must match expectation for expectation. Three gates cover the invariant kinds (plain
columns, row conservation, labels per pair) at about 8 s of Spark each on two cores.
"""

import datetime as dt

import polars as pl
import pytest
from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

from semtel_dagster.checks.stage_checks import classifications_gate, conversations_gate, truncated_gate
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EngineResource, LakeResource, PipelineSettings

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]
GATES = [conversations_gate, truncated_gate, classifications_gate]


def _write(lake, table, rows):
    schema = tables.TABLES[table]
    frame = pl.DataFrame([{name: row.get(name) for name in schema} | {"week_start": WEEK} for row in rows], schema=schema)
    delta.overwrite_weeks(delta.table_uri(str(lake), table), frame, schema, [WEEK])


def _broken_week(lake, settings):
    labels = {name: c.labels[0] for name, c in settings.load_classifiers().items()}
    messages = [{"role": "user", "content": "hi"}]
    ids = ["c1", "c2", "c2", "c3", "c4"]  # c2 twice
    _write(lake, "conversations", [{"conversation_id": cid, "n_turns": 1, "messages": messages} for cid in ids])
    _write(
        lake,
        "conversations_truncated",
        [
            {"conversation_id": cid, "tokens_before": tokens, "tokens_after": tokens}
            for cid, tokens in [("c1", 10), ("c2", 10), ("c4", 10**6), ("ghost", 10)]  # c3 lost, ghost invented
        ],
    )
    _write(
        lake,
        "classifications",
        [
            {"conversation_id": "c1", "classifier": "topic", "label": labels["topic"]},
            {"conversation_id": "c1", "classifier": "satisfaction", "label": "not-a-label"},
            {"conversation_id": "c2", "classifier": "topic", "label": labels["topic"]},
        ],
    )
    _write(lake, "classification_rejects", [{"conversation_id": "c3", "classifier": "topic", "reason": "unparseable"}])


def _gate_outcomes(lake, settings, engine):
    """Check name -> (passed, description, results with unexpected samples in a stable order)."""
    gates_only = Definitions(jobs=[define_asset_job("gates", selection=AssetSelection.checks(*GATES))])
    defs = Definitions.merge(build_definitions(lake=LakeResource(root=str(lake)), settings=settings, engine=engine), gates_only)
    with DagsterInstance.ephemeral() as instance:  # a checks-only job takes its partition from the run tag
        result = defs.resolve_job_def("gates").execute_in_process(
            tags={"dagster/partition": WEEK.isoformat()}, instance=instance, raise_on_error=False
        )
    outcomes = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            results = evaluation.metadata["results"].value
            for r in results:
                if isinstance(r["observed"], dict) and "partial_unexpected_list" in r["observed"]:
                    r["observed"]["partial_unexpected_list"].sort(key=repr)
            outcomes[evaluation.asset_check_key.name] = (evaluation.passed, evaluation.description, results)
    return outcomes


def test_broken_tables_fail_the_gates_on_spark_exactly_as_on_polars(tmp_path, spark):
    settings = PipelineSettings(classifiers=CLASSIFIERS, max_transcript_tokens=100)
    _broken_week(tmp_path / "lake", settings)
    on_polars = _gate_outcomes(tmp_path / "lake", settings, EngineResource(kind="polars"))
    on_spark = _gate_outcomes(tmp_path / "lake", settings, EngineResource(kind="spark", spark_master="local[2]"))

    assert set(on_polars) == set(on_spark) == {gate.check_key.name for gate in GATES}
    for name, (passed, description, results) in on_spark.items():
        assert not passed, name
        assert description == "great-expectations on spark" and on_polars[name][1] == "great-expectations on pandas"
        assert results == on_polars[name][2], name
    failed = {
        name: sorted((r["expectation"], r["kwargs"].get("column")) for r in results if not r["success"])
        for name, (_, _, results) in on_spark.items()
    }
    in_set = "expect_column_values_to_be_in_set"
    assert failed == {
        "conversations_gate": [("expect_column_values_to_be_unique", "conversation_id")],
        "truncated_gate": [(in_set, "expected"), (in_set, "produced"), (in_set, "within_budget")],
        "classifications_gate": [
            (in_set, "label_in_set"),
            ("expect_column_values_to_not_be_null", "outcome"),
            ("expect_compound_columns_to_be_unique", None),
        ],
    }
    duplicated = next(r for r in on_spark["conversations_gate"][2] if r["expectation"] == "expect_column_values_to_be_unique")
    assert duplicated["observed"]["unexpected_count"] == 2 and duplicated["observed"]["partial_unexpected_list"] == ["c2", "c2"]
