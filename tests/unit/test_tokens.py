"""A cut text's tokens counted from the original's (core.prepare.tokens.count_spliced) equal encoding it."""

from __future__ import annotations

import random

from semtel_dagster.core.prepare.tokens import count_spliced, count_tokens, encoding, spliced_parts

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
