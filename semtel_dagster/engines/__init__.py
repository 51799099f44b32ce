"""The engine seam: the same stage logic on one machine (Polars) or distributed (PySpark).

The stage chain is composed once, in ``engines.pipeline.Pipeline``, which hands an engine the ``core``
function of each stage, already bound to its settings; the engine decides where it runs. The Polars engine calls it on the whole week; the Spark engine calls the very
same function per partition (``mapInArrow``) and adds Spark-native shuffles only for the global steps
(duplicate ids across landing files, exact-duplicate clusters, aggregation). Both read and replace weeks
of the same Delta tables, so a week computed by either engine is the same table.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import narwhals.stable.v2 as nw
import polars as pl

from semtel_dagster.core.classify.answering import Answered, Answering, Calls
from semtel_dagster.core.ingest.landing import LandingStream
from semtel_dagster.core.lake.frames import collect_small, summary
from semtel_dagster.core.prepare.embeddings import Embedder
from semtel_dagster.extras import require

Stage = Callable[[pl.DataFrame], pl.DataFrame]
Reader = Callable[[str], LandingStream]  # landing dir -> the week's conversations (streamed) and rejects
Parser = Callable[[pl.DataFrame, pl.DataFrame], tuple[pl.DataFrame, pl.DataFrame]]  # clusters, responses
PREVIEW_ROWS = 5  # rows every Written carries for the asset's metadata sample


@dataclass(frozen=True)
class Written:
    """One table's week as committed, described without collecting it.

    ``frame`` is the week in the engine's own frame (the Polars frame; a Polars LazyFrame over the committed
    version where the week was streamed, too big to hold; or a Spark DataFrame over the committed files), so
    assets aggregate it where it lives (``core.frames``). ``rows`` and ``preview``
    (the first rows, with the table's columns) are what every asset's metadata shows: on Spark a
    ``count`` and a ``limit``.
    """

    table: str
    version: int
    frame: Any  # pl.DataFrame, pl.LazyFrame, or pyspark.sql.DataFrame on the Spark engine
    rows: int = field(init=False)
    preview: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", summary(self.frame, rows=nw.len())["rows"])
        object.__setattr__(self, "preview", collect_small(nw.from_native(self.frame).head(PREVIEW_ROWS)))


@dataclass(frozen=True)
class Classified:
    responses: Written  # the week compacted to one row per request
    report: Answered  # merged over tasks on Spark
    embedding_classifiers: dict = field(default_factory=dict)  # per classifier: trained and used, or why not


class Engine(Protocol):
    """Every stage of the weekly chain; a new engine is one module implementing these methods."""

    name: str
    lake_root: str

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

    def classify(
        self,
        week: dt.date,
        answering: Answering,
        calls: Calls,
        *,
        reuse_weeks: list[dt.date],
        match_threshold: float | None,
        embedder: Callable[[], Embedder] | None,
        log: Callable[[str], None],
    ) -> Classified:
        """``core.answering.answer`` over the week's representatives (reuse candidates from ``reuse_weeks``,
        by embedding too with ``match_threshold``), answers streamed into ``llm_responses``, then the week
        compacted. ``embedder`` (picklable) is needed when ``answering`` has embedding classifiers."""
        ...

    def parse(self, week: dt.date, parse: Parser) -> tuple[Written, Written]: ...

    def label_counts(self, week: dt.date, pairs: Sequence[tuple[str, str]]) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The week's conversations per classifier and label, and per pair of labels of each classifier
        pair (``core.insights.aggregate.LABEL_COUNTS``, ``PAIR_COUNTS``): small, as Polars."""
        ...


ENGINES = {"polars": "semtel_dagster.engines.polars_engine", "spark": "semtel_dagster.engines.spark_engine"}


def open_engine(kind: str, lake_root: str, config: Any) -> Engine:
    """The engine ``kind`` over ``lake_root``: its module's ``open_engine(lake_root, config)``, imported only
    when chosen (a Polars run never imports PySpark). ``config`` is the ``EngineResource``'s settings."""
    if kind not in ENGINES:
        raise ValueError(f"unknown engine {kind!r}; available: {sorted(ENGINES)}")
    if kind == "spark":
        require("pyspark", "spark", "the Spark engine")
    return importlib.import_module(ENGINES[kind]).open_engine(lake_root, config)
