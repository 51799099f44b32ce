"""Parse and clean LLM answers into labels, and fan them out from representatives to duplicates.

Real model output is messy: JSON inside prose or code fences, trailing commas, single quotes, answers
cut off at ``max_tokens``, labels in another case or spelling, synonyms, numbers as words, batched
answers that skip or invent ids. Each repair is recorded in ``cleaning`` (``;``-separated steps), so a
label is always traceable to what the model wrote. Cleaning only ever maps to a label of the
classifier's set; what cannot be recovered becomes a reject with a precise reason.

Prose is read strictly. A label is looked for inside text only when the text is short (a label plus
at most ``SHORT_ANSWER_EXTRA_WORDS`` words, none of them a negation) or follows a clear marker
(``Label: X``, ``Answer: X``, ``<classifier>: X``). A model's free-text explanation names labels in
passing ("this is not about work", "the user is asking..."), so longer prose without JSON or a
marker is a reject that says so, never a label.

Row conservation: every conversation x classifier of the week ends up either in ``classifications``
or in ``classification_rejects`` with a reason (no answer yet, request failed, unparseable, out of
set, missing from a batched answer). A pair missing from a batched answer is re-asked alone (see
``followup_pairs``); until that answer exists the pair is a reject that says so.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from semtel_dagster.core.classify.plan import STRATEGY_SINGLE, expected_request_ids, latest_per_request, preanswered_pairs
from semtel_dagster.core.classify.prompts import BATCH_ANSWERS_KEY, Classifier, multi_classifier_label_version
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.requests import STATUS_OK

NO_RESPONSE = "no response recorded"
REQUEST_FAILED = "request failed"
NO_JSON = "no JSON object in answer"
CLEAN_EXACT = "exact"
CLEAN_NORMALIZED = "case_whitespace"
CLEAN_SYNONYM = "synonym"
CLEAN_NUMBER = "number_word"
CLEAN_CONTAINED = "label_in_text"
CLEAN_FUZZY = "fuzzy"

_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_UNQUOTED_KEY = re.compile(r"([{,]\s*)([A-Za-z_][\w\-]*)\s*:")
_UNQUOTED_VALUE = re.compile(r"(:\s*)([A-Za-z_][\w\- ]*?)(\s*[,}\]])")
_SEPARATORS = re.compile(r"[\s_\-/]+")
_STRIP = "\"'`.,;:!?*()[]{}<> \t\n"
_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_NUMBER_IN_TEXT = re.compile(r"^(\d+)(?:\.0+)?(?:\s*(?:/|out of|of)\s*\d+)?$")
CLEAN_MARKER = "marker"
# Words a short answer may carry beyond the label itself ("Topic: math.", "the label is doing").
SHORT_ANSWER_EXTRA_WORDS = 3
_NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "none", "without", "isn't", "isnt", "doesn't", "doesnt", "non"})
# A marker that introduces the answer: at the start of a line, "Label:", "Answer -", "Final answer =" ...
_MARKER = r"(?:^|\n)[ \t>*#_-]*(?:final\s+)?(?:{names})[ \t*_]*[:=\-][ \t]*(?P<value>[^\n]+)"


class ParseFailure(ValueError):
    """An answer (or one pair of a batched answer) that yields no valid label; the message is the reason."""


@dataclass(frozen=True)
class ParsedLabel:
    label: str
    raw_label: str
    cleaning: str


# --------------------------------------------------------------------------- JSON out of text


def _close_truncated(text: str) -> str:
    """Close the strings, objects and arrays left open by an answer cut off mid-way."""
    stack, in_string, escaped = [], False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    closed = re.sub(r"[,:]\s*$", "", (text + ('"' if in_string else "")).rstrip())
    if stack and stack[-1] == "}":  # a key that never got its value
        closed = re.sub(r",$", "", re.sub(r'([{,])\s*"[^"]*"$', r"\1", closed))
    return closed + "".join(reversed(stack))


def _candidates(text: str) -> list[tuple[str, str]]:
    """(step, text) to try in order: as is, inside a code fence, from the first brace or bracket."""
    found = [("", text)]
    if fence := _FENCE.search(text):
        found.append(("fenced", fence.group(1).strip()))
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = max(text.rfind("}"), text.rfind("]"))
        found.append(("in_prose", text[start : end + 1] if end > start else text[start:]))
    return found


def _repairs(text: str) -> list[tuple[str, str]]:
    """Progressively repaired variants of a JSON-ish text, with the names of the repairs."""
    variants = [("", text)]
    fixed, steps = text, list[str]()
    if _TRAILING_COMMA.search(fixed):
        fixed, steps = _TRAILING_COMMA.sub(r"\1", fixed), steps + ["trailing_comma"]
        variants.append((";".join(steps), fixed))
    if "'" in fixed and '"' not in fixed:
        fixed, steps = fixed.replace("'", '"'), steps + ["single_quotes"]
        variants.append((";".join(steps), fixed))
    if _UNQUOTED_KEY.search(fixed):
        fixed = _UNQUOTED_KEY.sub(r'\1"\2":', fixed)
        fixed, steps = _UNQUOTED_VALUE.sub(r'\1"\2"\3', fixed), steps + ["unquoted"]
        variants.append((";".join(steps), fixed))
    closed = _close_truncated(fixed)
    if closed != fixed:
        variants.append((";".join(steps + ["truncated"]), closed))
    return variants


def load_json(raw_text: str | None) -> tuple[object, list[str]]:
    """The JSON value in an answer and the repairs it needed; ``ParseFailure`` names what is wrong."""
    if raw_text is None or not raw_text.strip():
        raise ParseFailure("empty answer")
    text = raw_text.strip()
    last_error = None
    for where, candidate in _candidates(text):
        for repair, variant in _repairs(candidate):
            try:
                value = json.loads(variant)
            except json.JSONDecodeError as exc:
                last_error = last_error or exc.msg
                continue
            if where == "in_prose" and not isinstance(value, (dict, list)):
                continue
            return value, [step for step in (where, repair) if step]
    if "{" not in text and "[" not in text:
        raise ParseFailure(NO_JSON)
    raise ParseFailure(f"malformed JSON: {last_error}")


# --------------------------------------------------------------------------- labels


def _normalize(label: str) -> str:
    return _SEPARATORS.sub(" ", label.strip().strip(_STRIP).casefold()).strip(_STRIP).strip()


def _number(text: str) -> str | None:
    """'four', '4.0', '4/5', '4 out of 5' -> '4'."""
    if text in _NUMBER_WORDS:
        return _NUMBER_WORDS[text]
    match = _NUMBER_IN_TEXT.match(text)
    return match.group(1) if match else None


def clean_label(raw_label: str, classifier: Classifier) -> ParsedLabel:
    """Map a raw label onto the classifier's set, or raise with the reason; ``cleaning`` says how."""
    if raw_label in classifier.labels:
        return ParsedLabel(raw_label, raw_label, CLEAN_EXACT)
    normal = _normalize(raw_label)
    by_normal = {_normalize(label): label for label in classifier.labels}
    if (label := by_normal.get(normal)) is not None:
        return ParsedLabel(label, raw_label, CLEAN_NORMALIZED)
    synonyms = {_normalize(s): label for label, words in classifier.synonyms.items() for s in words}
    if (label := synonyms.get(normal)) is not None:
        return ParsedLabel(label, raw_label, f"{CLEAN_SYNONYM}:{normal}->{label}")
    spoken = raw_label.strip().strip(_STRIP).casefold()
    if (number := _number(spoken)) is not None and number in classifier.labels:
        return ParsedLabel(number, raw_label, f"{CLEAN_NUMBER}:{spoken}->{number}")
    if (label := _label_in_short_text(normal, {**by_normal, **synonyms})) is not None:
        return ParsedLabel(label, raw_label, f"{CLEAN_CONTAINED}:{label}")
    threshold = classifier.fuzzy_threshold
    scored = sorted(
        ((difflib.SequenceMatcher(None, normal, key).ratio(), label) for key, label in {**by_normal, **synonyms}.items()),
        reverse=True,
    )
    if normal and scored and scored[0][0] >= threshold:
        runner_up = next((score for score, label in scored[1:] if label != scored[0][1]), 0.0)
        if scored[0][0] - runner_up >= 0.05:
            score, label = scored[0]
            return ParsedLabel(label, raw_label, f"{CLEAN_FUZZY}:{score:.2f}->{label}")
    raise ParseFailure(f"label {raw_label[:80]!r} is not in the {classifier.name} label set")


