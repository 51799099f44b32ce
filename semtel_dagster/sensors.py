"""Near-real-time weeks: a sensor that runs the week of every new or changed landing file.

The cursor remembers each landing file's size and modification time. A new file, or a late one
for a week that already ran, requests the weeks its records belong to; the run key names the week
and the files it was requested for, so a rerun of a week is requested once per change and is
idempotent (each stage replaces its week; answered LLM requests are not sent again). A file whose
week has not ended yet stays unseen until the week's partition exists.

Both the sensor and the schedule start stopped, as Dagster's defaults are, so that loading the code
location never starts work on its own. ``SEMTEL_LANDING_SENSOR=on`` and ``SEMTEL_SCHEDULE=on``
start them running on a fresh instance (a toggle in the UI wins afterwards).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dagster import DefaultScheduleStatus, DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, sensor

from semtel_dagster.core.ingest.landing import landing_files, read_file
from semtel_dagster.partitions import weekly_partitions
from semtel_dagster.resources import PipelineSettings


def _on(variable: str) -> bool:
    return os.environ.get(variable, "").lower() in {"1", "on", "true", "yes"}


def schedule_status() -> DefaultScheduleStatus:
    return DefaultScheduleStatus.RUNNING if _on("SEMTEL_SCHEDULE") else DefaultScheduleStatus.STOPPED


def file_weeks(path: Path, settings: PipelineSettings) -> set[str]:
    """Weeks (partition keys) a canonical landing file has records or rejects for."""
    result = read_file(path, max_record_bytes=settings.max_record_bytes)
    return {w.isoformat() for frame in (result.conversations, result.rejects) for w in frame["week_start"].unique()}


@sensor(
    job_name="weekly_pipeline",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING if _on("SEMTEL_LANDING_SENSOR") else DefaultSensorStatus.STOPPED,
    description="Runs the week of each new or changed landing file (canonical JSONL).",
)
def landing_sensor(context: SensorEvaluationContext, settings: PipelineSettings) -> SensorResult:
    if settings.input_format != "canonical":
        return SensorResult(skip_reason=f"the landing sensor reads canonical JSONL; input_format is {settings.input_format}")
    root = Path(settings.landing_dir)
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    files = landing_files(root) if root.is_dir() else []
    changed: dict[str, set[str]] = {}
    for path in files:
        rel, stat = path.relative_to(root).as_posix(), path.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        if seen.get(rel) == stamp:
            continue
        weeks = file_weeks(path, settings)
        if not all(weekly_partitions.has_partition_key(w) for w in weeks):
            context.log.info(f"{rel}: a week of it has not ended yet; requested once its partition exists")
            continue
        seen[rel] = stamp
        for week in weeks:
            changed.setdefault(week, set()).add(f"{rel}@{stamp}")
    requests = [
        RunRequest(partition_key=week, run_key=f"{week}:{hashlib.sha256(repr(sorted(why)).encode()).hexdigest()[:12]}")
        for week, why in sorted(changed.items())
    ]
    return SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))
