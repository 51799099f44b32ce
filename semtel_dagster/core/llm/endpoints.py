"""The endpoints file: which OpenAI-compatible servers a run may call, and their quotas.

Keys are never written in the file: ``api_key_env`` names the environment variable that holds one.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from semtel_dagster.core.llm.structured import STRUCTURED_OUTPUT_MODES, StructuredOutput

NO_KEY = "no-key"  # OpenAI-compatible servers without auth (vLLM, Ollama, the simulator) accept any key


class EndpointsFileError(ValueError):
    """The endpoints file is missing or invalid; the message names the offending field."""


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    tpm: int | None = Field(default=None, gt=0, description="tokens per minute, counted as prompt + max_tokens")
    rpm: int | None = Field(default=None, gt=0, description="requests per minute")
    max_concurrency: int = Field(default=32, gt=0)
    timeout_s: float = Field(default=60.0, gt=0, description="ceiling of a request's timeout")
    timeout_base_s: float = Field(default=15.0, gt=0, description="timeout of an empty request ...")
    timeout_per_1k_tokens_s: float = Field(
        default=10.0, ge=0, description="... plus this per 1,000 tokens of prompt + max_tokens"
    )
    refund_unused: bool = Field(
        default=False,
        description="the provider refunds unused max_tokens to the TPM quota after the answer (Azure does not)",
    )
    structured_output: StructuredOutput = Field(
        default="json_schema",
        description="how this server is asked for the answer's JSON schema (see core/llm/structured.py); "
        "none: JSON asked for in the prompt text only",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: object) -> object:
        if isinstance(data, dict) and "structured_outputs" in data:
            raise ValueError("structured_outputs was replaced by structured_output: one of " + ", ".join(STRUCTURED_OUTPUT_MODES))
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def api_key(self) -> str:
        """The key from the environment; a named but unset variable is an error, never a silent no-key."""
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EndpointsFileError(f"endpoint {self.name!r}: environment variable {self.api_key_env} is not set")
        return key


class ModelPrice(BaseModel):
    """Price of a model in currency units per million tokens (for cost budgets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_per_1m: float = Field(ge=0)
    completion_per_1m: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_1m + completion_tokens * self.completion_per_1m) / 1e6


class EndpointsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[Endpoint] = Field(min_length=1)
    prices: dict[str, ModelPrice] = Field(default_factory=dict, description="per model, for cost budgets")

    @model_validator(mode="after")
    def _unique_names(self) -> EndpointsFile:
        names = [e.name for e in self.endpoints]
        if len(set(names)) != len(names):
            raise ValueError(f"endpoint names must be unique, got {names}")
        return self


def parse_endpoints(data: object, origin: str = "endpoints file") -> EndpointsFile:
    try:
        return EndpointsFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors())
        raise EndpointsFileError(f"{origin}: {problems}") from None


def load_endpoints(path: str | Path) -> EndpointsFile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EndpointsFileError(f"endpoints file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise EndpointsFileError(f"{path}: not valid YAML: {exc}") from None
    return parse_endpoints(data, origin=str(path))
