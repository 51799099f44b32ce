"""Golden sets: conversations with human labels, mapped onto our classifiers' label sets.

Each adapter reads a public data set in its original format and maps its human categories onto one of
our classifiers. Categories without a faithful counterpart are left out (and counted), never forced:
a wrong mapping would score the mapping, not the classifier.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from semtel_dagster.core.evaluation.metrics import stratified_sample
from semtel_dagster.core.ingest.adapters import AdapterOptions
from semtel_dagster.core.ingest.landing import read_landing

# MT-bench (8 categories) and Vicuna-bench (9) task types -> topic. Left out: reasoning, extraction,
# humanities, generic, knowledge, common-sense, fermi, counterfactual (no single topic counterpart).
MT_BENCH_TOPIC = {
    "coding": "programming",
    "math": "math",
    "writing": "writing_editing",
    "roleplay": "creative_writing",
    "stem": "science",
}
# CLINC150 domains -> topic. Left out: home, auto_and_commute, utility (assistant commands such as
# timers, lists and directions, which our topics do not split).
CLINC_TOPIC = {
    "banking": "personal_finance",
    "credit_cards": "personal_finance",
    "kitchen_and_dining": "cooking_food",
    "travel": "travel",
    "work": "career_jobs",
    "small_talk": "other",
    "meta": "other",
}

_MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))


@dataclass(frozen=True)
class GoldenSet:
    name: str
    conversations: pl.DataFrame  # conversation_id, messages
    truth: pl.DataFrame  # conversation_id, classifier, label
    left_out: dict[str, int]  # human category -> items without a counterpart


def _golden(
    name: str, rows: list[tuple[str, str, str]], mapping: dict[str, str], classifier: str, n: int | None, seed: int
) -> GoldenSet:
    """rows: (id, user text, human category)."""
    frame = pl.DataFrame(rows, schema={"conversation_id": pl.String, "text": pl.String, "category": pl.String}, orient="row")
    left_out = dict(
        frame.filter(~pl.col("category").is_in(list(mapping))).group_by("category").len().sort("category").iter_rows()
    )
    kept = frame.filter(pl.col("category").is_in(list(mapping))).with_columns(
        pl.col("category").replace_strict(mapping).alias("label")
    )
    if n is not None:
        kept = stratified_sample(kept, "label", n, seed)
    conversations = kept.select(
        "conversation_id",
        pl.struct(pl.lit("user").alias("role"), pl.col("text").alias("content"))
        .map_elements(lambda m: [m], return_dtype=_MESSAGES)
        .alias("messages"),
    )
    truth = kept.select("conversation_id", pl.lit(classifier).alias("classifier"), "label")
    return GoldenSet(name, conversations, truth, left_out)


def mt_bench(data_dir: Path, n: int | None = None, seed: int = 0) -> GoldenSet:
    """MT-bench + Vicuna-bench first-turn questions, their task-type category mapped to topic."""
    rows = []
    for file, prefix in (("mt_bench_question.jsonl", "mtb"), ("vicuna_bench_question.jsonl", "vic")):
        for line in (Path(data_dir) / "mt-bench" / file).read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                rows.append((f"{prefix}-{record['question_id']}", record["turns"][0], record["category"]))
    return _golden("mt_bench", rows, MT_BENCH_TOPIC, "topic", n, seed)


def clinc150(data_dir: Path, n: int | None = 200, seed: int = 0) -> GoldenSet:
    """CLINC150 test utterances, their intent's domain mapped to topic (a stratified sample of ``n``)."""
    root = Path(data_dir) / "clinc150"
    domains = json.loads((root / "domains.json").read_text(encoding="utf-8"))
    domain_of = {intent: domain for domain, intents in domains.items() for intent in intents}
    test = json.loads((root / "data_full.json").read_text(encoding="utf-8"))["test"]
    rows = [(f"clinc-{i}", text, domain_of[intent]) for i, (text, intent) in enumerate(test)]
    return _golden("clinc150", rows, CLINC_TOPIC, "topic", n, seed)


ADAPTERS = {"mt_bench": mt_bench, "clinc150": clinc150}

# Real conversations without labels, in their original formats: folder -> (input format, adapter options).
REAL_SOURCES = {
    "hh-rlhf": ("hh_rlhf", None),
    "oasst": ("oasst", AdapterOptions(oasst_mode="path")),
    "arena-hard": ("arena_hard", None),
}
_REAL_WEEK = dt.date(2026, 11, 16)  # these files carry no usable timestamps: they are read as one week


def real_conversations(data_dir: Path, per_source: int | None = None) -> pl.DataFrame:
    """hh-rlhf (chosen transcripts), OpenAssistant root-to-leaf paths and arena-hard question + answer,
    through the ingest adapters, as ``conversations`` rows whose ``source`` is the folder; the first
    ``per_source`` of each folder when given."""
    parts = []
    for folder, (input_format, options) in REAL_SOURCES.items():
        frame = read_landing(
            Path(data_dir) / folder, _REAL_WEEK, input_format=input_format, adapter_options=options, default_week=_REAL_WEEK
        ).conversations
        parts.append((frame.head(per_source) if per_source is not None else frame).with_columns(source=pl.lit(folder)))
    return pl.concat(parts)


def sample_truth(records: list[dict], truth: list[dict], classifiers: list[str]) -> GoldenSet:
    """The seeded generator's week as a golden set (its labels are the generator's, not people's)."""
    conversations = pl.DataFrame(
        [(r["conversation_id"], r["messages"]) for r in records],
        schema={"conversation_id": pl.String, "messages": _MESSAGES},
        orient="row",
    )
    rows = [(t["conversation_id"], name, str(t[name])) for t in truth for name in classifiers if name in t]
    truth_frame = pl.DataFrame(
        rows, schema={"conversation_id": pl.String, "classifier": pl.String, "label": pl.String}, orient="row"
    )
    return GoldenSet("sample", conversations, truth_frame, {})
