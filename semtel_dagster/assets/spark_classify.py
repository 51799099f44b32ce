"""The classify step on the Spark engine: one dispatcher per Spark task (see ``SparkEngine.classify``)."""

from functools import partial

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue

from semtel_dagster.assets.metadata import table_metadata
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
            "http_requests": MetadataValue.int(totals["requests"]),
            "retries": MetadataValue.int(totals["retries"]),
            "rate_limited": MetadataValue.int(totals["rate_limited"]),
            "failed_requests": MetadataValue.int(totals["errors"]),
            "prompt_tokens": MetadataValue.int(totals["prompt_tokens"]),
            "completion_tokens": MetadataValue.int(totals["completion_tokens"]),
            "dispatch_seconds": MetadataValue.float(totals["wall_seconds"]),
            "per_endpoint": MetadataValue.json(totals["endpoints"]),
            "prompt_versions": MetadataValue.json({name: c.version for name, c in classifiers.items()}),
        }
    )
    return MaterializeResult(metadata=metadata)
