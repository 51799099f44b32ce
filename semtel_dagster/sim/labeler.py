"""Deterministic label choice for the LLM endpoint **simulator**.

This is *not* a model: it is a small bag-of-words matcher that lets the
simulator answer classifier prompts with plausible, reproducible labels, using
only the request itself (system prompt + user messages + ``response_format``).
The request parsing here is shared with the embedding labeler
(:mod:`.embedding_labeler`), which decides by a :data:`Chooser` of its own.

* Label set: ``response_format.json_schema.schema.properties.label.enum`` if
  present, else the labels of the ``- <label>: <definition>`` lines of the
  system prompt.
* Definitions: lines ``- <label>: <definition text>`` of the system prompt.
* Conversation: user-message text after a ``Conversation:`` line, else all
  user messages.  ``User:`` turns weigh 1.0, ``Assistant:`` turns 0.3.
* Score: TF-IDF weighted match between conversation words and each label's
  definition (+ label name, ``_`` as space), IDF over the definitions, cosine
  normalised on the definition side.  Ties: first label wins.  Nothing
  matches: ``other`` if present, else the median of all-numeric labels, else
  the first label.

The keyword labeler (the base install's default) matches the words of the
label definitions, and the sample generator writes its conversations with those
words: on generated data it agrees with the generator's truth by construction.

All functions are pure; parsed definitions and IDF tables are LRU-cached per
system-prompt text.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ASSISTANT_WEIGHT = 0.3
USER_WEIGHT = 1.0

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_DEF_LINE_RE = re.compile(r"^\s*[-*\u2022]\s*[\"'`]?([^:\"'`\n]+?)[\"'`]?\s*:\s*(.*)$")
_TURN_RE = re.compile(r"^\s*(user|human|customer|assistant|ai|bot|model)\s*:\s?(.*)$", re.IGNORECASE)
_CONVERSATION_RE = re.compile(r"^\s*conversation\s*:\s*(.*)$", re.IGNORECASE)

# Small English stopword list.  Negations ("not", "no", "never") are kept on
# purpose: they carry the signal in satisfaction-like classifiers.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "else",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "about",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "i",
        "me",
        "my",
        "mine",
        "myself",
        "we",
        "us",
        "our",
        "ours",
        "you",
        "your",
        "yours",
        "he",
        "him",
        "his",
        "she",
        "her",
        "hers",
        "it",
        "its",
        "they",
        "them",
        "their",
        "theirs",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "so",
        "than",
        "too",
        "very",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "just",
        "also",
        "s",
        "t",
        "d",
        "ll",
        "m",
        "re",
        "ve",
        "up",
        "down",
        "out",
        "over",
        "under",
        "again",
        "further",
        "once",
        "while",
        "because",
        "until",
        "against",
        "between",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "off",
        "e",
        "g",
        "eg",
        "ie",
        "etc",
        "user",
        "assistant",
        "conversation",
        "example",
        "label",
        "one",
        "make",
        "get",
        "want",
        "need",
        "please",
        "know",
        "let",
        "give",
        "tell",
        "say",
        "says",
        "said",
        "like",
        "thing",
        "something",
        "anything",
    ]
)


# --------------------------------------------------------------------------- text utils


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Very light suffix stripping (s/es/ies/ing/ed/ly, trailing e, doubled consonant)."""
    w = word
    if len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("sses") or w.endswith(("xes", "ches", "shes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suf in ("ingly", "edly", "ing", "ed", "ly"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: -len(suf)]
            if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "lsz" and w[-1] not in "aeiou":
                w = w[:-1]
            break
    if len(w) >= 4 and w.endswith("e"):
        w = w[:-1]
    return w


def tokenize(text: str) -> list[str]:
    """Lowercase, split on word characters (``_`` splits too), drop stopwords and pure numbers, stem."""
    out = []
    for tok in _WORD_RE.findall(text.lower()):
        if tok in STOPWORDS or tok.isdigit():
            continue
        out.append(stem(tok))
    return out


# --------------------------------------------------------------------------- request parsing


def message_text(content: Any) -> str:
    """OpenAI message content: a string, or a list of ``{"type": "text", "text": ...}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for p in content:
            if isinstance(p, str):
                parts.append(p)
            elif isinstance(p, Mapping) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return "\n".join(parts)
    return str(content)


def _resolve(schema: Mapping[str, Any] | None, node: Any) -> Any:
    """Resolve a local ``$ref`` (``#/$defs/X`` or ``#/definitions/X``) one level deep."""
    if isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref.startswith("#/"):
            cur: Any = schema
            for part in ref[2:].split("/"):
                if not isinstance(cur, Mapping):
                    return node
                cur = cur.get(part)
            return cur if cur is not None else node
    return node


def _enum_of(schema: Mapping[str, Any], prop: Any) -> list[str] | None:
    prop = _resolve(schema, prop)
    if not isinstance(prop, Mapping):
        return None
    if isinstance(prop.get("enum"), list):
        return [str(x) for x in prop["enum"]]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(prop.get(key), list):
            for sub in prop[key]:
                e = _enum_of(schema, sub)
                if e:
                    return e
    if "const" in prop:
        return [str(prop["const"])]
    return None


def response_schema(response_format: Any) -> Mapping[str, Any] | None:
    """The JSON schema of a ``{"type": "json_schema", "json_schema": {"schema": ...}}`` response_format."""
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return None
    js = response_format.get("json_schema")
    if not isinstance(js, Mapping):
        return None
    schema = js.get("schema")
    return schema if isinstance(schema, Mapping) else None


def schema_enums(schema: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``{property: enum values}`` for every enum-valued top-level property of the schema (in order)."""
    if not schema:
        return {}
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return {}
    out: dict[str, list[str]] = {}
    for name, prop in props.items():
        e = _enum_of(schema, prop)
        if e:
            out[str(name)] = e
    return out


@lru_cache(maxsize=512)
def parse_definitions(system_text: str) -> tuple[tuple[str, str, int], ...]:
    """All ``- <label>: <definition>`` lines as ``(label, definition, line_no)``, in prompt order."""
    out = []
    for i, line in enumerate(system_text.splitlines()):
        m = _DEF_LINE_RE.match(line)
        if m:
            label = m.group(1).strip()
            if label and len(label) <= 80:
                out.append((label, m.group(2).strip(), i))
    return tuple(out)


def definitions_for(system_text: str, labels: Sequence[str] | None = None, heading: str | None = None) -> list[tuple[str, str]]:
    """Label definitions from the system prompt.

    With ``labels``: only lines for those labels (first definition of each wins; labels without
    a definition line get an empty definition).  Without: every definition line.
    With ``heading`` (batched multi-classifier prompts): prefer lines after the last heading line
    (a non-bullet line) that contains the heading word(s), up to the next non-bullet heading line.
    """
    defs = parse_definitions(system_text)
    if heading is not None and labels:
        section = _section_lines(system_text, heading)
        if section is not None:
            lo, hi = section
            scoped = [(lab, d) for lab, d, ln in defs if lo < ln < hi and lab in set(labels)]
            if scoped:
                defs_scoped: dict[str, str] = {}
                for lab, d in scoped:
                    defs_scoped.setdefault(lab, d)
                return [(lab, defs_scoped.get(lab, "")) for lab in labels]
    if labels is None:
        seen: dict[str, str] = {}
        for lab, d, _ in defs:
            seen.setdefault(lab, d)
        return list(seen.items())
    wanted = set(labels)
    found: dict[str, str] = {}
    for lab, d, _ in defs:
        if lab in wanted:
            found.setdefault(lab, d)
    return [(lab, found.get(lab, "")) for lab in labels]


@lru_cache(maxsize=512)
def _section_lines(system_text: str, heading: str) -> tuple[int, int] | None:
    """Line span (exclusive bounds) of the section whose heading line mentions ``heading``."""
    lines = system_text.splitlines()
    variants = {heading.lower(), heading.lower().replace("_", " "), heading.lower().replace("_", "-")}
    start = None
    for i, line in enumerate(lines):
        if _DEF_LINE_RE.match(line):
            continue
        low = line.lower()
        if any(re.search(r"(?<![a-z0-9])" + re.escape(v) + r"(?![a-z0-9])", low) for v in variants):
            start = i
            # Keep scanning: a later heading for the same property (e.g. "## satisfaction labels")
            # is more specific than an early mention only if definitions follow it.
            if any(_DEF_LINE_RE.match(nxt) for nxt in lines[i + 1 : i + 3]):
                break
    if start is None:
        return None
    end = len(lines)
    seen_bullet = False
    for j in range(start + 1, len(lines)):
        if _DEF_LINE_RE.match(lines[j]):
            seen_bullet = True
            continue
        if seen_bullet and lines[j].strip() and not lines[j].startswith((" ", "\t")):
            end = j
            break
    return (start, end)


def conversation_text(user_texts: Iterable[str]) -> str:
    """Text after a ``Conversation:`` line of the user message(s), else all user text."""
    texts = list(user_texts)
    picked = []
    for t in texts:
        lines = t.splitlines()
        for i, line in enumerate(lines):
            m = _CONVERSATION_RE.match(line)
            if m:
                rest = ([m.group(1)] if m.group(1).strip() else []) + lines[i + 1 :]
                picked.append("\n".join(rest))
                break
    return "\n".join(picked) if picked else "\n".join(texts)


def turns(conversation: str) -> list[tuple[bool, str]]:
    """``(is_user, text)`` per turn of a transcript: a line starting ``User:`` / ``Assistant:`` (and the
    like) opens a turn, continuation lines belong to it, and text before any marker counts as user."""
    out: list[tuple[bool, list[str]]] = []
    for line in conversation.splitlines():
        m = _TURN_RE.match(line)
        if m:
            out.append((m.group(1).lower() in ("user", "human", "customer"), [m.group(2)]))
        elif out:
            out[-1][1].append(line)
        else:
            out.append((True, [line]))
    return [(is_user, "\n".join(lines)) for is_user, lines in out]


def weighted_terms(conversation: str, assistant_weight: float = ASSISTANT_WEIGHT) -> dict[str, float]:
    """Term weights of a transcript: ``User:`` turns count 1.0, ``Assistant:`` turns ``assistant_weight``."""
    counts: dict[str, float] = {}
    for is_user, text in turns(conversation):
        weight = USER_WEIGHT if is_user else assistant_weight
        for tok in tokenize(text):
            counts[tok] = counts.get(tok, 0.0) + weight
    # sublinear term frequency: repetition helps, but not linearly
    return {t: (1.0 + math.log(c)) if c > 1.0 else c for t, c in counts.items()}


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class LabelIndex:
    labels: tuple[str, ...]
    idf: Mapping[str, float]
    vectors: tuple[Mapping[str, float], ...]  # per label: term -> tf-idf weight / norm


@lru_cache(maxsize=1024)
def build_index(pairs: tuple[tuple[str, str], ...]) -> LabelIndex:
    """TF-IDF index over label definitions (IDF computed over the definitions themselves)."""
    docs = [Counter(tokenize(lab.replace("_", " ") + " " + d)) for lab, d in pairs]
    n = max(len(docs), 1)
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(doc.keys())
    idf = {t: math.log(1.0 + n / c) for t, c in df.items()}
    vectors = []
    for doc in docs:
        vec = {t: (1.0 + math.log(c)) * idf[t] for t, c in doc.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        vectors.append({t: v / norm for t, v in vec.items()})
    return LabelIndex(tuple(lab for lab, _ in pairs), idf, tuple(vectors))


def fallback_label(labels: Sequence[str]) -> str:
    """``other`` if present; median of all-numeric labels; else the first label."""
    for lab in labels:
        if lab.strip().lower() == "other":
            return lab
    try:
        nums = sorted(labels, key=float)
    except ValueError:
        return labels[0]
    return nums[(len(nums) - 1) // 2]


def score_labels(index: LabelIndex, terms: Mapping[str, float]) -> list[float]:
    scores = []
    for vec in index.vectors:
        s = 0.0
        for t, w in terms.items():
            v = vec.get(t)
            if v:
                s += w * index.idf[t] * v
        scores.append(s)
    return scores


def choose_label(definitions: Sequence[tuple[str, str]], conversation: str | Mapping[str, float]) -> str:
    """Pick the label whose definition best matches the conversation (deterministic)."""
    if not definitions:
        return "other"
    index = build_index(tuple((str(a), str(b)) for a, b in definitions))
    terms = weighted_terms(conversation) if isinstance(conversation, str) else conversation
    scores = score_labels(index, terms)
    best, best_s = 0, 0.0
    for i, s in enumerate(scores):
        if s > best_s + 1e-12:
            best, best_s = i, s
    if best_s <= 0.0:
        return fallback_label(index.labels)
    return index.labels[best]


# --------------------------------------------------------------------------- whole request


def split_messages(messages: Sequence[Any]) -> tuple[str, list[str]]:
    """(system text, user texts) of an OpenAI ``messages`` list."""
    system, user = [], []
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        role = m.get("role")
        text = message_text(m.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            user.append(text)
    return "\n".join(system), user


# (classifier name or None, [(label, definition)], conversation) -> the label: how a labeler decides
Chooser = Callable[[str | None, Sequence[tuple[str, str]], str], str]


@lru_cache(maxsize=64)
def _terms(conversation: str) -> dict[str, float]:
    """``weighted_terms`` once per transcript: a multi-classifier request scores it for every classifier."""
    return weighted_terms(conversation)


def keyword_choice(classifier: str | None, definitions: Sequence[tuple[str, str]], conversation: str) -> str:
    """The keyword labeler as a :data:`Chooser` (the classifier's name plays no part)."""
    return choose_label(definitions, _terms(conversation))


def classifier_name(response_format: Any) -> str | None:
    """The classifier a request is for, from its schema's name (``intent_label``, ``intent_labels``)."""
    js = response_format.get("json_schema") if isinstance(response_format, Mapping) else None
    name = js.get("name") if isinstance(js, Mapping) else None
    if not isinstance(name, str):
        return None
    return re.sub(r"_labels?$", "", name) or None


def label_request(messages: Sequence[Any], response_format: Any = None, choose: Chooser = keyword_choice) -> dict[str, Any]:
    """The answer object for a classifier request, e.g. ``{"label": "3"}``.

    Batched multi-classifier schemas (several enum properties) get one label per enum property,
    using definitions found under a heading line that names the property.
    """
    system, users = split_messages(messages)
    text = conversation_text(users)
    schema = response_schema(response_format)
    name = classifier_name(response_format)
    blocks = conversation_blocks(text)
    if blocks:
        return {"answers": label_blocks(system, blocks, batch_item_labels(schema), name, choose)}
    enums = schema_enums(schema) or text_enums(system)
    if not enums:
        return {"label": choose(name, definitions_for(system), text)}
    out: dict[str, Any] = {}
    multi = len(enums) > 1
    for prop, labels in enums.items():
        defs = definitions_for(system, labels, heading=prop if multi else None)
        out[prop] = choose(prop if multi else name, defs, text)
    # required non-enum string properties get an empty string so strict parsers accept the answer
    props = schema.get("properties", {}) if schema else {}
    for req in (schema.get("required") or []) if schema else []:
        if req not in out and isinstance(props.get(req), Mapping):
            typ = _resolve(schema, props[req]).get("type")
            if typ == "string":
                out[req] = ""
            elif typ in ("number", "integer"):
                out[req] = 0
            elif typ == "boolean":
                out[req] = False
            elif typ == "array":
                out[req] = []
    return out


_BLOCK_RE = re.compile(r'<conversation id="([^"]+)">\n(.*?)\n</conversation>', re.DOTALL)
_LABELS_FOR_RE = re.compile(r"^Labels for ([\w.-]+):\s*$", re.MULTILINE)


def conversation_blocks(text: str) -> list[tuple[str, str]]:
    """``(id, transcript)`` of every ``<conversation id="...">`` block of a batched request (ids in)."""
    return _BLOCK_RE.findall(text)


def batch_item_labels(schema: Mapping[str, Any] | None) -> list[str] | None:
    """The label enum of an ``answers: [{id, label}]`` schema, if the request has one."""
    props = schema.get("properties") if schema else None
    answers = _resolve(schema, props.get("answers")) if isinstance(props, Mapping) else None
    items = _resolve(schema, answers.get("items")) if isinstance(answers, Mapping) else None
    return schema_enums(items).get("label") if isinstance(items, Mapping) else None


def label_blocks(
    system: str,
    blocks: Sequence[tuple[str, str]],
    labels: Sequence[str] | None,
    classifier: str | None = None,
    choose: Chooser = keyword_choice,
) -> list[dict[str, str]]:
    """One ``{id, label}`` per conversation block (ids out), each labeled on its own."""
    defs = definitions_for(system, labels) if labels else definitions_for(system)
    return [{"id": cid, "label": choose(classifier, defs, block)} for cid, block in blocks]


def text_enums(system: str) -> dict[str, list[str]]:
    """Without a schema: ``Labels for <name>:`` sections of a multi-classifier prompt, as enums."""
    lines = system.splitlines()
    out: dict[str, list[str]] = {}
    for match in _LABELS_FOR_RE.finditer(system):
        start = system[: match.start()].count("\n") + 1
        labels = []
        for line in lines[start:]:
            bullet = _DEF_LINE_RE.match(line)
            if not bullet:
                break
            labels.append(bullet.group(1).strip())
        if labels:
            out[match.group(1)] = labels
    return out


def answer_content(messages: Sequence[Any], response_format: Any = None, choose: Chooser = keyword_choice) -> str:
    """The assistant message content: ``json.dumps`` of :func:`label_request`."""
    return json.dumps(label_request(messages, response_format, choose))
