"""Token counts (core.prepare.tokens): the bpe crate's equal tiktoken's, on made-up and real text, and a
cut text's tokens counted from the original's (count_spliced) equal encoding it."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from semtel_dagster.core.prepare.tokens import count_or_tokens, count_spliced, count_tokens, encoding, spliced_parts

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

_FRAGMENTS = [
    "def step(records):\n    return [r for r in records if r]\n",
    "  indented line\n\tTabbed\n",
    "Plain prose sentence, with punctuation!? ",
    "naïve café 東京 🌧️ ünïcödé ",
    "line\r\nwindows\r\n",
    "   \n\n  \n",
    "12345678901234567890 ",
    "'s 'll 're it's don't ",
    "User: hello\n\nAssistant: hi there\n\n",
    "###\n---\n***",
    "\n",
    "x",
    "\u3000\u00a0 odd spaces \u2028",
]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randint(1, 60)))


def test_count_spliced_equals_encoding_the_cut_text():
    rng = random.Random(5)
    enc = encoding()
    shared = 0
    for _ in range(400):
        text = _text(rng)
        tokens = enc.encode_ordinary(text)
        head, tail = rng.randint(0, len(tokens)), rng.randint(0, len(tokens))
        middle = rng.choice(["\n\n[... 12 tokens omitted ...]\n\n", "", " ", "x", "\n", _text(rng)[: rng.randint(0, 40)]])
        kept = enc.decode(tokens[:head]) + middle + (enc.decode(tokens[len(tokens) - tail :]) if tail else "")
        assert count_spliced(text, tokens, head, tail, kept) == count_tokens(kept), (text, head, tail, middle)
        shared += spliced_parts(text, tokens, head, tail, kept) is not None
    assert shared > 200  # most cuts do reuse the original's tokens


def test_a_text_that_does_not_start_and_end_as_the_cut_says_is_encoded_whole():
    text = "first line\nSecond line\nThird line\n"
    tokens = encoding().encode_ordinary(text)
    assert spliced_parts(text, tokens, len(tokens), 0, "other text\nSecond line") is None
    assert count_spliced(text, tokens, len(tokens), 0, "other text") == count_tokens("other text")


def _real_texts() -> list[str]:
    """hh-rlhf transcripts and arena-hard answers (code, markdown, many scripts) as people wrote them."""
    texts = []
    with gzip.open(DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            texts += [record["chosen"], record["rejected"]]
    with (DATA / "arena-hard" / "answers_gpt-4-0314.jsonl").open(encoding="utf-8") as lines:
        texts += [json.loads(line)["choices"][0]["turns"][0]["content"] for line in lines]
    return texts


def _agrees_with_tiktoken(text: str, limit: int) -> bool:
    expected = encoding().encode_ordinary(text)
    got = count_or_tokens(text, limit)
    same = got == len(expected) if isinstance(got, int) else got.tolist() == expected and len(expected) > limit
    return same and count_tokens(text) == len(expected)


def test_counts_and_tokens_equal_tiktoken_on_made_up_text():
    rng = random.Random(11)
    texts = [_text(rng) for _ in range(400)] + ["", "<|endoftext|> is plain text here", "\u200b" * 50]
    assert all(_agrees_with_tiktoken(text, rng.choice([0, 16, 64, 256])) for text in texts)


def test_the_limit_itself_is_a_count_and_one_more_token_is_a_cut():
    text = "User: hello there, how are you today?"
    n = count_tokens(text)
    assert count_or_tokens(text, n) == n
    over = count_or_tokens(text, n - 1)
    assert isinstance(over, np.ndarray) and over.tolist() == encoding().encode_ordinary(text)


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data (real conversations) beside the checkout")
def test_counts_and_tokens_equal_tiktoken_on_real_conversations():
    texts = _real_texts()
    assert len(texts) > 5000
    assert [t for t in texts if not _agrees_with_tiktoken(t, 300)] == []


def test_a_long_text_under_the_limit_is_still_a_count():
    spaces = " " * 5000 + "x"  # few tokens for its length: taken for over the limit, then counted
    n = len(encoding().encode_ordinary(spaces))
    assert n < 500 and count_or_tokens(spaces, 500) == n
