"""The simulator's answers to taxonomy-discovery prompts: a deterministic **stand-in**, not a model.

A request is recognised by its answer schema's name (``core.taxonomy.tasks.SCHEMA_PREFIX`` + the
prompt file's ``metadata.task``), never by the prompt's wording. Answers are plausible and
reproducible, and no better than keyword counting:

* ``summarize``: extractive, the first user turn (at most 30 words) and the first sentence of the
  first reply (at most 15), which names the subject where the request leaves it implicit;
* ``generate``: the most frequent content words of the summaries become labels (a word in more than
  60% of them says nothing and is skipped, and so is a word seen mostly beside a label already
  chosen: it names the same group); a definition names the words it co-occurs with most, the example
  is the shortest summary holding it;
* ``update``: current labels count as if seen in a fifth of the new batch more, so a label is displaced
  only by a word clearly more frequent there: the names settle after a few rounds, as they should;
* ``review``: labels beyond ``max_labels`` are merged into the kept label whose definition shares the
  most words with theirs (reported under ``merged``); nothing is split;
* ``name_cluster``: the cluster's most frequent content word, the summary nearest the centre as example.

The inputs are read from the ``Input (JSON):`` object the taxonomy prompts carry.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from semtel_dagster.core.taxonomy.tasks import SCHEMA_PREFIX
from semtel_dagster.sim.labeler import STOPWORDS, conversation_text, split_messages, stem

SUMMARY_WORDS = 30
REPLY_WORDS = 15
EXAMPLE_WORDS = 12
PRIOR_SHARE = 0.2  # an update's current labels count as if seen in this share of the batch more
SAME_GROUP = 0.5  # a word seen beside a chosen label in this share of its summaries names the same group
TOO_COMMON = 0.6
_WORD = re.compile(r"[a-z][a-z']+")
_TURN = re.compile(r"^\s*(user|assistant)\s*:\s?", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
GENERIC = frozenset(
    [
        "help",
        "would",
        "asks",
        "asked",
        "asking",
        "user",
        "users",
        "wants",
        "wanted",
        "question",
        "questions",
        "answer",
        "answers",
        "about",
        "into",
        "really",
        "think",
        "could",
        "these",
        "those",
        "have",
        "with",
        "what",
        "your",
        "from",
        "they",
        "their",
        "them",
        "there",
        "then",
        "than",
        "some",
        "much",
        "many",
        "good",
        "best",
        "well",
        "thanks",
        "thank",
        "okay",
        "sure",
        "yes",
        "know",
        "tell",
        "give",
        "make",
        "need",
        "want",
        "like",
        "please",
        "also",
        "just",
    ]
)


def task_of(response_format: Any) -> str | None:
    """The taxonomy step a request serves, from its answer schema's name (None: not a taxonomy prompt)."""
    if not isinstance(response_format, Mapping):
        return None
    name = str((response_format.get("json_schema") or {}).get("name") or "")
    return name[len(SCHEMA_PREFIX) :] if name.startswith(SCHEMA_PREFIX) else None


def answer(task: str, messages: Sequence[Any]) -> dict:
    """The answer object for one taxonomy step."""
    _, users = split_messages(messages)
    if task == "summarize":
        return {"summary": summary(conversation_text(users))}
    data = _input(users)
    summaries = [str(s.get("summary", "")) for s in data.get("summaries") or [] if isinstance(s, Mapping)]
    current = [dict(label) for label in data.get("labels") or [] if isinstance(label, Mapping)]
    k = int(data.get("max_labels") or 10)
    if task == "generate":
        return {"labels": propose(summaries, k)}
    if task == "update":
        return {"labels": propose(summaries, k, current)}
    if task == "review":
        return reviewed(current, k)
    if task == "name_cluster":
        found = propose(summaries, 1)
        return found[0] if found else {"name": "misc", "definition": "Conversations without a common subject.", "example": ""}
    raise ValueError(f"unknown taxonomy task {task!r}")


