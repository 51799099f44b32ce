import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import yaml

from semtel_dagster.sim.sample import generate_week, write_week

W1 = dt.date(2026, 11, 16)
W2 = W1 + dt.timedelta(days=7)
PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def _labels(classifier: str) -> set[str]:
    front = (PROMPTS / f"{classifier}.prompty").read_text().split("---")[1]
    return {label["name"] for label in yaml.safe_load(front)["metadata"]["labels"]}


def _conversations(week) -> dict[str, dict]:
    out = {}
    for line in week.records:
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if "-bad-" not in record["conversation_id"]:
            out[record["conversation_id"]] = record
    return out


def _normalise(messages: list[dict]) -> list[str]:
    return [re.sub(r"\s+", " ", re.sub(r"[.!?]+$", "", m["content"].strip().lower())) for m in messages]


def test_deterministic_per_week_and_seed():
    assert generate_week(W1, 200) == generate_week(W1, 200)
    assert generate_week(W1, 200, seed=1).records != generate_week(W1, 200).records
    ids1, ids2 = set(_conversations(generate_week(W1, 100))), set(_conversations(generate_week(W2, 100)))
    assert len(ids1) == 100 and not ids1 & ids2
    assert all(i.startswith("s-2026-11-16-") for i in ids1)


def test_records_are_canonical_and_inside_the_week():
    week = generate_week(W1, 30)
    assert week.malformed == 0 and len(week.records) == 30
    for line in week.records:
        record = json.loads(line)
        assert set(record) == {"conversation_id", "started_at", "messages", "source"}
        started = dt.datetime.fromisoformat(record["started_at"])
        assert record["started_at"].endswith("Z") and started.date() - W1 < dt.timedelta(days=7)


def test_variety_of_labels_and_lengths():
    week = generate_week(W1, 400)
    truth = week.truth
    assert len(truth) == 400 and week.malformed >= 6
    assert len(Counter(t["topic"] for t in truth)) >= 10
    for classifier in ("topic", "satisfaction", "user_expertise", "intent"):
        seen = {t[classifier] for t in truth}
        assert seen <= _labels(classifier)
        if classifier != "topic":
            assert seen == _labels(classifier), classifier
    conversations = _conversations(week).values()
    turns = [len(c["messages"]) for c in conversations]
    chars = [sum(len(m["content"]) for m in c["messages"]) for c in conversations]
    assert min(turns) <= 2 and max(turns) >= 20
    assert max(chars) > 16_000  # > 4,000 tokens: truncation has work to do
    assert any(
        "ignore previous instructions" in m["content"].lower() or "disregard" in m["content"].lower()
        for c in conversations
        for m in c["messages"]
        if m["role"] == "user"
    )


def test_duplicates_are_exact_or_near_with_truth():
    week = generate_week(W1, 400)
    conversations = _conversations(week)
    dupes = [t for t in week.truth if "duplicate_of" in t]
    assert 15 <= len(dupes) <= 60
    exact = near = 0
    for t in dupes:
        copy, original = conversations[t["conversation_id"]], conversations[t["duplicate_of"]]
        original_truth = next(o for o in week.truth if o["conversation_id"] == t["duplicate_of"])
        assert "duplicate_of" not in original_truth
        assert {k: t[k] for k in ("topic", "satisfaction", "user_expertise", "intent")} == {
            k: original_truth[k] for k in ("topic", "satisfaction", "user_expertise", "intent")
        }
        if copy["messages"] == original["messages"]:
            exact += 1
        else:
            assert _normalise(copy["messages"]) == _normalise(original["messages"])
            near += 1
    assert exact and near


def test_write_week(tmp_path):
    landing, truth = write_week(tmp_path / "l", tmp_path / "t", W1, n=60, seed=2)
    assert landing.name == "sample-2026-11-16.jsonl" and truth.name == "sample-2026-11-16.truth.jsonl"
    assert len(truth.read_text().splitlines()) == 60
    assert len(landing.read_bytes().splitlines()) == 60 + generate_week(W1, 60, 2).malformed


def test_write_week_streams_the_lines_of_generate_week(tmp_path):
    """Malformed lines merged in at the places generate_week inserts them; nothing else left behind."""
    for n, seed in [(10, 1), (400, 7), (900, 3)]:
        week = generate_week(W1, n, seed)
        landing, truth = write_week(tmp_path / "l", tmp_path / "t", W1, n=n, seed=seed)
        assert landing.read_bytes() == b"".join(line + b"\n" for line in week.records)
        assert [json.loads(line) for line in truth.read_text().splitlines()] == week.truth
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["l", "sample-2026-11-16.jsonl", "sample-2026-11-16.truth.jsonl", "t"]
