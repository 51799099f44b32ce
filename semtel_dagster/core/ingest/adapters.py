"""Adapters from real conversation formats to the canonical landing record.

Each adapter turns one parsed input record into zero or more canonical records
(``conversation_id``, ``started_at``, ``messages``, ``source``) or raises :class:`AdapterError` with
the reason the record becomes an ``ingest_rejects`` row. Adapters are pure: ingest owns files, ids
of records that carry none, weeks of records without a timestamp, and validation.

Decisions where the formats are silent:

* hh-rlhf: each line holds ``chosen`` and ``rejected`` transcripts that share all but the last
  assistant turn. One conversation per line, from ``chosen`` by default (the preferred reply is the
  one a deployed assistant would give; both would double-count the user's request).
* OpenAssistant: ``path`` mode gives one conversation per root-to-leaf path (what a user actually
  saw); ``tree`` mode gives one conversation per tree along the first-ranked reply at each level.
* arena-hard: questions are the records; answers come from ``answers*.jsonl`` files beside them and
  are joined on ``question_id``. A question without an answer is still a conversation (user turn only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from semtel_dagster.core.lake.tables import ENGAGEMENT

InputFormat = Literal["canonical", "sharegpt", "hh_rlhf", "oasst", "arena_hard", "openai", "table"]
INPUT_FORMATS: tuple[str, ...] = ("canonical", "sharegpt", "hh_rlhf", "oasst", "arena_hard", "openai", "table")

# Optional engagement signals carried through from any format's record (tables.ENGAGEMENT).
ENGAGEMENT_FIELDS: tuple[str, ...] = tuple(ENGAGEMENT)
# Canonical fields a table column mapping may name; messages can also be built from two text columns.
MAPPABLE_FIELDS = ("conversation_id", "started_at", "messages", "source", "user", "assistant", *ENGAGEMENT_FIELDS)

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "prompter": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "function_call": "assistant",
}
_OPENAI_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


class AdapterError(ValueError):
    """A record this format cannot turn into a conversation; the message is the reject reason."""


@dataclass(frozen=True)
class AdapterOptions:
    hh_transcript: Literal["chosen", "rejected"] = "chosen"
    oasst_mode: Literal["path", "tree"] = "path"
    column_mapping: Mapping[str, str] = field(default_factory=dict)  # canonical field -> column


def adapt(
    fmt: str, record: Mapping[str, Any], options: AdapterOptions | None = None, answers: Mapping[str, str] | None = None
) -> list[dict]:
    """Canonical records for one input record of format ``fmt`` (``canonical`` passes through)."""
    options = options or AdapterOptions()
    if fmt == "canonical":
        return [dict(record)]
    if fmt == "sharegpt":
        return [from_sharegpt(record)]
    if fmt == "hh_rlhf":
        return [from_hh_rlhf(record, options.hh_transcript)]
    if fmt == "oasst":
        return from_oasst(record, options.oasst_mode)
    if fmt == "arena_hard":
        return [from_arena_hard(record, answers or {})]
    if fmt == "openai":
        return [from_openai(record)]
    if fmt == "table":
        return [from_table_row(record, options.column_mapping)]
    raise ValueError(f"unknown input_format {fmt!r}; expected one of {INPUT_FORMATS}")


def from_sharegpt(record: Mapping[str, Any]) -> dict:
    turns = record.get("conversations", record.get("conversation"))
    if not isinstance(turns, list):
        raise AdapterError("sharegpt: 'conversations' must be a list of {from, value}")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise AdapterError(f"sharegpt: conversations[{i}] is not an object")
        speaker = str(turn.get("from", turn.get("role", ""))).strip().lower()
        role = _SHAREGPT_ROLES.get(speaker)
        if role is None:
            raise AdapterError(f"sharegpt: conversations[{i}].from {speaker!r} is not a known speaker")
        messages.append({"role": role, "content": _text(turn.get("value", turn.get("content")))})
    return _canonical(record.get("id"), record.get("started_at", record.get("timestamp")), messages, record)


def parse_hh_transcript(text: str) -> list[dict]:
    """``\\n\\nHuman: ...\\n\\nAssistant: ...`` into messages; text before the first marker is dropped."""
    parts = _HH_TURN.split(text if text.startswith("\n\n") else "\n\n" + text)
    return [
        {"role": "user" if speaker == "Human" else "assistant", "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2])
    ]


def from_hh_rlhf(record: Mapping[str, Any], transcript: str = "chosen") -> dict:
    text = record.get(transcript)
    if not isinstance(text, str):
        raise AdapterError(f"hh_rlhf: '{transcript}' transcript missing or not a string")
    messages = parse_hh_transcript(text)
    if not messages:
        raise AdapterError("hh_rlhf: no '\\n\\nHuman:' / '\\n\\nAssistant:' turns in the transcript")
    return _canonical(record.get("id"), record.get("started_at"), messages, record)


def from_oasst(tree: Mapping[str, Any], mode: str = "path") -> list[dict]:
    """One conversation per root-to-leaf path (``path``) or per tree (``tree``); ids are leaf/root ids."""
    root = tree.get("prompt")
    if not isinstance(root, Mapping):
        raise AdapterError("oasst: 'prompt' (the root message) missing")
    if mode == "tree":
        path = [root]
        while replies := _live_replies(path[-1]):
            path.append(min(replies, key=lambda m: (m.get("rank") is None, m.get("rank") or 0)))
        paths = [path]
    elif mode == "path":
        paths = list(_oasst_paths(root, []))
    else:
        raise ValueError(f"oasst mode must be 'path' or 'tree', got {mode!r}")
    tree_id = str(tree.get("message_tree_id") or root.get("message_id") or "")
    out: list[dict] = []
    for path in paths:
        messages = [
            {"role": "user" if m.get("role") == "prompter" else "assistant", "content": _text(m.get("text"))} for m in path
        ]
        leaf = path[-1].get("message_id") or f"{tree_id}:{len(out)}"
        cid = tree_id if mode == "tree" else f"{tree_id}:{leaf}"
        out.append(_canonical(cid or None, root.get("created_date"), messages, tree))
    return out


def _live_replies(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in message.get("replies") or [] if isinstance(r, Mapping) and not r.get("deleted")]


def _oasst_paths(message: Mapping[str, Any], prefix: list) -> Iterator[list]:
    path = [*prefix, message]
    replies = _live_replies(message)
    if not replies:
        yield path
    for reply in replies:
        yield from _oasst_paths(reply, path)


def arena_answers(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``question_id -> first answer turn`` from arena-hard answer records (later files do not override)."""
    answers: dict[str, str] = {}
    for rec in records:
        try:
            answers.setdefault(str(rec["question_id"]), _text(rec["choices"][0]["turns"][0]["content"]))
        except (KeyError, IndexError, TypeError):
            continue
    return answers


