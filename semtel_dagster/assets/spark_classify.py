"""The classify step on the Spark engine: each task answers whole batches (see ``SparkEngine.classify``)."""

from dagster import AssetExecutionContext

from semtel_dagster.core.classify.answering import Answered, Answering
from semtel_dagster.engines import Written
from semtel_dagster.resources import EmbedderResource, EndpointPoolResource, EngineResource, LakeResource


def classify_on_spark(
    context: AssetExecutionContext,
    answering: Answering,
    lake: LakeResource,
    endpoint_pool: EndpointPoolResource,
    engine: EngineResource,
    embedder: EmbedderResource,
    reuse_weeks: list,
    match_threshold: float | None,
) -> tuple[Written, Answered]:
    out = engine.for_lake(lake.root).classify(
        answering.week,
        answering,
        endpoint_pool.endpoints,
        endpoint_pool.dispatch_settings(),
        reuse_weeks=reuse_weeks,
        match_threshold=match_threshold,
        embedder=embedder.factory() if answering.embedding else None,  # built on the executors
        flush_rows=endpoint_pool.flush_rows,
        flush_seconds=endpoint_pool.flush_seconds,
        log=context.log.info,
    )
    return out.responses, out.report
