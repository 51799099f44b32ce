"""Both Spark writers of the lake contract: replace one week atomically, leave other weeks alone."""

import datetime as dt
import os

import pytest
from deltalake import DeltaTable

from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.engines.quota import share_endpoints
from semtel_dagster.engines.spark_delta import overwrite_week, read_week

W1, W2 = dt.date(2026, 11, 9), dt.date(2026, 11, 16)
SCHEMA = "week_start date, classifier string, label string, conversations long, share double, labeled_conversations long, suppressed_labels long"


def _rows(spark, week, n):
    return spark.createDataFrame([(week, "topic", f"l{i}", i, 1 / (i + 1), n, 0) for i in range(n)], SCHEMA)


def _weeks(uri):
    frame = delta.read_weeks(uri, tables.WEEKLY_INSIGHTS, [W1, W2])
    return dict(frame.group_by("week_start").len().iter_rows())


def test_delta_rs_commit_replaces_one_week_and_reads_only_logged_files(tmp_path, spark):
    uri = str(tmp_path / "weekly_insights")
    for week, n in ((W1, 3), (W2, 5), (W2, 2)):
        overwrite_week(_rows(spark, week, n).repartition(2), uri, tables.WEEKLY_INSIGHTS, week)
    assert _weeks(uri) == {W1: 3, W2: 2}
    assert DeltaTable(uri).version() == 3  # create + one commit per write
    # files of the replaced week are still on disk, removed only in the log: Spark must not see them
    on_disk = list((tmp_path / "weekly_insights" / f"week_start={W2}").glob("*.parquet"))
    assert len(on_disk) > len(DeltaTable(uri).file_uris(partition_filters=[("week_start", "=", str(W2))]))
    assert read_week(spark, uri, tables.WEEKLY_INSIGHTS, W2).count() == 2


def test_delta_rs_commit_rejects_rows_of_another_week(tmp_path, spark):
    uri = str(tmp_path / "weekly_insights")
    overwrite_week(_rows(spark, W1, 2), uri, tables.WEEKLY_INSIGHTS, W1)
    with pytest.raises(Exception, match="outside the week"):
        overwrite_week(_rows(spark, W2, 2), uri, tables.WEEKLY_INSIGHTS, W1)
    assert _weeks(uri) == {W1: 2}


def test_native_delta_writer_on_a_spark_connect_server_with_delta(tmp_path):
    """Sail (pysail) is a Spark Connect server with Delta built in: the `format("delta")` implementation."""
    sail = pytest.importorskip("pysail.spark")
    from pyspark.sql import SparkSession

    environ_before = set(os.environ)
    server = sail.SparkConnectServer(port=0)
    server.start(background=True)
    host, port = server.listening_address
    remote = SparkSession.builder.remote(f"sc://{host}:{port}").create()
    try:
        uri = str(tmp_path / "weekly_insights")
        for week, n in ((W1, 3), (W2, 5), (W2, 4)):
            overwrite_week(_rows(remote, week, n), uri, tables.WEEKLY_INSIGHTS, week, writer="native")
        assert _weeks(uri) == {W1: 3, W2: 4}
        assert read_week(remote, uri, tables.WEEKLY_INSIGHTS, W2, writer="native").count() == 4
    finally:
        remote.stop()
        server.stop()
        for flag in set(os.environ) - environ_before:  # pyspark marks the process as Spark Connect
            del os.environ[flag]


def test_each_task_gets_an_equal_share_of_every_quota():
    pool = [
        Endpoint(name="a", base_url="http://x/v1", model="m", tpm=1000, rpm=10, max_concurrency=5),
        Endpoint(name="b", base_url="http://y/v1", model="m"),
    ]
    shared = share_endpoints(pool, 3)
    assert [(e.tpm, e.rpm, e.max_concurrency) for e in shared] == [(333, 3, 2), (None, None, 11)]
    assert sum(e.tpm for e in [shared[0]] * 3) <= 1000
