"""A unit of LLM work and its stable id: what the dispatcher sends and reruns recognise."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

STATUS_OK = "ok"

STATUS_ERROR = "error"


@dataclass(frozen=True)
class LLMRequest:
    request_id: str
    week_start: dt.date | None  # None only for an endpoint probe, which belongs to no week
    conversation_ids: tuple[str, ...]
    classifiers: tuple[str, ...]
    prompt_name: str
    prompt_version: str
    messages: list[dict]
    response_format: dict | None
    max_tokens: int
    temperature: float
    prompt_tokens: int  # estimated locally; charged against TPM before the provider counts
    strategy: str = "single"  # batching strategy that produced the request (recorded in llm_responses)

    @property
    def cost(self) -> int:
        return self.prompt_tokens + self.max_tokens


def request_id(conversation_ids: Iterable[str], classifiers: Iterable[str], prompt_version: str) -> str:
    """Stable id of a unit of work: reruns recognise what was already answered."""
    key = json.dumps([sorted(conversation_ids), sorted(classifiers), prompt_version])
    return hashlib.sha256(key.encode()).hexdigest()[:24]
