"""The lake: where the weekly Delta tables live (a local folder or any URI delta-rs supports)."""

import datetime as dt
import os
from pathlib import Path

import polars as pl
from dagster import ConfigurableResource, DagsterInstance
from pydantic import Field

from semtel_dagster.core.lake import delta, locks, tables

DEFAULT_LAKE = ".semtel/lake"


class LakeResource(ConfigurableResource):
    """Reads and atomically overwrites week partitions of the pipeline's tables."""

    root: str = Field(
        default_factory=lambda: os.environ.get("SEMTEL_LAKE", DEFAULT_LAKE),
        description="Lake root: a folder, or an s3:// abfss:// gs:// URI (credentials from the environment).",
    )

    def uri(self, table: str) -> str:
        return delta.table_uri(self.root, table)

    def read_week(self, table: str, week: dt.date) -> pl.DataFrame:
        return delta.read_weeks(self.uri(table), tables.TABLES[table], [week])

    def read_weeks(self, table: str, weeks: list[dt.date]) -> pl.DataFrame:
        return delta.read_weeks(self.uri(table), tables.TABLES[table], weeks)

    def overwrite_week(self, table: str, frame: pl.DataFrame, week: dt.date) -> int:
        return delta.overwrite_weeks(self.uri(table), frame, tables.TABLES[table], [week])

    def append(self, table: str, frame: pl.DataFrame) -> None:
        delta.append(self.uri(table), frame, tables.TABLES[table])


def open_dagster_instance(dagster_home: Path) -> DagsterInstance:
    """The instance of ``dagster_home`` (as ``DAGSTER_HOME``), its storage created by one process at a time:
    two runs initializing a fresh SQLite home at once fail with ``table ... already exists``."""
    with locks.dagster_instance_creation(dagster_home):
        instance = DagsterInstance.from_config(str(dagster_home))
        instance.get_runs(limit=1)  # the run and event storages exist before the lock is released
    return instance
