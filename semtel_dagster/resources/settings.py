"""Pipeline settings shared by the stage assets (a resource, so schedules and backfills need no run config)."""


import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from semtel_dagster.core.prompts import Classifier, load_classifiers
from semtel_dagster.core.truncate import TruncationConfig


class PipelineSettings(ConfigurableResource):
    landing_dir: str = Field(
        default_factory=lambda: os.environ.get("SEMTEL_LANDING", ".semtel/landing"),
        description="Folder of conversation JSONL files (*.jsonl, *.jsonl.gz) that ingest reads.",
    )
    prompts_dir: str | None = Field(default=None, description="Folder of .prompty classifiers (default ./prompts).")
    classifiers: list[str] | None = Field(default=None, description="Classifiers to run (default: every prompt).")
    max_transcript_tokens: int = Field(default=3000, ge=16, description="Token budget of a transcript.")
    head_share: float = Field(default=0.6, ge=0.0, le=1.0, description="Share of the budget kept from the start.")
    max_record_bytes: int = Field(default=1_000_000, gt=0, description="Larger input records are rejected.")

    def truncation(self) -> TruncationConfig:
        return TruncationConfig(max_tokens=self.max_transcript_tokens, head_share=self.head_share)

    def load_classifiers(self) -> dict[str, Classifier]:
        return load_classifiers(Path(self.prompts_dir) if self.prompts_dir else None, self.classifiers)
