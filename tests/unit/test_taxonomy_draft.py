"""The draft is a classifier file like those in prompts/: Prompty and the project's loader both read it."""

from pathlib import Path

import prompty
import pytest

from semtel_dagster.core.classify.prompts import PromptError, load_classifier, load_classifiers
from semtel_dagster.core.taxonomy.discover import Discovery, DiscoveryConfig
from semtel_dagster.core.taxonomy.draft import draft_text, write_draft
from semtel_dagster.core.taxonomy.labels import Label
from semtel_dagster.core.taxonomy.report import report_markdown
from semtel_dagster.core.taxonomy.rounds import Evolution, Round

LABELS = [
    Label("travel_plans", "Trips: flights, hotels - and visas.", 'Book me a "cheap" flight to Rome: any ideas?'),
    Label("code_help", "Writing or fixing code #python {json}", "My loop: it never ends"),
]


def test_draft_loads_with_prompty_and_the_project_loader(tmp_path):
    path = tmp_path / "prompts" / "support_topics.prompty"
    classifier = write_draft(path, "support_topics", LABELS, {"method": "llm", "input": "x.jsonl"})
    agent = prompty.load(str(path))
    (output,) = agent.outputs
    assert output.name == "label" and output.enum_values == ["travel_plans", "code_help", "other"]
    assert classifier.name == "support_topics" and classifier.labels == ("travel_plans", "code_help", "other")
    assert classifier.definitions[0] == LABELS[0].as_dict() and classifier.definitions[-1]["name"] == "other"
    assert agent.metadata["taxonomy"]["status"] == "draft"
    system = classifier.messages("User: hello")[0]["content"]
    assert '- travel_plans: Trips: flights, hotels - and visas. Example: Book me a "cheap" flight' in system
    assert list(load_classifiers(path.parent)) == ["support_topics"]
    assert classifier.response_format()["json_schema"]["schema"]["properties"]["label"]["enum"][-1] == "other"


def test_the_draft_has_the_shape_of_the_shipped_classifiers(tmp_path):
    shipped = load_classifier(Path(__file__).parents[2] / "prompts" / "topic.prompty")
    draft = write_draft(tmp_path / "d.prompty", "d", LABELS, {})
    assert [m["role"] for m in draft.messages("t")] == [m["role"] for m in shipped.messages("t")]
    assert set(draft.definitions[0]) == {"name", "definition", "example"}


def test_a_draft_that_would_not_load_is_never_written(tmp_path):
    with pytest.raises(PromptError):
        write_draft(tmp_path / "bad.prompty", "bad", [Label("x", "")], {})
    assert not (tmp_path / "bad.prompty").exists()
    assert "enumValues" in draft_text("n", LABELS, {})


def test_report_shows_rounds_shares_other_merges_and_reviewer_fields():
    evolution = Evolution(
        rounds=[Round(1, "generate", 25, ("a", "b"), ("a", "b"), ()), Round(2, "update", 25, ("a", "c"), ("c",), ("b",))],
        stopped="label names unchanged for 2 rounds running (round 2)",
        before_review=[Label("a", "A."), Label("c", "C.")],
        labels=[Label("a", "A.", "ex a"), Label("d", "D.")],
        merged=[{"from": ["c", "e"], "into": "d"}],
        split=[{"from": "f", "into": ["g", "h"]}],
    )
    result = Discovery(
        DiscoveryConfig(labels=2, name="t"),
        "in.jsonl",
        {"2026-11-16/short": 3, "2026-11-16/long": 2},
        5,
        evolution,
        holdout={
            "conversations": 10,
            "shares": {"a": 0.5, "d": 0.3, "other": 0.2},
            "other_share": 0.2,
            "rejects": 0,
            "calls": 10,
            "prompt_tokens": 100,
            "completion_tokens": 10,
        },
        totals={"ok": 8, "requests": 9, "prompt_tokens": 1234, "completion_tokens": 56, "endpoints": {"sim-east": {"ok": 8}}},
    )
    text = report_markdown(result)
    assert "| 2 | update | 25 | 2 | `c` | `b` |  |" in text
    assert "`other`: **20.0%**" in text and "| `a` | 50.0% | A. | ex a |" in text
    assert "`c`, `e` -> `d`" in text and "`f` -> `g`, `h`" in text
    assert "dropped by the review: `c`" in text and "new in the review: `d`" in text
    assert "## Reviewer notes" in text and "| `other` | | |" in text and "endpoint `sim-east`: 8 answers" in text
