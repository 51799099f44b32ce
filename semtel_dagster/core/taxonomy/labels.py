"""Label sets while they are discovered: parsing a step's answer, tidying names, telling when they settle."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from semtel_dagster.core.classify.parse import ParseFailure, load_json

OTHER = "other"
OTHER_DEFINITION = "Anything that fits none of the other labels, including greetings and empty chit-chat."
OTHER_EXAMPLE = "hi"
MAX_NAME_CHARS = 40
_NOT_NAME = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Label:
    name: str
    definition: str
    example: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def slug(name: str) -> str:
    """A label name as classifiers store it: lower snake_case, at most ``MAX_NAME_CHARS``."""
    return _NOT_NAME.sub("_", name.strip().lower()).strip("_")[:MAX_NAME_CHARS].strip("_")


def answer_object(raw_text: str | None) -> dict:
    """The JSON object of an answer (the parser's repairs included); ``ParseFailure`` when there is none."""
    value, _ = load_json(raw_text)
    if not isinstance(value, dict):
        raise ParseFailure("the answer is not a JSON object")
    return value


def parse_label(entry: object) -> Label | None:
    """A ``{name, definition, example}`` entry, or None when it lacks a usable name or definition."""
    if not isinstance(entry, dict):
        return None
    name, definition = slug(str(entry.get("name") or "")), str(entry.get("definition") or "").strip()
    if not name or not definition:
        return None
    return Label(name, " ".join(definition.split()), " ".join(str(entry.get("example") or "").split()))


def parse_labels(raw_text: str | None) -> list[Label]:
    """The ``labels`` of a generate / update / review answer, tidied; ``ParseFailure`` when there are none."""
    entries = answer_object(raw_text).get("labels")
    labels = tidy([label for label in map(parse_label, entries if isinstance(entries, list) else []) if label])
    if not labels:
        raise ParseFailure("the answer holds no label with a name and a definition")
    return labels


def tidy(labels: Sequence[Label], limit: int | None = None) -> list[Label]:
    """Distinct names in order, without ``other`` (added once, at the end, by ``with_other``), at most ``limit``."""
    seen: dict[str, Label] = {}
    for label in labels:
        if label.name != OTHER and label.name not in seen:
            seen[label.name] = label
    kept = list(seen.values())
    return kept[:limit] if limit is not None else kept


def with_other(labels: Sequence[Label]) -> list[Label]:
    """The final label set: the discovered labels, then ``other`` (every classifier has a way out)."""
    return [*tidy(labels), Label(OTHER, OTHER_DEFINITION, OTHER_EXAMPLE)]


def names(labels: Sequence[Label]) -> tuple[str, ...]:
    return tuple(label.name for label in labels)


def settled(history: Sequence[Sequence[str]], patience: int = 2) -> bool:
    """The label names stayed the same for ``patience`` rounds running (the last ``patience`` + 1 sets
    agree as sets): more minibatches are not changing the taxonomy."""
    if patience < 1 or len(history) < patience + 1:
        return False
    last = [frozenset(h) for h in history[-(patience + 1) :]]
    return all(h == last[0] for h in last)
