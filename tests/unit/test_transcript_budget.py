"""Per-classifier transcript budgets: each classifier reads the part of a long conversation it needs."""

import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from semtel_dagster.core.classify.plan import plan_requests
from semtel_dagster.core.classify.prompts import PromptError, load_classifier, load_classifiers
from semtel_dagster.core.prepare.tokens import count_tokens

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
WEEK = dt.date(2026, 11, 16)


def _week(transcript: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    clusters = pl.DataFrame(
        {"conversation_id": ["c1"], "week_start": [WEEK], "representative_id": ["c1"], "is_representative": [True]}
    )
    truncated = pl.DataFrame({"conversation_id": ["c1"], "transcript": [transcript], "tokens_after": [count_tokens(transcript)]})
    return clusters, truncated


def test_satisfaction_reads_the_end_and_topic_the_start_of_a_long_conversation():
    classifiers = load_classifiers(PROMPTS, ["satisfaction", "topic"])
    transcript = "User: my python code fails " + "filler words here " * 1500 + " this is perfect, thank you"
    requests = list(plan_requests(*_week(transcript), classifiers, set()).to_send)
    sent = {r.classifiers[0]: r.messages[-1]["content"] for r in requests}
    assert "thank you" in sent["satisfaction"] and "my python code" not in sent["satisfaction"]
    assert "my python code" in sent["topic"] and "thank you" not in sent["topic"]
    for request in requests:
        budget = classifiers[request.classifiers[0]].transcript_budget.max_tokens
        assert count_tokens(request.messages[-1]["content"]) <= budget + 16  # plus the "Conversation:" line
        assert request.prompt_tokens < count_tokens(transcript)


def test_short_transcripts_are_sent_whole():
    classifiers = load_classifiers(PROMPTS, ["satisfaction"])
    transcript = "User: hi\n\nAssistant: hello"
    (request,) = plan_requests(*_week(transcript), classifiers, set()).to_send
    assert transcript in request.messages[-1]["content"]


@pytest.mark.parametrize("spec", ["turns:512", "tail:512+compress", "sideways:100", "tail:8"])
def test_a_budget_that_cannot_cut_a_transcript_is_an_error_naming_the_field(tmp_path, spec):
    path = tmp_path / "satisfaction.prompty"
    shutil.copy(PROMPTS / "satisfaction.prompty", path)
    text = path.read_text()
    path.write_text(text.replace('transcript_budget: "tail:1024"', f'transcript_budget: "{spec}"'))
    with pytest.raises(PromptError, match="transcript_budget"):
        load_classifier(path)
