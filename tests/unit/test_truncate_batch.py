"""The week-at-once truncation (Polars transcripts, tokens on every core) gives exactly the rows that
``truncate_messages`` gives one conversation at a time, on conversations chosen to break it."""

from __future__ import annotations

import datetime as dt
import random
import sys

import polars as pl
import pytest

from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare import truncate
from semtel_dagster.core.prepare.tokens import TOKENIZER
from semtel_dagster.core.prepare.truncate import TruncationConfig, render_transcript, render_transcripts, truncate_messages

WEEK = dt.date(2024, 1, 1)
_PIECES = [
    "Why does my build fail?",
    "  padded with spaces and tabs\t ",
    "",
    "   ",
    "naïve café — 東京の天気は？ 🌧️ emoji, and ünïcödé",
    "line one\r\nline two\rline three",
    "user:",
    "a\nUSER :\nb",
    'x\n  # developer [name="y"]:\t\nz',
    "a\nassıstant:\nb",  # dotless i: Python's case folding matches it, Rust's does not
    "a\nſystem:\nb",  # long s
    "\x1c\x1dseparators Python strips\x1e\x1f",
    "\u2028line separator\u3000",
    "<|endoftext|> special tokens stay text <|fim_prefix|>",
    "Here is the code:\n```python\n" + "\n".join(f"x_{i} = {i}  # step" for i in range(60)) + "\n```",
    "Thanks! I hope this helps. Let me know if you have questions. As an AI, I cannot.",
    "repeated line that is long enough\n" * 4,
]


def _conversations() -> pl.DataFrame:
    """Short and long, empty and whitespace-only messages, unicode, role-marker lines, every role."""
    rng = random.Random(3)
    rows = []
    for i in range(80):
        messages = []
        for k in range(rng.choice([1, 1, 2, 3, 6, 12])):
            text = rng.choice(_PIECES)
            if rng.random() < 0.15:
                text += " " + " ".join(f"tok{j}ü" for j in range(rng.randint(150, 800)))
            messages.append({"role": rng.choice(["user", "assistant", "system", "tool"]) if k else "user", "content": text})
        rows.append({"conversation_id": f"c{i:03d}", "week_start": WEEK, "messages": messages})
    rows.append({"conversation_id": "c-no-messages", "week_start": WEEK, "messages": []})
    frame = pl.DataFrame(
        rows, schema={"conversation_id": pl.String, "week_start": pl.Date, "messages": tables.CONVERSATIONS["messages"]}
    )
    return frame


def _one_at_a_time(conversations: pl.DataFrame, config: TruncationConfig) -> pl.DataFrame:
    rows = [
        (cid, week, *truncate_messages(messages, config), TOKENIZER)
        for cid, week, messages in conversations.select("conversation_id", "week_start", "messages").iter_rows()
    ]
    columns = ["transcript", "tokens_before", "tokens_compressed", "tokens_after", "strategy", "compression"]
    frame = pl.DataFrame(rows, schema=["conversation_id", "week_start", *columns, "tokenizer"], orient="row")
    return tables.conform(frame, tables.TRUNCATED_TRANSCRIPTS)


@pytest.fixture(scope="module")
def conversations() -> pl.DataFrame:
    return _conversations()


@pytest.fixture
def small_chunks(monkeypatch):
    """Several chunks per call, so their seams are exercised too."""
    monkeypatch.setattr(truncate, "_CHUNK_ROWS", 37)


def test_transcripts_equal_render_transcript(conversations):
    expected = [render_transcript(m) for m in conversations.get_column("messages").to_list()]
    assert render_transcripts(conversations.get_column("messages")).to_list() == expected


def test_strip_set_is_python_whitespace():
    assert set(truncate._STRIP) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


@pytest.mark.parametrize(
    "spec", ["head_tail:120", "head:64", "tail:300", "turns:200", "head_tail:150+compress", "turns:90+compress"]
)
def test_week_at_once_equals_one_at_a_time(conversations, small_chunks, spec):
    config = TruncationConfig.parse(spec)
    fast = truncate.truncate_conversations(conversations, config)
    expected = _one_at_a_time(conversations, config)
    assert fast.equals(expected)
    assert fast.get_column("strategy").n_unique() > 1  # some were cut, some were not


def test_default_budget_equal_on_long_conversations(conversations):
    config = TruncationConfig()
    longer = conversations.head(30).with_columns(
        pl.col("messages").list.eval(
            pl.struct(
                role=pl.element().struct.field("role"),
                content=pl.concat_str([pl.element().struct.field("content")] * 8, separator="\n"),
            )
        )
    )
    fast = truncate.truncate_conversations(longer, config)
    assert fast.equals(_one_at_a_time(longer, config))
    assert (fast.get_column("strategy") == "head_tail").any()