def from_arena_hard(question: Mapping[str, Any], answers: Mapping[str, str]) -> dict:
    qid = question.get("question_id")
    turns = question.get("turns")
    if not qid or not isinstance(turns, list) or not turns:
        raise AdapterError("arena_hard: 'question_id' and a non-empty 'turns' list are required")
    messages = [{"role": "user", "content": _text(t.get("content") if isinstance(t, Mapping) else t)} for t in turns]
    if str(qid) in answers:
        messages.append({"role": "assistant", "content": answers[str(qid)]})
    return _canonical(qid, question.get("started_at"), messages, question)


def from_openai(record: Mapping[str, Any]) -> dict:
    raw = record.get("messages")
    if not isinstance(raw, list):
        raise AdapterError("openai: 'messages' must be a list of {role, content}")
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, Mapping):
            raise AdapterError(f"openai: messages[{i}] is not an object")
        role = _OPENAI_ROLES.get(str(message.get("role", "")).lower())
        if role is None:
            raise AdapterError(f"openai: messages[{i}].role {message.get('role')!r} is not a chat role")
        messages.append({"role": role, "content": _text(message.get("content"))})
    cid = record.get("conversation_id", record.get("id"))
    return _canonical(cid, record.get("started_at", record.get("created_at")), messages, record)


def from_table_row(row: Mapping[str, Any], mapping: Mapping[str, str]) -> dict:
    """A table row through a column mapping: ``messages`` from a list column, or ``user``/``assistant`` text."""
    unknown = set(mapping) - set(MAPPABLE_FIELDS)
    if unknown:
        raise ValueError(f"column_mapping names unknown fields {sorted(unknown)}; allowed {MAPPABLE_FIELDS}")

    def col(name: str) -> Any:
        return row.get(mapping.get(name, name))

    if col("messages") is not None:
        messages = from_openai({"messages": col("messages")})["messages"]
    elif col("user") is not None:
        messages = [{"role": "user", "content": _text(col("user"))}]
        if col("assistant") is not None:
            messages.append({"role": "assistant", "content": _text(col("assistant"))})
    else:
        raise AdapterError("table: neither a messages column nor a user column is present")
    record = {name: col(name) for name in ("source", *ENGAGEMENT_FIELDS) if col(name) is not None}
    return _canonical(col("conversation_id"), col("started_at"), messages, record)


def _text(value: Any) -> str:
    """Message content as text: strings as-is, OpenAI content parts joined, anything else rejected."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in value)
    if value is None:
        return ""
    raise AdapterError(f"message content must be text, got {type(value).__name__}")


def _canonical(cid: Any, started_at: Any, messages: list[dict], record: Mapping[str, Any]) -> dict:
    out: dict[str, Any] = {"messages": messages}
    if cid is not None and str(cid).strip():
        out["conversation_id"] = str(cid)
    if started_at is not None:
        out["started_at"] = started_at
    if isinstance(record.get("source"), str):
        out["source"] = record["source"]
    out.update({name: record[name] for name in ENGAGEMENT_FIELDS if record.get(name) is not None})
    return out
