"""Transcripts and token-aware truncation.

A transcript is what a classifier reads: one ``User:`` / ``Assistant:`` paragraph per message. Long
conversations are cut to a token budget keeping the start (what the user came for) and the end (how it
went), with an explicit marker where tokens were removed so the model knows text is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from semtel_dagster.core import tables
from semtel_dagster.core.tokens import TOKENIZER, encoding

ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}

# Prompty reads a line that is only a role name and a colon ("user:") as a new chat message, so a
# conversation containing one could inject a turn into the classifier prompt. Such lines are quoted.
_ROLE_MARKER_LINE = re.compile(
    r"(?im)^([ \t]*#?[ \t]*(?:system|user|assistant|developer)[ \t]*(?:\[[^\]\n]*\])?[ \t]*:[ \t]*)$"
)


def quote_role_markers(text: str) -> str:
    return _ROLE_MARKER_LINE.sub(r"> \1", text.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass(frozen=True)
class TruncationConfig:
    """``max_tokens`` is the transcript budget; ``head_share`` of it is kept from the start."""

    max_tokens: int = 3000
    head_share: float = 0.6

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0.0 <= self.head_share <= 1.0:
            raise ValueError("head_share must be between 0 and 1")


def render_transcript(messages: list[dict]) -> str:
    """``Role: content`` paragraphs; role-marker lines (also an empty turn) are quoted so they stay data."""
    paragraphs = [
        f"{ROLE_NAMES.get(message['role'], message['role'].title())}: {message['content'].strip()}"
        for message in messages
    ]
    return quote_role_markers("\n\n".join(paragraphs))


def truncate_text(text: str, config: TruncationConfig) -> tuple[str, int, int, str]:
    """Returns (text, tokens_before, tokens_after, strategy); strategy is ``none`` or ``head_tail``."""
    enc = encoding()
    tokens = enc.encode_ordinary(text)
    if len(tokens) <= config.max_tokens:
        return text, len(tokens), len(tokens), "none"
    omitted_guess = len(tokens) - config.max_tokens
    marker = f"\n\n[... {omitted_guess} tokens omitted ...]\n\n"
    budget = config.max_tokens - len(enc.encode_ordinary(marker))
    head = int(budget * config.head_share)
    tail = budget - head
    kept = quote_role_markers(
        enc.decode(tokens[:head])
        + marker.replace(str(omitted_guess), str(len(tokens) - head - tail))
        + (enc.decode(tokens[-tail:]) if tail else "")
    )
    return kept, len(tokens), len(enc.encode_ordinary(kept)), "head_tail"


def truncate_conversations(conversations: pl.DataFrame, config: TruncationConfig) -> pl.DataFrame:
    """One ``conversations_truncated`` row per conversation (row conservation by construction)."""
    rows = []
    for conversation_id, week_start, messages in conversations.select(
        "conversation_id", "week_start", "messages"
    ).iter_rows():
        transcript, before, after, strategy = truncate_text(render_transcript(messages), config)
        rows.append((conversation_id, week_start, transcript, before, after, strategy, TOKENIZER))
    frame = pl.DataFrame(
        rows,
        schema=["conversation_id", "week_start", "transcript", "tokens_before", "tokens_after", "strategy", "tokenizer"],
        orient="row",
    )
    return tables.conform(frame, tables.CONVERSATIONS_TRUNCATED) if rows else tables.empty(tables.CONVERSATIONS_TRUNCATED)
