"""The assets' handle on the one stage chain (``engines.pipeline``): each asset runs one of its stages."""

from dagster import AssetExecutionContext

from semtel_dagster.engines.pipeline import Pipeline
from semtel_dagster.resources import EmbedderResource, EndpointPoolResource, EngineResource, LakeResource, PipelineSettings


def pipeline_for(
    context: AssetExecutionContext,
    lake: LakeResource,
    settings: PipelineSettings,
    engine: EngineResource,
    embedder: EmbedderResource | None = None,
    endpoint_pool: EndpointPoolResource | None = None,
) -> Pipeline:
    return Pipeline(
        engine.for_lake(lake.root),
        settings,
        calls=endpoint_pool.calls() if endpoint_pool else None,
        embedder=embedder.factory() if embedder else None,
        log=context.log.info,
    )
