"""The classifier library (semtel_dagster.core.classify.prompts) over the real prompts/*.prompty files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from semtel_dagster.core.classify.prompts import (
    PromptError,
    answer_max_tokens,
    load_classifier,
    load_classifiers,
    longest_answer,
    multi_classifier_response_format,
    multi_conversation_response_format,
)
from semtel_dagster.core.prepare.tokens import count_tokens

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"

EXPECTED_LABELS = {
    "intent": ("asking", "doing", "expressing"),
    "satisfaction": ("1", "2", "3", "4", "5"),
    "user_expertise": ("novice", "beginner", "intermediate", "proficient", "expert"),
}


@pytest.fixture(scope="module")
def classifiers():
    return load_classifiers(PROMPTS)


def test_loads_all_classifiers_with_label_sets(classifiers):
    assert sorted(classifiers) == ["intent", "knowledge_work", "satisfaction", "task_complexity", "topic", "user_expertise"]
    for name, labels in EXPECTED_LABELS.items():
        assert classifiers[name].labels == labels
    topic = classifiers["topic"].labels
    assert len(topic) == len(set(topic)) >= 10
    assert {"programming", "data_analysis", "cooking_food", "other"} <= set(topic)
    for name, c in classifiers.items():
        assert [d["name"] for d in c.definitions] == list(c.labels)
        assert all(d["definition"] and d.get("example") for d in c.definitions), name
        assert set(c.synonyms) <= set(c.labels) and all(c.synonyms.values()), name
        assert all(set(members) <= set(c.labels) for members in c.groups.values()), name
        assert c.max_tokens > 0 and c.temperature == 0.0
    assert 15 <= len(topic) - 1 <= 25
    assert classifiers["task_complexity"].groups == {
        "low": ["remember", "understand", "apply"],
        "high": ["analyze", "evaluate", "create"],
    }


def test_version_is_content_hash(classifiers):
    for c in classifiers.values():
        assert c.version == hashlib.sha256(c.path.read_bytes()).hexdigest()[:12]
    assert len({c.version for c in classifiers.values()}) == len(classifiers)


def test_version_changes_when_file_changes(tmp_path):
    shutil.copy(PROMPTS / "topic.prompty", tmp_path / "topic.prompty")
    original = load_classifiers(tmp_path)["topic"]
    assert original.version == load_classifiers(PROMPTS)["topic"].version  # same bytes, same version

    path = tmp_path / "topic.prompty"
    text = path.read_text()
    assert "You are a careful annotator." in text
    path.write_text(text.replace("You are a careful annotator.", "You are a meticulous annotator."))
    edited = load_classifiers(tmp_path)["topic"]
    assert edited.version != original.version
    assert edited.labels == original.labels
    # the new wording is what gets sent (no stale render cached under the old version)
    system = edited.messages("User: hi")[0]["content"]
    assert "meticulous annotator" in system and "careful annotator" not in system
    assert "careful annotator" in original.messages("User: hi")[0]["content"]


def test_messages_contain_labels_and_transcript(classifiers):
    transcript = "User: my python function crashes\n\nAssistant: show me the traceback"
    for name, c in classifiers.items():
        messages = c.messages(transcript)
        assert [m["role"] for m in messages] == ["system", "user"], name
        assert transcript in messages[1]["content"]
        for label in c.labels:
            assert label in messages[0]["content"], (name, label)
        # a different transcript changes only the user turn
        other = c.messages("User: something else")
        assert other[0] == messages[0] and "something else" in other[1]["content"]
        assert transcript not in other[1]["content"]


def test_response_format_enum(classifiers):
    for name, c in classifiers.items():
        rf = c.response_format()
        assert rf["type"] == "json_schema"
        schema = rf["json_schema"]["schema"]
        assert rf["json_schema"]["strict"] is True
        assert schema["properties"]["label"]["enum"] == list(c.labels)
        assert schema["required"] == ["label"]
        assert schema["additionalProperties"] is False
        assert name in rf["json_schema"]["name"]


def test_select_by_name_keeps_order(classifiers):
    picked = load_classifiers(PROMPTS, names=["topic", "intent"])
    assert list(picked) == ["topic", "intent"]
    assert picked["topic"].version == classifiers["topic"].version


def test_unknown_name_is_an_error():
    with pytest.raises(PromptError, match="nope"):
        load_classifiers(PROMPTS, names=["topic", "nope"])


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(PromptError, match=r"no \.prompty files"):
        load_classifiers(tmp_path)


def _write_without_labels(path: Path) -> None:
    text = (PROMPTS / "intent.prompty").read_text()
    head, meta_and_rest = text.split("metadata:\n", 1)
    # drop the metadata block up to the template separator
    body = meta_and_rest.split("\n---\n", 1)[1]
    path.write_text(head + "metadata:\n  classifier: broken\n---\n" + body)


def test_prompt_without_labels_names_the_file(tmp_path):
    path = tmp_path / "broken.prompty"
    _write_without_labels(path)
    with pytest.raises(PromptError) as info:
        load_classifier(path)
    assert "broken.prompty" in str(info.value)
    assert "metadata.labels" in str(info.value)
    # and a folder containing it fails loudly too, naming that file
    shutil.copy(PROMPTS / "topic.prompty", tmp_path / "topic.prompty")
    with pytest.raises(PromptError, match=r"broken\.prompty"):
        load_classifiers(tmp_path)


def test_label_without_definition_is_an_error(tmp_path):
    text = (PROMPTS / "intent.prompty").read_text()
    path = tmp_path / "intent.prompty"
    lines = text.splitlines(keepends=True)
    idx = next(i for i, line in enumerate(lines) if line.strip().startswith("definition:"))
    del lines[idx]
    path.write_text("".join(lines))
    with pytest.raises(PromptError, match=r"intent.prompty: metadata.labels\[0\]"):
        load_classifier(path)


def test_duplicate_classifier_names_are_an_error(tmp_path):
    shutil.copy(PROMPTS / "topic.prompty", tmp_path / "topic.prompty")
    text = (PROMPTS / "topic.prompty").read_text()
    (tmp_path / "topic_v2.prompty").write_text(text.replace("careful annotator", "meticulous annotator"))
    with pytest.raises(PromptError, match="topic"):
        load_classifiers(tmp_path)


def _edited(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (PROMPTS / f"{name}.prompty").read_text()
    assert old in text
    path = tmp_path / f"{name}.prompty"
    path.write_text(text.replace(old, new, 1))
    return path


def test_outputs_declare_the_label_set_as_enum_values(classifiers):
    """Prompty tooling sees the output contract: outputs.label.enumValues is the label set, and the
    schema sent is the one derived from outputs."""
    import prompty

    for name, c in classifiers.items():
        (label,) = [p for p in prompty.load(str(c.path)).outputs if p.name == "label"]
        assert label.kind == "string" and label.enum_values == list(c.labels), name
        assert c.response_format()["json_schema"]["schema"]["properties"] == {"label": {"type": "string", "enum": list(c.labels)}}


def test_schema_follows_outputs_and_a_label_edit_is_a_new_version(tmp_path):
    original = load_classifier(PROMPTS / "intent.prompty")
    path = _edited(tmp_path, "intent", '["asking", "doing", "expressing"]', '["asking", "doing", "venting"]')
    text = path.read_text()
    path.write_text(text.replace("- name: expressing", "- name: venting").replace("    expressing:", "    venting:"))
    edited = load_classifier(path)
    assert edited.labels == ("asking", "doing", "venting")
    assert edited.response_format()["json_schema"]["schema"]["properties"]["label"]["enum"] == ["asking", "doing", "venting"]
    assert edited.version != original.version


def test_enum_values_and_definitions_must_agree(tmp_path):
    path = _edited(tmp_path, "intent", '["asking", "doing", "expressing"]', '["asking", "doing"]')
    with pytest.raises(PromptError, match=r"intent.prompty: metadata.labels must define the labels of outputs.label.enumValues"):
        load_classifier(path)


def test_outputs_without_enum_values_are_an_error(tmp_path):
    path = _edited(tmp_path, "intent", '    enumValues: ["asking", "doing", "expressing"]\n', "")
    with pytest.raises(PromptError, match=r"intent.prompty: outputs.label must declare its values as enumValues"):
        load_classifier(path)
    path = _edited(tmp_path, "intent", "outputs:\n  - name: label\n", "outputs:\n  - name: verdict\n")
    with pytest.raises(PromptError, match=r"outputs must declare `label`"):
        load_classifier(path)


def test_extra_closed_outputs_are_required_by_the_schema_and_budgeted(tmp_path):
    base = load_classifier(PROMPTS / "intent.prompty")
    extra = '    enumValues: ["asking", "doing", "expressing"]\n  - name: harmful\n    kind: boolean\n'
    path = _edited(tmp_path, "intent", '    enumValues: ["asking", "doing", "expressing"]\n', extra)
    c = load_classifier(path)
    schema = c.response_format()["json_schema"]["schema"]
    assert schema["required"] == ["label", "harmful"] and schema["properties"]["harmful"] == {"type": "boolean"}
    assert c.max_tokens == base.max_tokens + len(', "harmful": false')


def test_max_tokens_fit_the_longest_answer_in_bytes(classifiers):
    """Derived, not guessed: at least one token per UTF-8 byte of the longest valid answer, which bounds
    every byte-level tokenizer, and never below the count of the tokenizer semtel itself uses."""
    for name, c in classifiers.items():
        longest = max(c.labels, key=len)
        answer = json.dumps({"label": longest})
        assert longest_answer(c.response_format()["json_schema"]["schema"]) == {"label": longest}
        assert len(answer.encode()) < c.max_tokens <= len(answer.encode()) + 8, name
        assert count_tokens(answer) < c.max_tokens
    assert classifiers["topic"].max_tokens > classifiers["satisfaction"].max_tokens


def test_batched_budgets_scale_with_ids_and_classifiers(classifiers):
    topic = classifiers["topic"]
    ids = [f"conv-{i:04d}" for i in range(8)]
    one = answer_max_tokens(multi_conversation_response_format(topic, ids[:1]), array_items=1)
    eight = answer_max_tokens(multi_conversation_response_format(topic, ids), array_items=8)
    item = len(json.dumps({"id": ids[0], "label": "relationships_advice"}).encode())
    assert eight - one == 7 * (item + len(", "))
    every = answer_max_tokens(multi_classifier_response_format(list(classifiers.values())))
    longest = {n: max(c.labels, key=len) for n, c in classifiers.items()}
    assert every > len(json.dumps(longest).encode()) > sum(len(json.dumps(v)) for v in longest.values())


def test_max_output_tokens_in_the_file_only_raises_the_budget(tmp_path):
    derived = load_classifier(PROMPTS / "intent.prompty").max_tokens
    low = _edited(tmp_path, "intent", "    temperature: 0\n", "    temperature: 0\n    maxOutputTokens: 4\n")
    assert load_classifier(low).max_tokens == derived
    high = _edited(tmp_path, "intent", "    temperature: 0\n", "    temperature: 0\n    maxOutputTokens: 300\n")
    assert load_classifier(high).max_tokens == 300
