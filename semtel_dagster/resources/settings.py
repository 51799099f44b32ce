"""Pipeline settings shared by the stage assets (a resource, so schedules and backfills need no run config)."""

import datetime as dt
import os
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field, model_validator

from semtel_dagster.core.classify.plan import STRATEGIES
from semtel_dagster.core.classify.prompts import LAYOUTS, Classifier, load_classifiers
from semtel_dagster.core.ingest.adapters import AdapterOptions, InputFormat
from semtel_dagster.core.insights.aggregate import DEFAULT_PAIRS
from semtel_dagster.core.prepare.truncate import TruncationConfig
from semtel_dagster.partitions import HISTORY_WEEKS, REPORT_WEEKS


class PipelineSettings(ConfigurableResource):
    landing_dir: str = Field(
        default_factory=lambda: os.environ.get("SEMTEL_LANDING", ".semtel/landing"),
        description="Folder of conversation JSONL files (*.jsonl, *.jsonl.gz) that ingest reads.",
    )
    allow_empty_weeks: bool = Field(
        default=False,
        description="A week without landing records is materialized empty (gates warn 'nothing to check') "
        "instead of failing ingest. For sources that really have quiet weeks.",
    )
    prompts_dir: str | None = Field(default=None, description="Folder of .prompty classifiers (default ./prompts).")
    classifiers: list[str] | None = Field(default=None, description="Classifiers to run (default: every prompt).")
    max_transcript_tokens: int = Field(default=3000, ge=16, description="Token budget of a transcript.")
    head_share: float = Field(default=0.6, ge=0.0, le=1.0, description="Share of the budget kept from the start.")
    max_record_bytes: int = Field(default=1_000_000, gt=0, description="Larger input records are rejected.")
    batching_strategy: Literal[STRATEGIES] = Field(  # type: ignore[valid-type]  # a tuple, not a Literal alias, in plan.py
        default="single",
        description="Batching: one conversation x one classifier per call, x every classifier, or several conversations per call.",
    )
    batch_size: int = Field(default=8, ge=2, le=64, description="Conversations per call for multi_conversation.")
    prompt_layout: Literal[LAYOUTS] = Field(  # type: ignore[valid-type]  # a tuple, not a Literal alias, in prompts.py
        default="classifier_first",
        description="Message order: the classifier's instructions first (the prompt file's order), or the conversation "
        "first and the instructions last, so a conversation's requests share a prefix the provider caches.",
    )
    max_parse_failure_rate: float = Field(
        default=0.02, ge=0.0, le=1.0, description="Gate: most answered pairs whose answer yields no valid label."
    )
    max_reject_share: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Gate: most conversation x classifier pairs rejected."
    )
    drift_warn_js: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Warn when a label distribution moves more than this (Jensen-Shannon, bits) week on week.",
    )
    min_group_size: int = Field(
        default=10,
        ge=1,
        description="Published counts (weekly_insights, weekly_crosstabs) under this many conversations are merged "
        "into a <suppressed> bucket, with complementary suppression. 1: publish every count.",
    )
    crosstab_pairs: list[list[str]] = Field(
        default_factory=lambda: [list(pair) for pair in DEFAULT_PAIRS],
        description="[classifier A, classifier B] pairs cross-tabulated in weekly_crosstabs; pairs with a classifier "
        "not run are skipped.",
    )
    report_weeks: int = Field(
        default=REPORT_WEEKS,
        ge=2,
        le=REPORT_WEEKS,
        description="Weeks of weekly_insights in the weekly report's trend charts, the report's week included.",
    )
    input_format: InputFormat = Field(default="canonical", description="Format of the landing files (core/adapters.py).")
    column_mapping: dict[str, str] | None = Field(
        default=None,
        description="table: canonical field -> column (conversation_id, started_at, messages | user + assistant, source).",
    )
    hh_transcript: Literal["chosen", "rejected"] = Field(default="chosen", description="hh_rlhf: which transcript.")
    oasst_mode: Literal["path", "tree"] = Field(default="path", description="oasst: a conversation per path or per tree.")
    default_week: str | None = Field(
        default=None, description="Week (YYYY-MM-DD) of records without a timestamp; unset: the file's mtime week."
    )
    truncation_strategy: Literal["head_tail", "head", "tail", "turns"] = Field(
        default="head_tail", description="How a transcript over the budget is cut."
    )
    compress: bool = Field(default=False, description="Extractive compression before truncation.")
    scrub_pii: bool = Field(
        default=True,
        description="Replace emails, phones, cards, IPs, IBANs, secrets and URLs with credentials by typed "
        "placeholders (<EMAIL>, ...) before truncation, so no endpoint receives them (core/prepare/scrub.py).",
    )
    scrub_names: bool = Field(
        default=False,
        description="With scrub_pii: person names too (<NAME>), by spaCy's small English model (the pii-ner extra; "
        "about 0.04 MB/s a core, so a week of real traffic needs a cluster).",
    )
    dedupe_method: Literal["exact", "embedding", "none"] = Field(
        default="exact",
        description="exact: normalized-text hash; embedding: then near-duplicates by cosine (LSH); "
        "none: every conversation is sent (evaluations, cost baselines).",
    )
    dedupe_threshold: float = Field(default=0.95, gt=0.0, le=1.0, description="Cosine at which conversations merge.")
    reuse_labels_weeks: int = Field(
        default=0,
        ge=0,
        le=HISTORY_WEEKS,
        description="Reuse labels of conversations with the same text from this many earlier weeks (same prompt version and a pool model). 0: off.",
    )
    reuse_match: Literal["exact", "embedding"] = Field(
        default="exact",
        description="exact: the same normalized text; embedding: also the most similar earlier representative "
        "(conversation_embeddings, same embedder) at cosine >= reuse_threshold. Needs dedupe_method embedding.",
    )
    reuse_threshold: float = Field(
        default=0.95, gt=0.0, le=1.0, description="Cosine at which an earlier conversation's labels are reused."
    )
    embedding_classifier: bool = Field(
        default=False,
        description="Representatives an embedding classifier (trained on earlier weeks' LLM labels) labels confidently skip the LLM.",
    )
    embedding_classifier_min_labels: int = Field(
        default=500,
        ge=2,
        description="LLM labels of earlier weeks a classifier needs before its embedding model is trained and used.",
    )
    embedding_classifier_target_agreement: float = Field(
        default=0.95, gt=0.0, le=1.0, description="Held-out agreement with the LLM the confidence threshold is calibrated for."
    )
    embedding_classifier_train_weeks: int = Field(
        default=4, ge=1, le=HISTORY_WEEKS, description="Earlier weeks whose LLM labels train the embedding classifier."
    )

    @model_validator(mode="after")
    def _reuse_needs_vectors(self) -> "PipelineSettings":
        """This week's vectors come from embedding dedupe: without it an embedding match could never happen."""
        if self.reuse_match == "embedding" and self.dedupe_method != "embedding":
            raise ValueError("reuse_match 'embedding' needs dedupe_method 'embedding' (the week's vectors come from dedupe)")
        return self

    @model_validator(mode="after")
    def _pairs_of_two(self) -> "PipelineSettings":
        for pair in self.crosstab_pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ValueError(f"crosstab_pairs: {pair} is not a pair of two different classifiers")
        return self

    def pairs_run(self, classifiers: Collection[str]) -> list[tuple[str, str]]:
        """The configured cross-tab pairs whose two classifiers both run."""
        return [(a, b) for a, b in self.crosstab_pairs if a in classifiers and b in classifiers]

    def truncation(self) -> TruncationConfig:
        return TruncationConfig(
            max_tokens=self.max_transcript_tokens,
            head_share=self.head_share,
            strategy=self.truncation_strategy,
            compress=self.compress,
        )

    def adapter_options(self) -> AdapterOptions:
        return AdapterOptions(self.hh_transcript, self.oasst_mode, self.column_mapping or {})

    def default_week_date(self) -> dt.date | None:
        return dt.date.fromisoformat(self.default_week) if self.default_week else None

    def load_classifiers(self) -> dict[str, Classifier]:
        return load_classifiers(Path(self.prompts_dir) if self.prompts_dir else None, self.classifiers, self.prompt_layout)
