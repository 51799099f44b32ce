"""Transcripts, extractive compression and token-aware truncation.

A transcript is what a classifier reads: one ``User:`` / ``Assistant:`` paragraph per message. Long
conversations are cut to a token budget with an explicit marker where tokens were removed so the
model knows text is missing. Strategies: ``head_tail`` keeps the start (what the user came for) and
the end (how it went); ``head`` and ``tail`` keep one side (topic needs the start, satisfaction the
end); ``turns`` cuts every message to a shared cap but keeps the start of every user turn.

Compression runs before truncation and only removes what does not change a label: runs of
whitespace, assistant boilerplate, the middle of long code blocks and lines repeated verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, cast, get_args

import numpy as np
import polars as pl

from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.tokens import TOKENIZER, Tokens, count_or_tokens, count_spliced, count_tokens, encoding

ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}

# Prompty reads a line that is only a role name and a colon ("user:") as a new chat message, so a
# conversation containing one could inject a turn into the classifier prompt. Such lines are quoted.
_ROLE_MARKER_LINE = re.compile(r"(?im)^([ \t]*#?[ \t]*(?:system|user|assistant|developer)[ \t]*(?:\[[^\]\n]*\])?[ \t]*:[ \t]*)$")


def quote_role_markers(text: str) -> str:
    return _ROLE_MARKER_LINE.sub(r"> \1", text.replace("\r\n", "\n").replace("\r", "\n"))


Strategy = Literal["head_tail", "head", "tail", "turns"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
STRATEGY_NONE = "none"  # the transcript fits the budget as it is
COMPRESSION_NONE = "none"
COMPRESSION_EXTRACTIVE = "extractive"


@dataclass(frozen=True)
class TruncationConfig:
    """``max_tokens`` is the transcript budget; ``head_share`` of it is kept from the start (head_tail)."""

    max_tokens: int = 3000
    head_share: float = 0.6
    strategy: Strategy = "head_tail"
    compress: bool = False
    code_lines: int = 12  # compression keeps this many lines of each code block

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0.0 <= self.head_share <= 1.0:
            raise ValueError("head_share must be between 0 and 1")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")

    @classmethod
    def parse(cls, spec: str, **defaults) -> TruncationConfig:
        """``"tail:512"``, ``"turns:1024+compress"``, ``"head_tail:3000"``: strategy, budget, options."""
        body, *flags = spec.strip().split("+")
        strategy, _, budget = body.partition(":")
        unknown = set(flags) - {"compress"}
        if unknown:
            raise ValueError(f"unknown truncation option(s) {sorted(unknown)} in {spec!r}")
        config = cls(**defaults)
        return replace(
            config,
            strategy=cast(Strategy, strategy) or config.strategy,  # checked in __post_init__
            compress="compress" in flags or config.compress,
            max_tokens=int(budget) if budget else config.max_tokens,
        )


# Assistant filler that never decides a label (compared case-insensitively, whole sentences).
_BOILERPLATE = re.compile(
    r"(?i)(?:^|(?<=[.!?]\s))(?:as an ai(?: language model)?[^.!?\n]*[.!?]"
    r"|i hope (?:this|that) helps[^.!?\n]*[.!?]"
    r"|(?:please )?(?:let me know|feel free to (?:ask|reach out))[^.!?\n]*[.!?]"
    r"|is there anything else[^.!?\n]*\?"
    r"|i'?m (?:happy|glad) to help[^.!?\n]*[.!?])\s*"
)
_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n(?:\s*\n)+")
_REPEAT_MIN_CHARS = 20


def compress_messages(messages: list[dict], code_lines: int = 12) -> list[dict]:
    """Extractive compression of every message; a message left empty says so instead of vanishing."""
    seen: set[str] = set()
    out = []
    for message in messages:
        text = message["content"]
        if message["role"] == "assistant":
            text = _BOILERPLATE.sub("", text)
        text = _CODE_BLOCK.sub(lambda m: _shorten_code(m, code_lines), text)
        lines = []
        for line in _SPACES.sub(" ", text).split("\n"):
            key = line.strip().casefold()
            if len(key) >= _REPEAT_MIN_CHARS and key in seen:
                continue  # repeated verbatim (pasted twice, looping answers): once is enough to judge
            seen.add(key)
            lines.append(line.rstrip())
        text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
        out.append({"role": message["role"], "content": text or "[repeated content omitted]"})
    return out


def _shorten_code(match: re.Match, keep: int) -> str:
    body = match.group(1).rstrip("\n").split("\n")
    if len(body) <= keep:
        return match.group(0)
    head = match.group(0).split("\n", 1)[0]
    omitted = len(body) - keep
    return "\n".join([head, *body[: keep - 2], f"[... {omitted} code lines omitted ...]", *body[-2:], "```"])


def render_transcript(messages: list[dict]) -> str:
    """``Role: content`` paragraphs; role-marker lines (also an empty turn) are quoted so they stay data."""
    paragraphs = [
        f"{ROLE_NAMES.get(message['role'], message['role'].title())}: {message['content'].strip()}" for message in messages
    ]
    return quote_role_markers("\n\n".join(paragraphs))


def truncate_text(text: str, config: TruncationConfig, tokens: Tokens | None = None) -> tuple[str, int, int, str]:
    """Returns (text, tokens_before, tokens_after, strategy): ``none``, ``head_tail``, ``head`` or ``tail``.

    The ``turns`` strategy needs messages (see :func:`truncate_messages`); on plain text it is head_tail.
    ``tokens`` is the text already encoded, when the caller has it (encoding is most of the stage's time).
    """
    enc = encoding()
    if tokens is None:
        tokens = enc.encode_ordinary(text)
    if len(tokens) <= config.max_tokens:
        return text, len(tokens), len(tokens), STRATEGY_NONE
    strategy = config.strategy if config.strategy in ("head", "tail") else "head_tail"
    head_share = {"head": 1.0, "tail": 0.0}.get(strategy, config.head_share)
    omitted_guess = len(tokens) - config.max_tokens
    marker = f"\n\n[... {omitted_guess} tokens omitted ...]\n\n"
    budget = config.max_tokens - len(enc.encode_ordinary(marker))
    head = int(budget * head_share)
    tail = budget - head
    ids = np.asarray(tokens)
    joined = (
        enc.decode(ids[:head].tolist())
        + marker.replace(str(omitted_guess), str(len(ids) - head - tail))
        + (enc.decode(ids[-tail:].tolist()) if tail else "")
    )
    kept = quote_role_markers(joined)  # the cuts can leave a role-marker line at their edges
    after = count_spliced(text, ids, head, tail, kept) if kept == joined else count_tokens(kept)
    return kept, len(ids), after, strategy


_TURN_MARKER_TOKENS = 10  # " [... N tokens omitted]" after a cut message


def truncate_turns(messages: list[dict], max_tokens: int) -> str | None:
    """Every message cut to a shared token cap, each user turn keeping at least its first tokens.

    The cap is the largest that fits the budget (binary search); ``None`` when even the markers of a
    very long conversation do not fit, so the caller falls back to head_tail.
    """
    enc = encoding()
    paragraphs = [enc.encode_ordinary(render_transcript([m])) for m in messages]
    floor = max(4, max_tokens // (4 * max(1, sum(m["role"] == "user" for m in messages))))

    def kept(cap: int) -> list[int]:
        return [min(len(t), max(cap, floor if m["role"] == "user" else 0)) for m, t in zip(messages, paragraphs)]

    def cost(cap: int) -> int:
        keep = kept(cap)
        return len(paragraphs) - 1 + sum(k + (_TURN_MARKER_TOKENS if k < len(t) else 0) for k, t in zip(keep, paragraphs))

    if cost(0) > max_tokens:
        return None
    lo, hi = 0, max(len(t) for t in paragraphs)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= max_tokens else (lo, mid - 1)
    parts = [
        enc.decode(t[:k]) + ("" if k == len(t) else f" [... {len(t) - k} tokens omitted]") for k, t in zip(kept(lo), paragraphs)
    ]
    return quote_role_markers("\n\n".join(parts))


def truncate_messages(messages: list[dict], config: TruncationConfig) -> tuple[str, int, int, int, str, str]:
    """(transcript, tokens_before, tokens_compressed, tokens_after, strategy, compression) of one conversation."""
    original = render_transcript(messages)
    compression = COMPRESSION_NONE
    if config.compress:
        messages, compression = compress_messages(messages, config.code_lines), COMPRESSION_EXTRACTIVE
    transcript = render_transcript(messages)
    tokens = encoding().encode_ordinary(transcript)
    before = count_tokens(original) if config.compress else len(tokens)
    text, after, strategy = _fit(transcript, tokens, messages, config)
    return text, before, len(tokens), after, strategy, compression


def _fit(transcript: str, tokens: Tokens, messages: list[dict], config: TruncationConfig) -> tuple[str, int, str]:
    """(text, tokens_after, strategy) of a transcript whose ``tokens`` are known: the configured cut when
    it is over the budget, ``turns`` falling back to head_tail when the markers alone do not fit."""
    if config.strategy == "turns" and len(tokens) > config.max_tokens:
        cut = truncate_turns(messages, config.max_tokens)
        if cut is not None and (after := count_tokens(cut)) <= config.max_tokens:
            return cut, after, "turns"
    text, _, after, strategy = truncate_text(transcript, config, tokens)
    return text, after, strategy


# ``str.strip()``'s whitespace (``str.isspace``), which Polars' default strip (Rust's) does not match exactly.
_STRIP = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
# Every line ``_ROLE_MARKER_LINE`` matches, and more (any word), in Polars' regex dialect: the transcripts that
# match go through the Python pattern, whose Unicode case folding Polars' does not share.
_MAYBE_ROLE_MARKER = r"(?m)^[ \t]*#?[ \t]*\w+[ \t]*(?:\[[^\]\n]*\])?[ \t]*:[ \t]*$"
_CHUNK_ROWS = 16_384  # conversations in memory as Python objects at once


def render_transcripts(messages: pl.Series) -> pl.Series:
    """:func:`render_transcript` of every conversation, assembled by Polars instead of per message in Python."""
    roles = messages.explode().struct.field("role").drop_nulls().unique().to_list()
    names = {role: ROLE_NAMES.get(role, role.title()) for role in roles}
    message = pl.element().struct
    paragraph = (
        message.field("role").replace_strict(names, return_dtype=pl.String)
        + ": "
        + message.field("content").str.strip_chars(_STRIP)
    )
    joined = (
        messages.to_frame("messages")
        .select(
            pl.col("messages")
            .list.eval(paragraph)
            .list.join("\n\n")
            .str.replace_all("\r\n", "\n", literal=True)
            .str.replace_all("\r", "\n", literal=True)
        )
        .to_series()
    )
    marked = joined.str.contains(_MAYBE_ROLE_MARKER).fill_null(False).arg_true()
    if marked.len():
        joined = joined.scatter(marked, [quote_role_markers(text) for text in joined.gather(marked).to_list()])
    return joined


def _truncate_chunk(chunk: pl.DataFrame, config: TruncationConfig) -> pl.DataFrame:
    """Transcripts by Polars, token counts by the ``bpe`` crate; Python per conversation only where a cut is needed."""
    messages = chunk.get_column("messages")
    originals = render_transcripts(messages)
    compression = COMPRESSION_NONE
    if config.compress:
        compressed = [compress_messages(m, config.code_lines) for m in messages.to_list()]
        messages, compression = pl.Series(compressed, dtype=messages.dtype), COMPRESSION_EXTRACTIVE
        transcripts = render_transcripts(messages)
    else:
        transcripts = originals
    counted = [count_or_tokens(text, config.max_tokens) for text in transcripts.to_list()]
    over = [i for i, counts in enumerate(counted) if not isinstance(counts, int)]
    tokens_compressed = [counts if isinstance(counts, int) else counts.size for counts in counted]
    if config.compress:
        before = [count_tokens(text) for text in originals.to_list()]
    else:
        before = tokens_compressed
    after, strategy = list(tokens_compressed), [STRATEGY_NONE] * len(counted)
    text: list[str | None] = [None] * len(counted)
    if over:
        cut_messages = messages.gather(over).to_list() if config.strategy == "turns" else [[]] * len(over)
        cut_tokens = [counts for counts in counted if not isinstance(counts, int)]
        rows = zip(over, transcripts.gather(over).to_list(), cut_tokens, cut_messages)
        for i, transcript, tokens, cut_from in rows:
            text[i], after[i], strategy[i] = _fit(transcript, tokens, cut_from, config)
    return pl.DataFrame(
        {
            "conversation_id": chunk.get_column("conversation_id"),
            "week_start": chunk.get_column("week_start"),
            "transcript": pl.select(pl.coalesce(pl.Series(text, dtype=pl.String), transcripts)).to_series(),
            "tokens_before": before,
            "tokens_compressed": tokens_compressed,
            "tokens_after": after,
            "strategy": strategy,
            "compression": compression,
            "tokenizer": TOKENIZER,
        }
    )


def truncate_conversations(conversations: pl.DataFrame, config: TruncationConfig) -> pl.DataFrame:
    """One ``conversations_truncated`` row per conversation (row conservation by construction), the same
    rows :func:`truncate_messages` gives one conversation at a time."""
    if not conversations.height:
        return tables.empty(tables.TRUNCATED_TRANSCRIPTS)
    frame = conversations.select("conversation_id", "week_start", "messages")
    parts = [_truncate_chunk(chunk, config) for chunk in frame.iter_slices(_CHUNK_ROWS)]
    return tables.conform(pl.concat(parts), tables.TRUNCATED_TRANSCRIPTS)
