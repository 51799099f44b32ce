"""Local OpenAI-compatible LLM endpoint **simulator**.

A real HTTP server (aiohttp) that stands in for Azure OpenAI / OpenAI / vLLM
deployments in the demo, tests and benchmarks: OpenAI ``chat.completion``
responses with deterministic labels chosen from the request alone
(:mod:`.labeler`), tiktoken token usage, Azure-style TPM/RPM limits (per-minute
quotas enforced in 10 s / 1 s buckets or one sliding minute, 429 + ``Retry-After``), a serial
mode like llama-cpp-python, and configurable latency.  It is not a
model and never produces real judgements.
"""

from semtel_dagster.sim.config import SimConfig, SimEndpointConfig
from semtel_dagster.sim.labeler import answer_content, choose_label, label_request
from semtel_dagster.sim.server import (
    SimulatorThread,
    base_urls,
    build_app,
    main_serve,
    make_config,
    run_forever,
    serve,
)

__all__ = [
    "SimConfig",
    "SimEndpointConfig",
    "SimulatorThread",
    "answer_content",
    "base_urls",
    "build_app",
    "choose_label",
    "label_request",
    "main_serve",
    "make_config",
    "run_forever",
    "serve",
]
