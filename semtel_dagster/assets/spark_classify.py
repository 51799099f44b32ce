"""The classify step on the Spark engine: one dispatcher per Spark task (see ``SparkEngine.classify``)."""

from functools import partial

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from semtel_dagster.assets.metadata import dispatch_metadata, table_metadata
from semtel_dagster.core.classify import plan_requests
from semtel_dagster.core.prompts import Classifier
from semtel_dagster.resources import EndpointPoolResource, EngineResource, LakeResource, PipelineSettings


def classify_on_spark(
    context: AssetExecutionContext,
    week,
    classifiers: dict[str, Classifier],
    lake: LakeResource,
    settings: PipelineSettings,
    endpoint_pool: EndpointPoolResource,
    engine: EngineResource,
) -> MaterializeResult:
    if settings.batching_strategy != "single":
        raise NotImplementedError(
            f"batching strategy {settings.batching_strategy!r} plans batches across the whole week; "
            "on the Spark engine only 'single' is supported so far"
        )
    plan = partial(plan_requests, classifiers=classifiers, strategy=settings.batching_strategy, batch_size=settings.batch_size)
    out = engine.for_lake(lake.root).classify(
        week,
        plan,
        endpoint_pool.endpoints,
        endpoint_pool.dispatch_settings(),
        flush_rows=endpoint_pool.flush_rows,
        flush_seconds=endpoint_pool.flush_seconds,
        log=context.log.info,
    )
    written, totals = out.responses, out.stats
    metadata = table_metadata(written.frame, lake.uri("llm_responses"), written.version)
    metadata.update(
        {
            "requests_needed": MetadataValue.int(out.requests_needed),
            "requests_resumed": MetadataValue.int(out.requests_resumed),
            "requests_sent": MetadataValue.int(out.requests_sent),
            "engine": MetadataValue.text("spark"),
        }
    )
    metadata.update(dispatch_metadata(totals, classifiers, endpoint_pool.budget_tokens, endpoint_pool.budget_cost))
    return MaterializeResult(metadata=metadata)
