"""The endpoints file: which OpenAI-compatible servers a run may call, and their quotas.

Keys are never written in the file: ``api_key_env`` names the environment variable that holds one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from semtel_dagster.core.llm.structured import STRUCTURED_OUTPUT_MODES, StructuredOutput

_CALLABLE = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
NO_KEY = "no-key"  # OpenAI-compatible servers without auth (vLLM, Ollama, the simulator) accept any key


class EndpointsFileError(ValueError):
    """The endpoints file is missing or invalid; the message names the offending field."""


class BatchOptions(BaseModel):
    """How an endpoint's batch API is used (``mode: batch``): the provider's limits per file and per
    model, and what becomes of items a batch did not answer. Defaults are OpenAI's documented limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_requests: int = Field(default=50_000, gt=0, description="requests per batch file")
    max_bytes: int = Field(default=200 * 1024 * 1024, gt=0, description="bytes per batch file")
    max_enqueued_tokens: int | None = Field(
        default=None, gt=0, description="prompt tokens this model may have queued in unfinished batches; None: unlimited"
    )
    poll_s: float = Field(default=60.0, gt=0, description="seconds between two looks at unfinished batches")
    on_failure: Literal["resubmit", "online"] = Field(
        default="resubmit", description="failed or expired items go into a new batch, or are sent online"
    )
    max_submissions: int = Field(default=3, gt=0, description="batches an item may go through before it is an error row")


