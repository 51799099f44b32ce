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
from dataclasses import dataclass, field
from typing import Any, Protocol

import narwhals.stable.v2 as nw
import polars as pl

from semtel_dagster.core.classify.answering import Answered
from semtel_dagster.core.ingest.landing import IngestResult
from semtel_dagster.core.lake.frames import collect_small, summary
from semtel_dagster.core.prepare.embeddings import Embedder

Stage = Callable[[pl.DataFrame], pl.DataFrame]
Reader = Callable[[str], IngestResult]  # landing dir -> the week's conversations and rejects
Parser = Callable[[pl.DataFrame, pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]]  # clusters, responses
PREVIEW_ROWS = 5  # rows every Written carries for the asset's metadata sample


@dataclass(frozen=True)
class Written:
    """One table's week as committed, described without collecting it.

    ``frame`` is the week in the engine's own frame (the Polars frame, or a Spark DataFrame over the
    committed files), so assets aggregate it where it lives (``core.frames``). ``rows`` and ``preview``
    (the first rows, with the table's columns) are what every asset's metadata shows: on Spark a
    ``count`` and a ``limit``.
    """

    table: str
    version: int
    frame: Any  # pl.DataFrame, or pyspark.sql.DataFrame on the Spark engine
    rows: int = field(init=False)
    preview: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", summary(self.frame, rows=nw.len())["rows"])
        object.__setattr__(self, "preview", collect_small(nw.from_native(self.frame).head(PREVIEW_ROWS)))


@dataclass(frozen=True)
class Classified:
    responses: Written
    report: Answered  # merged over tasks on Spark


class Engine(Protocol):
    """Stages both engines run. Classify is Spark-only here: on one machine the asset dispatches itself."""

    name: str

    def read(self, table: str, week: dt.date) -> Any: ...  # the committed week: pl.DataFrame, or a Spark DataFrame

    def ingest(self, week: dt.date, landing_dir: str, read: Reader) -> tuple[Written, Written, int]: ...

    def map_week(self, source: str, target: str, week: dt.date, stage: Stage) -> Written: ...

    def cluster_exact(self, week: dt.date) -> Written: ...

    def cluster_embedding(
        self, week: dt.date, embedder: Callable[[], Embedder], threshold: float
    ) -> tuple[Written, Written, dict]:
        """Exact clusters merged by embedding cosine, and the final representatives' vectors
        (``conversation_embeddings``); ``embedder`` must pickle. Also returns embedding stats."""
        ...

    def parse(self, week: dt.date, parse: Parser) -> tuple[Written, Written]: ...

    def aggregate(self, week: dt.date) -> Written: ...
