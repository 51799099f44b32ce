"""Truncation strategies and extractive compression (core/truncate.py)."""

import pytest

from semtel_dagster.core.prepare.tokens import count_tokens
from semtel_dagster.core.prepare.truncate import TruncationConfig, compress_messages, truncate_messages

LONG = " ".join(f"word{i}" for i in range(2000))
MESSAGES = [
    {"role": "user", "content": "FIRST QUESTION about tax forms. " + LONG},
    {"role": "assistant", "content": LONG},
    {"role": "user", "content": "SECOND QUESTION about refunds. " + LONG},
    {"role": "assistant", "content": LONG + " FINAL ANSWER"},
]


@pytest.mark.parametrize("strategy", ["head_tail", "head", "tail", "turns"])
def test_every_strategy_fits_the_budget(strategy):
    text, before, _, after, used, _ = truncate_messages(MESSAGES, TruncationConfig(max_tokens=300, strategy=strategy))
    assert used == strategy and after <= 300 and after == count_tokens(text) and before > 4 * 2000


def test_strategies_keep_what_they_promise():
    head = truncate_messages(MESSAGES, TruncationConfig.parse("head:200"))[0]
    tail = truncate_messages(MESSAGES, TruncationConfig.parse("tail:200"))[0]
    turns = truncate_messages(MESSAGES, TruncationConfig.parse("turns:200"))[0]
    assert "FIRST QUESTION" in head and "FINAL ANSWER" not in head
    assert "FINAL ANSWER" in tail and "FIRST QUESTION" not in tail
    assert "FIRST QUESTION" in turns and "SECOND QUESTION" in turns and turns.count("tokens omitted") == 4


def test_short_conversation_is_untouched():
    msgs = [{"role": "user", "content": "hi"}]
    assert truncate_messages(msgs, TruncationConfig.parse("turns:100"))[3:5] == (count_tokens("User: hi"), "none")


def test_compression_drops_boilerplate_code_middle_and_repeats():
    code = "\n".join(f"x{i} = {i}" for i in range(40))
    msgs = [
        {
            "role": "user",
            "content": f"Fix this please   now\n```python\n{code}\n```\nsame long line repeated here\nsame long line repeated here",
        },
        {"role": "assistant", "content": "Use a loop. I hope this helps! Let me know if you have any other questions."},
    ]
    out = compress_messages(msgs, code_lines=6)
    assert "Fix this please now" in out[0]["content"]
    assert "[... 34 code lines omitted ...]" in out[0]["content"] and "x39 = 39" in out[0]["content"]
    assert out[0]["content"].count("same long line repeated here") == 1
    assert out[1]["content"] == "Use a loop."
    _, before, compressed, after, _, compression = truncate_messages(msgs, TruncationConfig.parse("head_tail:3000+compress"))
    assert compression == "extractive" and compressed == after < before


def test_parse_rejects_unknown():
    with pytest.raises(ValueError):
        TruncationConfig.parse("middle:100")
    with pytest.raises(ValueError):
        TruncationConfig.parse("head:100+zip")
