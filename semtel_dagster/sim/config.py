"""Configuration of the local LLM endpoint **simulator** (not a real provider).

One simulator process serves one or more *simulated endpoints*; each stands in
for one deployment of an LLM provider (Azure OpenAI, OpenAI, vLLM) with its own
model name, rate limits (TPM/RPM, counted like Azure: 60 s sliding window) and
latency.  See :mod:`semtel_dagster.sim.server`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RESERVED_NAMES = {"v1", "openai"}


class SimEndpointConfig(BaseModel):
    """One simulated endpoint, served under ``/<name>/v1/...``."""

    name: str = "sim"
    model: str = "gpt-4o-mini"
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute; None = unlimited")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute; None = unlimited")
    latency_ms: float = Field(default=20.0, ge=0.0)
    latency_per_token_ms: float = Field(default=0.0, ge=0.0)
    jitter: float = Field(default=0.0, ge=0.0, le=1.0, description="relative, e.g. 0.2 = +-20%")
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v) or v in _RESERVED_NAMES:
            raise ValueError(
                f"invalid simulated endpoint name {v!r}: use letters, digits, '_', '.', '-' "
                f"and not one of {sorted(_RESERVED_NAMES)}"
            )
        return v


class SimConfig(BaseModel):
    """Simulator server: where to listen and which endpoints to simulate."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 = pick a free port")
    endpoints: list[SimEndpointConfig] = Field(default_factory=lambda: [SimEndpointConfig()])

    @model_validator(mode="after")
    def _check_endpoints(self) -> "SimConfig":
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
    def from_yaml(cls, path: str | Path) -> "SimConfig":
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