def _label_in_short_text(normal: str, keys: dict[str, str]) -> str | None:
    """The one label a short text names ("expert level", "the label is doing"), else None: more than a
    few other words, several labels, or a negation ("not programming") name no label."""
    found = {key: label for key, label in keys.items() if key and f" {key} " in f" {normal} "}
    if len(set(found.values())) != 1:
        return None
    key_words = {word for key in found for word in key.split()}
    others = [word for word in normal.split() if word not in key_words]
    if len(others) > SHORT_ANSWER_EXTRA_WORDS or _NEGATIONS.intersection(others):
        return None
    return next(iter(found.values()))


def marked_value(text: str, classifier: Classifier) -> str | None:
    """The value after the last clear answer marker in prose (``Label: X``, ``Answer: X``, ``topic: X``
    at the start of a line), or None."""
    words = ("label", "answer", "category", "classification", classifier.name, classifier.name.replace("_", " "))
    matches = list(re.finditer(_MARKER.format(names="|".join(map(re.escape, words))), text, re.IGNORECASE))
    return matches[-1].group("value").strip() if matches else None


def _label_field(answer: dict, classifier: Classifier) -> tuple[object, str]:
    """The label value of a one-classifier answer: ``label``, any case, or the classifier's name."""
    keys = {_normalize(str(key)): key for key in answer}
    for wanted, step in (("label", ""), (_normalize(classifier.name), "key_is_classifier")):
        if wanted in keys:
            return answer[keys[wanted]], step
    raise ParseFailure("answer has no `label` field")


