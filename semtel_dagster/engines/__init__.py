"""The engine seam: the same stage logic on one machine (Polars) or distributed (PySpark).

Assets hand an engine the ``core`` function of their stage, already bound to its settings; the engine
decides where it runs. The Polars engine calls it on the whole week; the Spark engine calls the very
same function per partition (``mapInArrow``) and adds Spark-native shuffles only for the global steps
(duplicate ids across landing files, exact-duplicate clusters, aggregation). Both read and replace weeks
of the same Delta tables, so a week computed by either engine is the same table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from semtel_dagster.core import delta, tables
from semtel_dagster.core.classify import ClassifyPlan
from semtel_dagster.core.ingest import IngestResult

Stage = Callable[[pl.DataFrame], pl.DataFrame]
Reader = Callable[[str], IngestResult]  # landing dir -> the week's conversations and rejects
Parser = Callable[[pl.DataFrame, pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]]  # clusters, responses
Planner = Callable[[pl.DataFrame, pl.DataFrame, set[str]], ClassifyPlan]  # clusters, truncated, answered


@dataclass(frozen=True)
class Written:
    """One table's week as committed: the Delta version and the rows (for asset metadata)."""

    table: str
    version: int
    frame: pl.DataFrame


@dataclass(frozen=True)
class Classified:
    responses: Written
    requests_needed: int
    requests_resumed: int
    requests_sent: int
    stats: dict  # DispatchStats.as_dict(), summed over tasks on Spark


class Engine(Protocol):
    """Stages both engines run. Classify is Spark-only here: on one machine the asset dispatches itself."""

    name: str

    def ingest(self, week: dt.date, landing_dir: str, read: Reader) -> tuple[Written, Written, int]: ...

    def map_week(self, source: str, target: str, week: dt.date, stage: Stage) -> Written: ...

    def cluster_exact(self, week: dt.date) -> Written: ...

    def parse(self, week: dt.date, parse: Parser) -> tuple[Written, Written]: ...

    def aggregate(self, week: dt.date) -> Written: ...


def append_responses(uri: str, rows: list[dict]) -> None:
    """Streams answers into ``llm_responses`` while dispatch is in flight (both engines)."""
    delta.append(uri, pl.DataFrame(rows, schema=tables.LLM_RESPONSES), tables.LLM_RESPONSES)