def _input(users: Sequence[str]) -> dict:
    text = "\n".join(users)
    start = text.find("{", text.find("Input (JSON):"))
    try:
        value = json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def summary(transcript: str) -> str:
    """The first user turn (``SUMMARY_WORDS`` words at most), then the first sentence of the first reply."""
    turns = [t.strip() for t in re.split(r"\n\s*\n", transcript.strip()) if t.strip()]
    user = next((t for t in turns if t.lower().startswith("user:")), turns[0] if turns else "")
    reply = next((t for t in turns if t.lower().startswith("assistant:")), "")
    said = " ".join(_TURN.sub("", user, count=1).split()[:SUMMARY_WORDS])
    first = _SENTENCE.split(" ".join(_TURN.sub("", reply, count=1).split()))[0] if reply else ""
    return " ".join([said, *first.split()[:REPLY_WORDS]])


def _content(text: str) -> dict[str, str]:
    """Stem -> surface form of the content words of a text."""
    out: dict[str, str] = {}
    for word in _WORD.findall(text.lower()):
        word = word.strip("'")
        if len(word) >= 4 and word not in STOPWORDS and word not in GENERIC:
            out.setdefault(stem(word), word)
    return out


def propose(summaries: Sequence[str], k: int, current: Sequence[Mapping] = ()) -> list[dict[str, str]]:
    """Up to ``k`` keyword labels for ``summaries`` (see the module docstring), most frequent first."""
    docs = [_content(s) for s in summaries]
    df: Counter[str] = Counter(st for doc in docs for st in doc)
    surfaces: dict[str, Counter[str]] = {}
    for doc in docs:
        for st, word in doc.items():
            surfaces.setdefault(st, Counter())[word] += 1
    limit = TOO_COMMON * len(docs) if len(docs) >= 5 else float("inf")
    kept = {
        stem(str(label.get("name", "")).replace("_", " ").split()[0]) if label.get("name") else "": label for label in current
    }
    kept.pop("", None)
    score = {st: float(n) for st, n in df.items() if n <= limit}
    for st in kept:
        score[st] = score.get(st, 0.0) + max(2.0, PRIOR_SHARE * len(docs))
    chosen: list[str] = []
    for st in sorted(score, key=lambda st: (-score[st], st not in kept, st)):
        if len(chosen) == k:
            break
        beside = max((sum(1 for doc in docs if st in doc and c in doc) for c in chosen), default=0)
        if st in kept or beside < SAME_GROUP * df[st]:
            chosen.append(st)
    labels = []
    for st in chosen:
        if st in kept:
            label = kept[st]
            labels.append(
                {
                    "name": str(label["name"]),
                    "definition": str(label.get("definition", "")),
                    "example": str(label.get("example", "")),
                }
            )
            continue
        word = min(surfaces[st], key=lambda w: (-surfaces[st][w], w))
        together: Counter[str] = Counter(o for doc in docs if st in doc for o in doc if o != st and o in surfaces)
        company = [
            min(surfaces[o], key=lambda w: (-surfaces[o][w], w))
            for o, _ in sorted(together.items(), key=lambda x: (-x[1], x[0]))[:3]
        ]
        holding = sorted((s for s, doc in zip(summaries, docs) if st in doc), key=lambda s: (len(s), s))
        definition = f"Conversations about {word}" + (f", often with {', '.join(company)}" if company else "") + "."
        labels.append(
            {"name": word, "definition": definition, "example": " ".join(holding[0].split()[:EXAMPLE_WORDS]) if holding else ""}
        )
    return labels


def reviewed(labels: Sequence[Mapping], k: int) -> dict:
    """The first ``k`` labels; each further one merged into the kept label sharing most definition words."""
    kept, extra = [dict(label) for label in labels[:k]], labels[k:]
    merged: dict[str, list[str]] = {}
    for label in extra:
        words = set(_content(str(label.get("definition", ""))))
        into = max(kept, key=lambda c: len(words & set(_content(str(c.get("definition", ""))))), default=None)
        if into is not None:
            merged.setdefault(str(into["name"]), [str(into["name"])]).append(str(label.get("name", "")))
    return {"labels": kept, "merged": [{"from": names, "into": into} for into, names in merged.items()], "split": []}