def _one_label(value: object, classifier: Classifier, steps: list[str]) -> ParsedLabel:
    if value is None:
        raise ParseFailure("`label` is null")
    if isinstance(value, list) and len(value) == 1:
        value, steps = value[0], steps + ["list_of_one"]
    if isinstance(value, (dict, list)):
        raise ParseFailure(f"`label` is not a string: {json.dumps(value)[:80]}")
    raw = str(value)
    parsed = clean_label(raw, classifier)
    cleaning = ";".join(steps + [parsed.cleaning]) if steps else parsed.cleaning
    return ParsedLabel(parsed.label, raw, cleaning)


def parse_answer(raw_text: str | None, classifier: Classifier) -> ParsedLabel:
    """One classifier, one conversation; without JSON, a short bare label or a marked one (``prose_label``)."""
    try:
        answer, steps = load_json(raw_text)
    except ParseFailure as failure:
        if str(failure) != NO_JSON:
            raise
        return prose_label(raw_text or "", classifier)
    if isinstance(answer, list) and len(answer) == 1:
        answer, steps = answer[0], steps + ["list_of_one"]
    if isinstance(answer, dict):
        value, step = _label_field(answer, classifier)
        return _one_label(value, classifier, steps + ([step] if step else []))
    if isinstance(answer, (str, int, float)):
        return _one_label(answer, classifier, steps + ["bare_value"])
    raise ParseFailure("answer has no `label` field")


