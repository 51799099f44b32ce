"""Ingest adapters (core/adapters.py) on the real files in ../shared/data and on hand-made records."""

import datetime as dt
import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.core.ingest.adapters import AdapterError, AdapterOptions, adapt, parse_hh_transcript
from semtel_dagster.core.ingest.landing import read_landing

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
W = dt.date(2026, 11, 16)
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")


def test_sharegpt_and_openai_roles():
    share = adapt("sharegpt", {"id": "a", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
    assert share == [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "conversation_id": "a"}
    ]
    openai = adapt(
        "openai",
        {
            "messages": [
                {"role": "developer", "content": "be nice"},
                {"role": "user", "content": [{"type": "text", "text": "part"}]},
            ]
        },
    )
    assert [m["role"] for m in openai[0]["messages"]] == ["system", "user"]
    assert openai[0]["messages"][1]["content"] == "part"
    with pytest.raises(AdapterError, match="not a known speaker"):
        adapt("sharegpt", {"conversations": [{"from": "narrator", "value": "x"}]})


def test_hh_transcript_split_keeps_multiline_turns():
    text = "\n\nHuman: first\nline\n\nAssistant: reply\n\nHuman: again\n\nAssistant:"
    assert parse_hh_transcript(text) == [
        {"role": "user", "content": "first\nline"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": ""},
    ]
    rec = {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad"}
    assert adapt("hh_rlhf", rec)[0]["messages"][-1]["content"] == "good"
    assert adapt("hh_rlhf", rec, AdapterOptions(hh_transcript="rejected"))[0]["messages"][-1]["content"] == "bad"


def test_oasst_paths_and_tree():
    tree = {
        "message_tree_id": "t",
        "prompt": {
            "message_id": "r",
            "role": "prompter",
            "text": "q",
            "replies": [
                {"message_id": "a1", "role": "assistant", "text": "x", "rank": 1, "replies": []},
                {
                    "message_id": "a2",
                    "role": "assistant",
                    "text": "y",
                    "rank": 0,
                    "replies": [{"message_id": "p2", "role": "prompter", "text": "more", "replies": []}],
                },
                {"message_id": "a3", "role": "assistant", "text": "gone", "deleted": True, "replies": []},
            ],
        },
    }
    paths = adapt("oasst", tree)
    assert [p["conversation_id"] for p in paths] == ["t:a1", "t:p2"]
    one = adapt("oasst", tree, AdapterOptions(oasst_mode="tree"))
    assert [m["content"] for m in one[0]["messages"]] == ["q", "y", "more"]  # best-ranked reply, deleted skipped


def test_table_mapping_from_parquet_rejects_bad_rows(tmp_path):
    pl.DataFrame(
        {
            "qid": ["1", "2", "3"],
            "prompt": ["hello there", None, "   "],
            "answer": ["hi", "x", None],
            "ts": ["2026-11-17T10:00:00Z"] * 3,
        }
    ).write_parquet(tmp_path / "t.parquet")
    mapping = {"conversation_id": "qid", "user": "prompt", "assistant": "answer", "started_at": "ts"}
    result = read_landing(tmp_path, W, input_format="table", adapter_options=AdapterOptions(column_mapping=mapping))
    assert result.conversations["conversation_id"].to_list() == ["1"]
    assert result.conversations.height + result.rejects.height == 3  # row conservation
    assert sorted(result.rejects["record_ref"].to_list()) == ["t.parquet:2", "t.parquet:3"]


def test_records_without_timestamp_use_default_week_and_ref_ids(tmp_path):
    with gzip.open(tmp_path / "hh.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"chosen": "\n\nHuman: hi\n\nAssistant: hello"}) + "\n")
        fh.write(json.dumps({"chosen": "no markers at all"}) + "\n")
    result = read_landing(tmp_path, W, input_format="hh_rlhf", default_week=W)
    assert result.conversations["conversation_id"].to_list() == ["hh.jsonl.gz:1"]
    assert result.conversations["started_at"][0] == dt.datetime(2026, 11, 16, tzinfo=dt.UTC)
    assert "no '\\n\\nHuman:'" in result.rejects["reason"][0]


@needs_data
@pytest.mark.parametrize(
    ("folder", "fmt", "options", "expected"),
    [
        ("hh-rlhf", "hh_rlhf", AdapterOptions(), 2312),
        ("oasst", "oasst", AdapterOptions(oasst_mode="tree"), 100),
        ("arena-hard", "arena_hard", AdapterOptions(), 500),
    ],
)
def test_real_files_conserve_rows(folder, fmt, options, expected):
    result = read_landing(DATA / folder, W, input_format=fmt, adapter_options=options, default_week=W)
    assert result.conversations.height + result.rejects.height == result.records_read == expected
    assert result.rejects.height == 0
    assert result.conversations["conversation_id"].n_unique() == expected
    if fmt == "arena_hard":  # every question found its answer
        assert (result.conversations["n_turns"] == 2).all()


@needs_data
def test_real_oasst_paths_one_per_leaf():
    result = read_landing(DATA / "oasst", W, input_format="oasst", default_week=W)
    assert result.conversations.height > 100  # trees branch
    first = result.conversations["messages"][0].to_list()
    assert first[0]["role"] == "user" and all(m["role"] in ("user", "assistant") for m in first)
