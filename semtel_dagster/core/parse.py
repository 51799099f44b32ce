"""Parse and clean LLM answers into labels, and fan them out from representatives to duplicates.

Row conservation: every conversation x classifier of the week ends up either in ``classifications``
or in ``classification_rejects`` with a reason (no answer yet, request failed, unparseable, out of
set). Cleaning only ever maps to a label of the classifier's set, and records how it did.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import polars as pl

from semtel_dagster.core import tables
from semtel_dagster.core.classify import expected_request_ids
from semtel_dagster.core.dispatch import STATUS_OK
from semtel_dagster.core.prompts import Classifier

CLEAN_EXACT = "exact"
CLEAN_NORMALIZED = "case_whitespace"

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_SEPARATORS = re.compile(r"[\s_\-]+")


class ParseFailure(ValueError):
    """An answer that yields no valid label; the message is the reject reason."""


@dataclass(frozen=True)
class ParsedLabel:
    label: str
    raw_label: str
    cleaning: str


def _normalize(label: str) -> str:
    return _SEPARATORS.sub(" ", label.strip().strip("\"'`.").casefold()).strip()


def extract_label(raw_text: str | None) -> str:
    """The ``label`` field of the JSON answer, also when the JSON is wrapped in prose or fences."""
    if not raw_text or not raw_text.strip():
        raise ParseFailure("empty answer")
    try:
        answer = json.loads(raw_text)
    except json.JSONDecodeError:
        match = _JSON_OBJECT.search(raw_text)
        if not match:
            raise ParseFailure("no JSON object in answer") from None
        try:
            answer = json.loads(match.group(0))
        except json.JSONDecodeError as exc:
            raise ParseFailure(f"malformed JSON: {exc.msg}") from None
    if not isinstance(answer, dict) or "label" not in answer:
        raise ParseFailure("answer has no `label` field")
    if answer["label"] is None:
        raise ParseFailure("`label` is null")
    return str(answer["label"])


def clean_label(raw_label: str, classifier: Classifier) -> ParsedLabel:
    if raw_label in classifier.labels:
        return ParsedLabel(raw_label, raw_label, CLEAN_EXACT)
    by_normal = {_normalize(label): label for label in classifier.labels}
    if (label := by_normal.get(_normalize(raw_label))) is not None:
        return ParsedLabel(label, raw_label, CLEAN_NORMALIZED)
    raise ParseFailure(f"label {raw_label[:80]!r} is not in the {classifier.name} label set")


def parse_answer(raw_text: str | None, classifier: Classifier) -> ParsedLabel:
    return clean_label(extract_label(raw_text), classifier)


def parse_week(
    clusters: pl.DataFrame,
    responses: pl.DataFrame,
    classifiers: dict[str, Classifier],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(classifications, classification_rejects) for every conversation x classifier of the week."""
    expected = expected_request_ids(clusters, classifiers)
    answers = expected.join(
        responses.select("request_id", "status", "error", "raw_text", "model", "prompt_version"),
        on="request_id",
        how="left",
    )
    decided = []
    for rep, name, rid, status, error, raw_text, model, version in answers.iter_rows():
        classifier = classifiers[name]
        if status is None:
            decided.append((rep, name, rid, None, None, None, None, None, "no response recorded", None))
        elif status != STATUS_OK:
            decided.append((rep, name, rid, None, None, None, None, None, f"request failed: {error}", raw_text))
        else:
            try:
                parsed = parse_answer(raw_text, classifier)
            except ParseFailure as failure:
                decided.append((rep, name, rid, None, None, None, None, None, str(failure), raw_text))
            else:
                decided.append(
                    (rep, name, rid, parsed.label, parsed.raw_label, parsed.cleaning, version, model, None, raw_text)
                )
    outcome = pl.DataFrame(
        decided,
        schema={
            "representative_id": pl.String,
            "classifier": pl.String,
            "request_id": pl.String,
            "label": pl.String,
            "raw_label": pl.String,
            "cleaning": pl.String,
            "prompt_version": pl.String,
            "model": pl.String,
            "reason": pl.String,
            "raw_text": pl.String,
        },
        orient="row",
    )
    members = clusters.select("conversation_id", "week_start", "representative_id")
    fanned = members.join(outcome, on="representative_id", how="inner")
    classifications = tables.conform(fanned.filter(pl.col("reason").is_null()), tables.CLASSIFICATIONS)
    rejects = tables.conform(fanned.filter(pl.col("reason").is_not_null()), tables.CLASSIFICATION_REJECTS)
    return (
        classifications.sort("conversation_id", "classifier"),
        rejects.sort("conversation_id", "classifier"),
    )