def prose_label(raw_text: str, classifier: Classifier) -> ParsedLabel:
    """The label of an answer without JSON: after a clear marker, or the whole answer if it is short;
    longer free text is a reject that says so."""
    text = raw_text.strip()
    marked = marked_value(text, classifier)
    if marked is not None:
        try:
            return _one_label(marked, classifier, ["bare_text", CLEAN_MARKER])
        except ParseFailure as failure:
            raise ParseFailure(f"{NO_JSON}; after its marker: {failure}") from None
    try:
        return _one_label(text, classifier, ["bare_text"])
    except ParseFailure:
        words = len(text.split())
        if words > max(len(_normalize(label).split()) for label in classifier.labels) + SHORT_ANSWER_EXTRA_WORDS:
            raise ParseFailure(f"{NO_JSON}: free text ({words} words) without a `Label:` marker") from None
        raise ParseFailure(NO_JSON) from None


Outcome = ParsedLabel | ParseFailure


def parse_batched(
    raw_text: str | None,
    conversation_ids: list[str],
    names: list[str],
    classifiers: dict[str, Classifier],
    finish_reason: str | None = None,
) -> dict[tuple[str, str], Outcome]:
    """Outcome per (conversation, classifier) of one answer, whatever its batching shape.

    Several classifiers: one key per classifier. Several conversations: ``answers`` with one
    ``{id, label}`` per conversation (ids out must match ids in: missing ones fail with a reason,
    extra or repeated ones are ignored and recorded in ``cleaning``).
    """
    pairs = [(cid, name) for cid in conversation_ids for name in names]
    truncated = "; answer truncated at max_tokens" if finish_reason == "length" else ""
    if len(pairs) == 1:
        cid, name = pairs[0]
        try:
            return {pairs[0]: parse_answer(raw_text, classifiers[name])}
        except ParseFailure as failure:
            return {pairs[0]: ParseFailure(f"{failure}{truncated}")}
    try:
        answer, steps = load_json(raw_text)
    except ParseFailure as failure:
        return {pair: ParseFailure(f"batched answer: {failure}{truncated}") for pair in pairs}
    values: dict[tuple[str, str], object]
    if len(conversation_ids) == 1:
        by_name, notes = _by_classifier(answer, names)
        values = {(conversation_ids[0], name): value for name, value in by_name.items()}
    else:
        values, notes = _by_conversation(answer, conversation_ids, names[0])
    outcome: dict[tuple[str, str], Outcome] = {}
    for cid, name in pairs:
        if (cid, name) not in values:
            what = f"classifier {name!r}" if len(conversation_ids) == 1 else f"id {cid!r}"
            outcome[(cid, name)] = ParseFailure(f"{what} missing from batched answer{truncated}")
            continue
        try:
            outcome[(cid, name)] = _one_label(values[(cid, name)], classifiers[name], steps + notes)
        except ParseFailure as failure:
            outcome[(cid, name)] = ParseFailure(f"{failure}{truncated}")
    return outcome


def _by_classifier(answer: object, names: list[str]) -> tuple[dict[str, object], list[str]]:
    if not isinstance(answer, dict):
        return {}, []
    keys = {_normalize(str(key)): key for key in answer}
    found = {name: answer[keys[_normalize(name)]] for name in names if _normalize(name) in keys}
    extra = len(answer) - len(found)
    return found, [f"extra_keys:{extra}"] if extra else []


def _by_conversation(answer: object, ids: list[str], name: str) -> tuple[dict[tuple[str, str], object], list[str]]:
    if isinstance(answer, dict) and BATCH_ANSWERS_KEY in answer:
        answer = answer[BATCH_ANSWERS_KEY]
    if isinstance(answer, dict):  # {"id": "label"} mapping
        answer = [{"id": key, "label": value} for key, value in answer.items()]
    if not isinstance(answer, list):
        return {}, []
    wanted, found, extra, repeated = set(ids), {}, 0, 0
    for item in answer:
        if not isinstance(item, dict):
            extra += 1
            continue
        keys = {_normalize(str(key)): key for key in item}
        cid = str(item[keys["id"]]).strip() if "id" in keys else None
        value = item[keys["label"]] if "label" in keys else item.get(keys.get(_normalize(name), ""), None)
        if cid not in wanted:
            extra += 1
        elif (cid, name) in found:
            repeated += 1
        else:
            found[(cid, name)] = value
    notes = ([f"extra_ids:{extra}"] if extra else []) + ([f"repeated_ids:{repeated}"] if repeated else [])
    return found, notes


