"""Vectorized exact-dedupe hashing gives exactly the row-by-row hashes (stored hashes keep matching)."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl

from semtel_dagster.core.prepare.dedupe import cluster_exact, normalize_text, text_hash, text_hashes

TRICKY = [
    "Hello,   World!!",
    "  hello world  ",
    "HELLO\tworld\n",
    "foo_bar-baz 42",
    "\x1c\x1fcontrol\x00chars\x7f",
    "",
    "!!!",
    "Straße STRASSE",  # casefold: ß -> ss
    "ﬁle ＦＵＬＬＷＩＤＴＨ",  # NFKC
    "İstanbul ΣΊΣΥΦΟΣ ς",
    "café cafe\u0301",  # composed and combining accent
    "हिन्दी किताब",  # vowel signs: not word characters for Python's re
    "emoji 🙂 mixed ascii",
    "日本語のテキスト",
]


def test_text_hashes_equal_text_hash_on_tricky_and_random_text():
    rng = random.Random(7)
    alphabet = "abcXYZ019_ ,.!?\t\n-ßéÉ\u0301ﬁ🙂हि日"
    texts = TRICKY + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(2000)]
    series = pl.Series(texts)
    assert text_hashes(series).to_list() == [text_hash(t) for t in texts]
    assert [normalize_text(t) for t in texts[:5]] == [
        "hello world",
        "hello world",
        "hello world",
        "foo_bar baz 42",
        "control chars",
    ]


def test_cluster_ids_unchanged():
    week = dt.date(2026, 11, 16)
    texts = ["Hi there!", "hi   THERE", "Straße", "STRASSE", "other", "हिन्दी", "हिन्दी!"]
    frame = pl.DataFrame(
        {"conversation_id": [f"c{i}" for i in range(len(texts))], "week_start": [week] * len(texts), "transcript": texts}
    )
    clusters = cluster_exact(frame).sort("conversation_id")
    assert clusters["representative_id"].to_list() == ["c0", "c0", "c2", "c2", "c4", "c5", "c5"]
    assert clusters["text_hash"].to_list() == [text_hash(t) for t in texts]
