"""The landing-record contract: what one JSONL line must hold to become a conversation row."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _as_utc(value: dt.datetime) -> dt.datetime:
    """Producers log in UTC but some omit the offset, so a naive timestamp is read as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError as exc:  # e.g. year 1 with a positive offset; pydantic only maps ValueError
        raise ValueError("out of range in UTC") from exc


UtcDatetime = Annotated[dt.datetime, AfterValidator(_as_utc)]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Conversation(BaseModel):
    """One landed conversation; unknown fields are ignored so producers can add metadata freely."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: str
    started_at: UtcDatetime
    messages: list[Message]
    source: str | None = None
    # Optional engagement signals (tables.ENGAGEMENT): carried when a producer sends them, null otherwise.
    rating: float | None = None
    thumbs_up: bool | None = None
    session_seconds: float | None = Field(default=None, ge=0)
    returned_next_week: bool | None = None

    @field_validator("conversation_id")
    @classmethod
    def _non_empty_id(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("messages")
    @classmethod
    def _classifiable(cls, value: list[Message]) -> list[Message]:
        """Without user text there is nothing for the classifiers to judge."""
        if not any(m.content.strip() for m in value):
            raise ValueError("at least one message with content is required")
        if not any(m.role == "user" for m in value):
            raise ValueError("at least one user message is required")
        return value