# --------------------------------------------------------------------------- the week


_OUTCOME_SCHEMA = {
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
}


def label_version(request_version: str, classifiers: Sequence[str], classifier: Classifier) -> str:
    """The prompt version a label from this request carries: the request's own, except from a
    multi-classifier call, whose version names every classifier in it, where it is the classifier's."""
    return multi_classifier_label_version(classifier) if len(classifiers) > 1 else request_version


def _decide(responses: dict[str, tuple], classifiers: dict[str, Classifier]):
    """A function (request_id, rep, classifier) -> outcome row, decoding each answer once."""
    decoded: dict[str, dict] = {}

    def decide(rid: str, rep: str, name: str) -> tuple:
        row = responses.get(rid)
        if row is None:
            return (rep, name, rid, None, None, None, None, None, NO_RESPONSE, None)
        status, error, raw_text, model, version, ids, names, finish = row
        if status != STATUS_OK:
            return (rep, name, rid, None, None, None, None, None, f"{REQUEST_FAILED}: {error}", raw_text)
        if rid not in decoded:
            decoded[rid] = parse_batched(raw_text, list(ids), list(names), classifiers, finish)
        result = decoded[rid].get((rep, name), ParseFailure("pair not part of this request"))
        if isinstance(result, ParseFailure):
            return (rep, name, rid, None, None, None, None, None, str(result), raw_text)
        version = label_version(version, names, classifiers[name])
        return (rep, name, rid, result.label, result.raw_label, result.cleaning, version, model, None, raw_text)

    return decide


def _response_rows(responses: pl.DataFrame) -> dict[str, tuple]:
    latest = latest_per_request(responses)
    columns = ("request_id", "status", "error", *_ANSWER)
    return {row[0]: row[1:] for row in latest.select(columns).iter_rows()}


_ANSWER = ("raw_text", "model", "prompt_version", "conversation_ids", "classifiers", "finish_reason")  # what decodes a request


def decide_pairs(
    clusters: pl.DataFrame,
    responses: pl.DataFrame,
    classifiers: dict[str, Classifier],
    strategy: str = STRATEGY_SINGLE,
    batch_size: int = 8,
) -> pl.DataFrame:
    """One outcome row per representative x classifier: the batched answer, else its follow-up.

    Pairs a call-saving step answered are read from ``responses`` (``preanswered_pairs``), so the units
    are exactly the ones classify planned. On Spark each task calls this on whole batches only.
    """
    expected = expected_request_ids(clusters, classifiers, strategy, batch_size, preanswered_pairs(responses, classifiers))
    decide = _decide(_response_rows(responses), classifiers)
    rows = []
    for rep, name, rid, single_id in expected.select(
        "representative_id", "classifier", "request_id", "single_request_id"
    ).iter_rows():
        first = decide(rid, rep, name)
        if first[8] is not None and single_id != rid:
            followup = decide(single_id, rep, name)
            first = followup if followup[8] is None else (*first[:8], f"{first[8]}; follow-up: {followup[8]}", first[9])
        rows.append(first)
    return pl.DataFrame(rows, schema=_OUTCOME_SCHEMA, orient="row")


def followup_pairs(
    clusters: pl.DataFrame,
    responses: pl.DataFrame,
    classifiers: dict[str, Classifier],
    strategy: str,
    batch_size: int,
) -> set[tuple[str, str]]:
    """(representative, classifier) pairs a batched answer did not yield a label for: asked again alone."""
    if strategy == STRATEGY_SINGLE:
        return set()
    outcome = decide_pairs(clusters, responses, classifiers, strategy, batch_size)
    failed = outcome.filter(
        pl.col("reason").is_not_null()
        & ~pl.col("reason").str.starts_with(NO_RESPONSE)  # the batched call itself is still to be sent
        & ~pl.col("reason").str.contains(f"follow-up: {REQUEST_FAILED}")  # re-asked once already
    )
    return set(failed.select("representative_id", "classifier").iter_rows())


