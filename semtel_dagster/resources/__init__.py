"""Dagster resources: thin, configurable handles around the plain-Python logic in ``core``."""

from semtel_dagster.resources.embedder import EmbedderResource
from semtel_dagster.resources.endpoint_pool import EndpointPoolResource
from semtel_dagster.resources.engine import EngineResource
from semtel_dagster.resources.lake import LakeResource
from semtel_dagster.resources.settings import PipelineSettings

__all__ = ["EmbedderResource", "EndpointPoolResource", "EngineResource", "LakeResource", "PipelineSettings"]
