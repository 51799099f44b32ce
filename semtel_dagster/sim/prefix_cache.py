"""A stand-in for a provider's automatic prompt cache (OpenAI, Azure OpenAI), per simulated endpoint.

What it models, after OpenAI's documentation: a prompt of at least 1,024 tokens whose prefix was
processed recently is served partly from cache; the cached part is reported in
``usage.prompt_tokens_details.cached_tokens`` in steps of 128 tokens from 1,024 on; entries live a few
minutes after their last use (a TTL) and the least recently used go first when the cache is full. A
prefix enters the cache when its request has been processed, so requests sent at the same moment miss.
What it does not model: routing to machines by prefix hash, overflow past ~15 requests per minute per
prefix, cache shared across an organisation's deployments. It is a stand-in, not a measurement of a
provider.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Sequence

MIN_CACHED_TOKENS = 1024  # shorter prompts are never cached
CACHE_STEP_TOKENS = 128  # cached_tokens grows in these steps past the minimum
# Roles as pseudo-tokens: the same text under another role is another prefix.
_ROLE_TOKENS = {"system": -1, "developer": -2, "user": -3, "assistant": -4, "tool": -5}
_MESSAGE_TOKENS = 4  # per message, as ``server.prompt_tokens`` counts them
_PRIMING_TOKENS = 3


def prompt_sequence(messages: Sequence[tuple[str, Sequence[int]]]) -> list[int]:
    """The prompt as one token sequence, as long as ``server.prompt_tokens`` counts it: each message's
    role marker and content tokens, then the reply priming."""
    sequence: list[int] = []
    for role, tokens in messages:
        sequence += [_ROLE_TOKENS.get(role, -9)] * _MESSAGE_TOKENS
        sequence += tokens
    return sequence + [-10] * _PRIMING_TOKENS


def block_digests(sequence: Sequence[int]) -> list[bytes]:
    """Digest of every whole ``CACHE_STEP_TOKENS`` prefix (a hash chain: each covers all blocks before it)."""
    digests: list[bytes] = []
    previous = b""
    for start in range(0, len(sequence) - CACHE_STEP_TOKENS + 1, CACHE_STEP_TOKENS):
        block = array("q", sequence[start : start + CACHE_STEP_TOKENS]).tobytes()
        previous = hashlib.blake2b(previous + block, digest_size=16).digest()
        digests.append(previous)
    return digests


class PrefixCache:
    """LRU of prompt prefixes with a time to live; ``now`` is passed in, so tests need no clock."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # prefix digest -> last use

    def cached_tokens(self, digests: Sequence[bytes], now: float) -> int:
        """Tokens of the longest cached prefix of at least ``MIN_CACHED_TOKENS`` (0 if none); a hit
        refreshes its entry."""
        first = MIN_CACHED_TOKENS // CACHE_STEP_TOKENS - 1
        for index in range(len(digests) - 1, first - 1, -1):
            seen = self._entries.get(digests[index])
            if seen is not None and now - seen <= self.ttl_s:
                self._entries[digests[index]] = now
                self._entries.move_to_end(digests[index])
                return (index + 1) * CACHE_STEP_TOKENS
        return 0

    def store(self, digests: Sequence[bytes], now: float) -> None:
        """Remember a processed prompt's prefixes from ``MIN_CACHED_TOKENS`` on."""
        for digest in digests[MIN_CACHED_TOKENS // CACHE_STEP_TOKENS - 1 :]:
            self._entries[digest] = now
            self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