def parse_week(
    clusters: pl.DataFrame,
    responses: pl.DataFrame,
    classifiers: dict[str, Classifier],
    strategy: str = STRATEGY_SINGLE,
    batch_size: int = 8,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(classifications, classification_rejects) for every conversation x classifier of the week."""
    outcome = decide_pairs(clusters, responses, classifiers, strategy, batch_size)
    members = clusters.select("conversation_id", "week_start", "representative_id")
    fanned = members.join(outcome, on="representative_id", how="inner")
    classifications = tables.conform(fanned.filter(pl.col("reason").is_null()), tables.CLASSIFICATIONS)
    rejects = tables.conform(fanned.filter(pl.col("reason").is_not_null()), tables.CLASSIFICATION_REJECTS)
    return (
        classifications.sort("conversation_id", "classifier"),
        rejects.sort("conversation_id", "classifier"),
    )


# --------------------------------------------------------------------------- earlier weeks' labels

ANSWERED = pl.Schema(
    {
        "conversation_id": pl.String,
        "week_start": pl.Date,
        "classifier": pl.String,
        "label": pl.String,
        "prompt_version": pl.String,
        "model": pl.String,
    }
)
# One label per (week, representative, classifier) and the request it came from.
ANSWERED_PAIRS = pl.Schema(
    {
        "week_start": pl.Date,
        "representative_id": pl.String,
        "classifier": pl.String,
        "request_id": pl.String,
        "label": pl.String,
        "prompt_version": pl.String,
        "model": pl.String,
    }
)


def answered_pairs(responses: pl.DataFrame, classifiers: dict[str, Classifier]) -> pl.DataFrame:
    """The label each (representative, classifier) pair has in stored answers, whatever strategy planned
    them: every successful answer decoded once, the first label by request id kept (a follow-up is only
    sent for a pair its batch failed). Answers naming a classifier no longer configured are skipped.
    """
    found: dict[tuple, tuple] = {}
    answers = latest_per_request(responses).filter(pl.col("status") == STATUS_OK).sort("request_id")
    columns = ("week_start", "request_id", *_ANSWER)
    for week, rid, raw_text, model, version, ids, names, finish in answers.select(columns).iter_rows():
        if not set(names) <= classifiers.keys():
            continue
        for (rep, name), outcome in parse_batched(raw_text, list(ids), list(names), classifiers, finish).items():
            if not isinstance(outcome, ParseFailure):
                labelled = (week, rep, name, rid, outcome.label, label_version(version, names, classifiers[name]), model)
                found.setdefault((week, rep, name), labelled)
    return pl.DataFrame(list(found.values()), schema=ANSWERED_PAIRS, orient="row")


def answered_labels(clusters: pl.DataFrame, responses: pl.DataFrame, classifiers: dict[str, Classifier]) -> pl.DataFrame:
    """The labels weeks' ``classifications`` hold, derived from their ``llm_responses`` and clusters.

    Label reuse and embedding-classifier training learn from earlier weeks through this, so what they
    read is what ``llm_responses`` declares it depends on (its own earlier weeks): ``classifications`` is
    downstream of it, and a read of that table would be a dependency Dagster cannot order in a backfill.
    """
    return fan_out(clusters, answered_pairs(responses, classifiers)).sort("conversation_id", "classifier")


def fan_out(clusters, pairs):
    """Each representative's labels given to every member of its cluster (frames of either engine)."""
    members = clusters.select("conversation_id", "week_start", "representative_id")
    return members.join(pairs, on=["week_start", "representative_id"], how="inner").select(*ANSWERED)