class Endpoint(BaseModel):
    """An OpenAI-compatible server (``kind: openai``): POST ``{base_url}/chat/completions`` with a Bearer key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai"] = "openai"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="variable holding the key")
    token_provider: str | None = Field(
        default=None,
        pattern=_CALLABLE,
        description="'package.module:function' returning a bearer token (Entra ID, OAuth); fetched again on a 401",
    )
    tpm: int | None = Field(default=None, gt=0, description="tokens per minute, counted as prompt + max_tokens")
    rpm: int | None = Field(default=None, gt=0, description="requests per minute")
    quota_interval_s: float | None = Field(
        default=None,
        gt=0,
        lt=60,
        description="the provider enforces tpm/rpm in buckets of this many seconds (Azure: 10); None: learned from 429s",
    )
    max_concurrency: int = Field(default=32, gt=0)
    timeout_s: float = Field(default=60.0, gt=0, description="ceiling of a request's timeout")
    timeout_base_s: float = Field(default=15.0, gt=0, description="timeout of an empty request ...")
    timeout_per_1k_tokens_s: float = Field(
        default=10.0, ge=0, description="... plus this per 1,000 tokens of prompt + max_tokens"
    )
    stream: bool | Literal["auto"] = Field(
        default="auto",
        description="ask for a streamed answer, whose first event marks when the server starts the work, so "
        "that time queued there counts against timeout_queue_s and the work's timeout starts then; auto: "
        "stream, except on kind sim, until the server refuses it or cuts a stream short",
    )
    timeout_queue_s: float = Field(
        default=120.0, gt=0, description="streamed: how long the server may take to start, plus its pace per request ahead"
    )
    timeout_stall_s: float = Field(default=30.0, gt=0, description="streamed: the longest gap between two events")
    refund_unused: bool = Field(
        default=False,
        description="the provider refunds unused max_tokens to the TPM quota after the answer (Azure does not)",
    )
    structured_output: StructuredOutput = Field(
        default="json_schema",
        description="how this server is asked for the answer's JSON schema (see core/llm/structured.py); "
        "none: JSON asked for in the prompt text only",
    )
    max_response_bytes: int = Field(
        default=512 * 1024, gt=0, description="a larger answer is read no further and counts as a broken answer"
    )
    mode: Literal["online", "batch"] = Field(
        default="online", description="batch: the week's requests go through the provider's batch API (half price, up to 24 h)"
    )
    batch: BatchOptions = Field(default_factory=BatchOptions)

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: object) -> object:
        if isinstance(data, dict) and "structured_outputs" in data:
            raise ValueError("structured_outputs was replaced by structured_output: one of " + ", ".join(STRUCTURED_OUTPUT_MODES))
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        parts = urlsplit(value)
        # the message never repeats the value: it may be the key
        if "@" in parts.netloc:
            raise ValueError("must not hold credentials (user:password@); name the key's variable in api_key_env")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query string or fragment (keys belong in api_key_env)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Endpoint:
        if self.api_key_env is not None and self.token_provider is not None:
            raise ValueError("set api_key_env or token_provider, not both")
        return self

    def api_key(self) -> str:
        """The key from the environment; a named but unset variable is an error, never a silent no-key."""
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            # named only when it looks like a variable's name: a key pasted here must not be echoed
            named = self.api_key_env if re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", self.api_key_env) else "named by api_key_env"
            raise EndpointsFileError(f"endpoint {self.name!r}: environment variable {named} is not set")
        return key


class AzureEndpoint(Endpoint):
    """A classic Azure OpenAI deployment (``kind: azure``): ``api-key`` header (or an Entra ID token),
    ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``."""

    kind: Literal["azure"] = "azure"  # type: ignore[assignment]  # pydantic: each subclass narrows the union tag
    deployment: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    api_version: str = Field(min_length=1, pattern=r"^[0-9A-Za-z.-]+$")

    @model_validator(mode="after")
    def _authenticated(self) -> AzureEndpoint:
        if self.api_key_env is None and self.token_provider is None:
            raise ValueError("kind azure needs api_key_env or token_provider")
        return self


class SimEndpoint(Endpoint):
    """The embedded simulator (``kind: sim``), only where asked for: without ``base_url`` the pool
    starts one for the run, with one it is a simulator already serving there."""

    kind: Literal["sim"] = "sim"  # type: ignore[assignment]  # pydantic: each subclass narrows the union tag
    base_url: str | None = None  # type: ignore[assignment]  # pydantic: optional here, the pool starts one
    model: str = "sim-gpt-4o-mini"
    batch: BatchOptions = Field(default_factory=lambda: BatchOptions(poll_s=0.5))  # its batches end within seconds
    labeler: Literal["keyword", "embedding"] = "keyword"  # embedding: honest labels, needs the 'embeddings' extra


def _kind(value: object) -> str:
    return value.get("kind", "openai") if isinstance(value, dict) else getattr(value, "kind", "openai")


AnyEndpoint = Annotated[
    Annotated[Endpoint, Tag("openai")] | Annotated[AzureEndpoint, Tag("azure")] | Annotated[SimEndpoint, Tag("sim")],
    Discriminator(_kind),
]
ENDPOINT_KINDS = ("openai", "azure", "sim")


class ModelPrice(BaseModel):
    """Price of a model in currency units per million tokens (for cost budgets and cost figures)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_per_1m: float = Field(ge=0)
    completion_per_1m: float = Field(ge=0)
    batch_prompt_per_1m: float | None = Field(default=None, ge=0, description="batch API rate; None: half the online one")
    batch_completion_per_1m: float | None = Field(default=None, ge=0, description="batch API rate; None: half the online one")
    cached_input_per_1m: float | None = Field(
        default=None, ge=0, description="prompt tokens served from the provider's prompt cache; unset: the prompt price"
    )

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """``cached_tokens`` are part of ``prompt_tokens``, charged at the cached-input price."""
        cached_rate = self.prompt_per_1m if self.cached_input_per_1m is None else self.cached_input_per_1m
        fresh = prompt_tokens - cached_tokens
        return (fresh * self.prompt_per_1m + cached_tokens * cached_rate + completion_tokens * self.completion_per_1m) / 1e6

    def batch_price(self) -> ModelPrice:
        """The price of the same tokens through the batch API (OpenAI and Azure: 50% off by default)."""
        return ModelPrice(
            prompt_per_1m=self.prompt_per_1m / 2 if self.batch_prompt_per_1m is None else self.batch_prompt_per_1m,
            completion_per_1m=self.completion_per_1m / 2
            if self.batch_completion_per_1m is None
            else self.batch_completion_per_1m,
        )


class EndpointsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[AnyEndpoint] = Field(min_length=1)
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
        raise EndpointsFileError(f"{origin}: {'; '.join(_problem(err) for err in exc.errors())}") from None


def _problem(err) -> str:
    """``field.path: message``; never the offending value (it may be a key)."""
    loc = [str(p) for p in err["loc"]]
    if len(loc) > 2 and loc[0] == "endpoints" and loc[2] in ENDPOINT_KINDS:
        del loc[2]  # the union tag is no field
    message = err["msg"]
    if err["type"] == "union_tag_invalid":
        loc.append("kind")
        message = f"unknown kind; expected one of {', '.join(ENDPOINT_KINDS)}"
    return f"{'.'.join(loc) or '(root)'}: {message}"


def load_endpoints(path: str | Path) -> EndpointsFile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EndpointsFileError(f"endpoints file not found: {path}") from None
    except yaml.YAMLError as exc:
        # str(exc) quotes the offending line, which may be a pasted key: position and problem only
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise EndpointsFileError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_endpoints(data, origin=str(path))
