"""Configuration of the local LLM endpoint **simulator** (not a real provider).

One simulator process serves one or more *simulated endpoints*; each stands in
for one deployment of an LLM provider (Azure OpenAI, OpenAI, vLLM) with its own
model name, rate limits (TPM/RPM per minute, enforced like Azure in short buckets, or over one
sliding minute) and latency; or one request at a time, like a llama-cpp-python server (``serial``).  See :mod:`semtel_dagster.sim.server`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from semtel_dagster.sim.anomalies import AnomalyKind

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RESERVED_NAMES = {"v1", "openai"}


class FaultWindow(BaseModel):
    """A period (seconds after start or ``/sim/reset``) during which every request meets one fault.

    ``down``: the connection is dropped; ``429``: rate limited regardless of quota (``Retry-After: 1``);
    ``5xx``: HTTP 503; ``hang``: admitted, never answered; ``timeout``: HTTP 504 after ``timeout_s``.
    """

    kind: Literal["down", "429", "5xx", "hang", "timeout"]
    start_s: float = Field(ge=0.0)
    duration_s: float = Field(gt=0.0)


class SimFaults(BaseModel):
    """Fault injection of one simulated endpoint: scheduled windows plus random per-request faults."""

    windows: list[FaultWindow] = Field(default_factory=list)
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="HTTP 500/502/503, not charged")
    hang_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="admitted and charged, never answered")
    timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="HTTP 504 after timeout_s")
    malformed_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="HTTP 200 whose body is not JSON")
    length_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="answer cut after a few tokens, finish_reason=length")
    missing_usage_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="answer without a usage object")
    timeout_s: float = Field(default=30.0, gt=0.0)
    hang_s: float = Field(default=3600.0, gt=0.0)


class SimBatchConfig(BaseModel):
    """How the simulated batch API behaves (a stand-in for OpenAI's ``/v1/files`` and ``/v1/batches``)."""

    model_config = ConfigDict(extra="forbid")

    validating_s: float = Field(default=0.2, ge=0.0, description="time in validating")
    completion_s: float = Field(default=1.0, ge=0.0, description="time in in_progress")
    finalizing_s: float = Field(default=0.2, ge=0.0, description="time in finalizing (and cancelling)")
    item_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="items answered with an error line")
    expire_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="batches that expire with half their items done")
    enqueued_token_limit: int | None = Field(
        default=None, ge=1, description="prompt tokens of unfinished batches; a batch past it fails with token_limit_exceeded"
    )


class SimEndpointConfig(BaseModel):
    """One simulated endpoint, served under ``/<name>/v1/...``."""

    name: str = "sim"
    model: str = "gpt-4o-mini"
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute; None = unlimited")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute; None = unlimited")
    tpm_interval_s: float | None = Field(
        default=10.0,
        gt=0.0,
        le=60.0,
        description="TPM enforced in buckets of this many seconds, each allowing tpm x interval / 60 "
        "(Azure: 10 s); None = one sliding 60 s window",
    )
    rpm_interval_s: float | None = Field(
        default=1.0,
        gt=0.0,
        le=60.0,
        description="RPM enforced in buckets of this many seconds (Azure: 1 s); None = one sliding 60 s window; "
        "a bucket that would allow less than one request falls back to the sliding minute",
    )
    serial: bool = Field(
        default=False,
        description="serve one request at a time behind a lock, like llama-cpp-python: no quotas, no rate-limit "
        "headers, and an answer is computed to its end even when the client has gone",
    )
    latency_ms: float = Field(default=20.0, ge=0.0)
    latency_per_token_ms: float = Field(default=0.0, ge=0.0)
    jitter: float = Field(default=0.0, ge=0.0, le=1.0, description="relative, e.g. 0.2 = +-20%")
    latency_per_prompt_token_ms: float = Field(default=0.0, ge=0.0, description="prefill time")
    load_latency_ms: float = Field(default=0.0, ge=0.0, description="added per request already in flight (load)")
    tail_prob: float = Field(default=0.0, ge=0.0, le=1.0, description="share of answers with a heavy-tail delay")
    tail_alpha: float = Field(default=1.5, gt=0.0, description="Pareto shape of the tail's latency multiplier")
    faults: SimFaults = Field(default_factory=SimFaults)
    prefix_cache: bool = Field(
        default=True, description="report recently seen prompt prefixes as cached, like OpenAI's prompt cache (sim.prefix_cache)"
    )
    prefix_cache_ttl_s: float = Field(default=600.0, gt=0.0, description="a prefix unused this long is forgotten")
    prefix_cache_entries: int = Field(default=200_000, ge=1, description="prefix blocks kept; the least recently used go")
    seed: int = 0
    anomaly_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="share of answers with one format anomaly")
    anomalies: list[AnomalyKind] | None = Field(default=None, description="anomaly kinds to draw from; None = all")
    batch: SimBatchConfig = Field(default_factory=SimBatchConfig)
    labeler: Literal["keyword", "embedding"] = Field(
        default="keyword",
        description="how answers are chosen: keyword = words of the label definitions (base install; the sample "
        "generator writes with those words, so it flatters generated data); embedding = the nearest definition by "
        "sentence embedding with noise calibrated against a real model (needs the 'embeddings' extra)",
    )
    noise_scale: float | None = Field(
        default=None, ge=0.0, description="embedding labeler: one noise scale for every classifier (0 = the nearest definition)"
    )
    calibration: str | None = Field(
        default=None, description="embedding labeler: per-classifier noise scales (JSON); None = sim/calibration.json"
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v) or v in _RESERVED_NAMES:
            raise ValueError(
                f"invalid simulated endpoint name {v!r}: use letters, digits, '_', '.', '-' "
                f"and not one of {sorted(_RESERVED_NAMES)}"
            )
        return v

    @model_validator(mode="after")
    def _serial_has_no_quota(self) -> SimEndpointConfig:
        if self.serial and (self.tpm is not None or self.rpm is not None):
            raise ValueError(f"simulated endpoint {self.name!r}: a serial server has no tpm/rpm quota")
        return self


class SimConfig(BaseModel):
    """Simulator server: where to listen and which endpoints to simulate."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 = pick a free port")
    endpoints: list[SimEndpointConfig] = Field(default_factory=lambda: [SimEndpointConfig()])

    @model_validator(mode="after")
    def _check_endpoints(self) -> SimConfig:
        if not self.endpoints:
            raise ValueError("SimConfig needs at least one endpoint")
        names = [e.name for e in self.endpoints]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate simulated endpoint names: {sorted(dup)}")
        return self

    def endpoint(self, name: str | None = None) -> SimEndpointConfig:
        if name is None:
            return self.endpoints[0]
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(f"no simulated endpoint named {name!r}; have {[e.name for e in self.endpoints]}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SimConfig:
        """Load ``host``, ``port``, ``endpoints: [...]`` from YAML.

        A top-level list is accepted as the endpoint list; a mapping without
        ``endpoints`` but with endpoint fields is taken as a single endpoint.
        """
        import yaml

        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if isinstance(data, list):
            data = {"endpoints": data}
        if isinstance(data, dict) and "sim" in data and isinstance(data["sim"], dict) and "endpoints" not in data:
            data = data["sim"]
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping or a list of endpoints")
        if "endpoints" not in data:
            ep_fields = set(SimEndpointConfig.model_fields)
            ep = {k: v for k, v in data.items() if k in ep_fields}
            rest = {k: v for k, v in data.items() if k not in ep_fields}
            if ep:
                rest["endpoints"] = [ep]
            data = rest
        return cls.model_validate(data)
