"""Which engine runs the stages, chosen per run: ``polars`` here, or ``spark`` on any master or Spark Connect.

Each engine builds itself from these settings (``engines.open_engine``): the Spark session comes from
dagster-pyspark's ``LazyPySparkResource``, so a Polars run never starts a JVM and a Spark run starts one
session that every step of the process shares.
"""

from __future__ import annotations

import os
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from semtel_dagster.engines import Engine, open_engine

# Settings every session needs: UTC so Dates and timestamps round-trip unchanged, quiet consoles.
SESSION_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
}


class EngineResource(ConfigurableResource):
    kind: Literal["polars", "spark"] = Field(
        default_factory=lambda: os.environ.get("SEMTEL_ENGINE", "polars"),  # type: ignore[arg-type]  # the value is validated as config
        description="polars: one machine; spark: per-partition tasks on a Spark cluster.",
    )
    spark_master: str = Field(
        default_factory=lambda: os.environ.get("SEMTEL_SPARK_MASTER", "local[*]"),
        description="Spark master (local[*], spark://host:7077, yarn, k8s://...); ignored with spark_remote.",
    )
    spark_remote: str | None = Field(
        default_factory=lambda: os.environ.get("SEMTEL_SPARK_REMOTE"),
        description="Spark Connect URL (sc://host:15002); wins over spark_master.",
    )
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings (spark.executor.memory, ...).")
    delta_writer: Literal["delta-rs", "native"] = Field(
        default="delta-rs",
        description="delta-rs: executors write Parquet, the driver commits (no jars); native: format('delta').",
    )
    classify_tasks: int | None = Field(
        default=None, gt=0, description="Concurrent dispatch tasks (default: the session's parallelism)."
    )

    def session_config(self) -> dict[str, str]:
        where = {"spark.remote": self.spark_remote} if self.spark_remote else {"spark.master": self.spark_master}
        return {**SESSION_DEFAULTS, **where, **self.spark_conf}

    def for_lake(self, lake_root: str) -> Engine:
        return open_engine(self.kind, lake_root, self)
