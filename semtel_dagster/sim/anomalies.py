"""Realistic misbehaviour for the simulator: the ways real models break the answer format.

A configurable share of answers (``SimEndpointConfig.anomaly_rate``) gets exactly one anomaly, drawn
from the kinds that apply to the answer (``number_word`` needs a numeric label, ``missing_id`` a batched
answer, ...). The draw is seeded by the endpoint seed and the request, so a run is reproducible and
a retried request misbehaves the same way, as a temperature-0 model would. The parser must recover
what is recoverable and reject the rest with a precise reason; benchmarks count both.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

AnomalyKind = Literal[
    "prose",  # JSON inside chatty prose
    "fence",  # JSON inside a ```json code fence
    "trailing_comma",
    "single_quotes",
    "truncated",  # cut off mid-answer, finish_reason=length
    "case",  # "Data Analysis" for data_analysis
    "punctuation",  # "**math**."
    "near_miss",  # a typo: "programing"
    "synonym",  # "coding" for programming
    "out_of_set",  # "unknown"
    "number_word",  # "four" for 4
    "missing_id",  # a batched answer skips a conversation
    "extra_id",  # a batched answer invents one
]
ANOMALIES: tuple[str, ...] = get_args(AnomalyKind)

# Paraphrases models commonly give instead of the exact label (a stand-in for model habits; the
# prompt files carry their own synonym tables, which need not match this one).
_PARAPHRASES = {
    "programming": "coding",
    "math": "mathematics",
    "cooking_food": "cooking",
    "travel": "travel planning",
    "translation": "translate",
    "health_fitness": "health",
    "personal_finance": "finance",
    "technology_support": "tech support",
    "writing_editing": "writing",
    "creative_writing": "fiction",
    "novice": "newbie",
    "expert": "advanced",
    "beginner": "basic",
    "asking": "question",
    "doing": "task",
    "expressing": "chit-chat",
    "yes": "true",
    "no": "false",
    "high": "complex",
    "low": "simple",
}
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_OUT_OF_SET = ["unknown", "N/A", "none of the above", "unclear"]


def _label_slots(answer: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every label value in an answer object, single or batched."""
    if not isinstance(answer, dict):
        return []
    if isinstance(answer.get("answers"), list):
        return [(item, "label") for item in answer["answers"] if isinstance(item, dict) and "label" in item]
    return [(answer, key) for key, value in answer.items() if isinstance(value, str)]


def _label_change(kind: str, label: str, rng: random.Random) -> str | None:
    """The misspoken label, or None when the kind does not apply to this label."""
    if kind == "case":
        return label.replace("_", " ").title() if label.lower() != label.upper() else None
    if kind == "punctuation":
        return rng.choice([f"**{label}**.", f"{label}.", f"'{label}'", f" {label} "])
    if kind == "near_miss":
        if len(label) < 6:
            return None
        i = rng.randrange(1, len(label) - 1)
        return label[:i] + label[i + 1 :]
    if kind == "synonym":
        return _PARAPHRASES.get(label)
    if kind == "out_of_set":
        return rng.choice(_OUT_OF_SET)
    if kind == "number_word":
        return _NUMBER_WORDS[int(label)] if label.isdigit() and int(label) <= 10 else None
    raise ValueError(kind)


def _text_change(kind: str, content: str, rng: random.Random) -> str:
    if kind == "prose":
        return f"Sure! Based on the conversation, here is my classification:\n{content}\nLet me know if you need more."
    if kind == "fence":
        return f"```json\n{content}\n```"
    if kind == "trailing_comma":
        return content[: content.rfind("}")] + ",}" if "}" in content else content
    if kind == "single_quotes":
        return content.replace('"', "'")
    if kind == "truncated":
        return content[: max(1, int(len(content) * rng.uniform(0.4, 0.9)))]
    raise ValueError(kind)


_TEXT_KINDS = {"prose", "fence", "trailing_comma", "single_quotes", "truncated"}
_ID_KINDS = {"missing_id", "extra_id"}


def _applicable(kind: str, answer: Any) -> bool:
    if kind in _TEXT_KINDS:
        return True
    batched = isinstance(answer, dict) and isinstance(answer.get("answers"), list) and answer["answers"]
    if kind in _ID_KINDS:
        return bool(batched)
    return any(_label_change(kind, str(c[k]), random.Random(0)) is not None for c, k in _label_slots(answer))


def misbehave(content: str, rate: float, kinds: Sequence[str] | None, seed: int, key: str) -> tuple[str, str | None]:
    """(content, anomaly kind) with probability ``rate`` of one anomaly among ``kinds`` (default: all)."""
    if rate <= 0:
        return content, None
    rng = random.Random(hashlib.sha256(f"{seed}\x1f{key}".encode()).digest())
    if rng.random() >= rate:
        return content, None
    try:
        answer = json.loads(content)
    except json.JSONDecodeError:
        answer = None
    options = [k for k in (kinds or ANOMALIES) if _applicable(k, answer)]
    if not options:
        return content, None
    kind = rng.choice(options)
    if kind in _TEXT_KINDS:
        return _text_change(kind, content, rng), kind
    changes: dict[str, Callable[[], None]] = {
        "missing_id": lambda: answer["answers"].pop(rng.randrange(len(answer["answers"]))),
        "extra_id": lambda: answer["answers"].append(
            {"id": f"conv-{rng.randrange(10**6)}", "label": answer["answers"][0].get("label")}
        ),
    }
    if kind in changes:
        changes[kind]()
    else:
        slots = [(c, k) for c, k in _label_slots(answer) if _label_change(kind, str(c[k]), rng) is not None]
        container, slot = rng.choice(slots)
        container[slot] = _label_change(kind, str(container[slot]), rng)
    return json.dumps(answer), kind
