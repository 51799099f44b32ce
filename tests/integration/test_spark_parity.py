"""The same sample week through both engines, end to end through Dagster: identical tables, and the same
asset metadata and gates in the UI, the Spark run's gates validated on Spark.

Both runs call the embedded simulator over real HTTP and write real Delta tables; only the columns that
record how a request went (timing, which endpoint, retries) may differ.
"""

import datetime as dt

import polars as pl
import pytest
from dagster import DagsterInstance
from deltalake import DeltaTable

from semtel_dagster.checks.stage_checks import STAGE_GATES
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, EngineResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]
ENGINE_SPECIFIC = {"sample", "dagster/uri", "delta_version"}  # row order, lake folder, commits per write
HOW_IT_WENT = {"llm_responses": ["latency_ms", "created_at", "attempts", "rate_limited", "endpoint", "cached_tokens"]}


def _materialize(home, lake, engine):
    defs = build_definitions(
        lake=LakeResource(root=str(lake)),
        settings=PipelineSettings(landing_dir=str(home / "landing"), classifiers=CLASSIFIERS),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim", flush_rows=25),
        engine=engine,
    )
    with DagsterInstance.ephemeral() as instance:
        return defs.resolve_job_def("weekly_pipeline").execute_in_process(
            partition_key=WEEK.isoformat(), instance=instance, raise_on_error=False
        )


def _table(lake, name):
    frame = delta.read_weeks(delta.table_uri(str(lake), name), tables.TABLES[name], [WEEK])
    frame = frame.drop(HOW_IT_WENT.get(name, []))
    return frame.sort(frame.columns, nulls_last=True)


def _reported(result):
    """What the UI shows: metadata per asset; per check its metadata keys, outcome and description."""
    assets, checks = {}, {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            assets[materialization.asset_key.to_user_string()] = dict(materialization.metadata)
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            checks[evaluation.asset_check_key.name] = (set(evaluation.metadata), evaluation.passed, evaluation.description)
    return assets, checks


def test_polars_and_spark_engines_write_identical_tables(tmp_path, spark):
    write_week(tmp_path / "landing", tmp_path / "truth", WEEK, n=150, seed=11)
    # a second landing file repeating two ids: the cross-file "first seen wins" rule must hold on Spark
    first = (tmp_path / "landing" / f"sample-{WEEK}.jsonl").read_bytes().splitlines()
    (tmp_path / "landing" / "zz-replayed.jsonl").write_bytes(b"\n".join(first[:3]) + b"\n")
    polars_run = _materialize(tmp_path, tmp_path / "lake-polars", EngineResource(kind="polars"))
    spark_run = _materialize(
        tmp_path, tmp_path / "lake-spark", EngineResource(kind="spark", spark_master="local[2]", classify_tasks=2)
    )
    assert polars_run.success and spark_run.success
    (polars_assets, polars_checks), (spark_assets, spark_checks) = _reported(polars_run), _reported(spark_run)
    assert spark_assets.keys() == polars_assets.keys() == set(tables.TABLES)
    for name in set(tables.TABLES) - {"llm_responses"}:  # classify reports how each engine dispatched
        assert spark_assets[name].keys() == polars_assets[name].keys(), name
        for key in spark_assets[name].keys() - ENGINE_SPECIFIC:
            assert spark_assets[name][key] == polars_assets[name][key], (name, key)
    # the same checks, the same outcomes: every gate passes; the drift check of a first week is a warning
    # that says it had nothing to compare, on both engines
    outcomes = {name: (keys, passed) for name, (keys, passed, _) in spark_checks.items()}
    assert outcomes == {name: (keys, passed) for name, (keys, passed, _) in polars_checks.items()}
    assert all(passed for name, (_, passed) in outcomes.items() if name != "label_drift_warning")
    assert outcomes["label_drift_warning"] == ({"previous_week", "rows", "skipped"}, False)
    for gate in STAGE_GATES:
        assert spark_checks[gate.check_key.name][2] == "great-expectations on spark", gate.check_key.name
        assert polars_checks[gate.check_key.name][2] == "great-expectations on pandas", gate.check_key.name
    # the Spark lake's big tables were written by executors (our file names), not by delta-rs on the driver
    spark_files = DeltaTable(str(tmp_path / "lake-spark" / "conversations")).file_uris()
    assert spark_files and all("-c000" not in f for f in spark_files)

    duplicates = _table(tmp_path / "lake-polars", "ingest_rejects").filter(pl.col("reason").str.starts_with("duplicate"))
    assert duplicates.height >= 2
    for name in tables.TABLES:
        expected, actual = _table(tmp_path / "lake-polars", name), _table(tmp_path / "lake-spark", name)
        assert expected.height > 0 or name in ("classification_rejects", "conversation_embeddings"), (
            name
        )  # exact dedupe: no vectors
        assert actual.schema == expected.schema, name
        assert actual.equals(expected), f"{name} differs between engines"
