"""Cross-week label reuse: texts classified last week are answered from their stored labels."""

import datetime as dt
import json

import polars as pl
import pytest
from dagster import DagsterInstance

from semtel_dagster.core.classify.reuse import ENDPOINT
from semtel_dagster.core.lake import delta, tables
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings
from semtel_dagster.sim.sample import write_week

pytestmark = pytest.mark.integration

WEEK_A = dt.date(2026, 11, 9)
WEEK_B = dt.date(2026, 11, 16)
CLASSIFIERS = ["topic", "satisfaction"]
REPEATED = 10


def _read(home, table, week):
    return delta.read_weeks(delta.table_uri(str(home / "lake"), table), tables.TABLES[table], [week])


@pytest.mark.parametrize("strategy", ["single", "multi_classifier"])
def test_week_b_reuses_week_a_labels_for_repeated_texts(tmp_path, strategy):
    landing = tmp_path / "landing"
    write_week(landing, tmp_path / "truth", WEEK_A, n=60, seed=3)
    week_a = [
        json.loads(line)
        for line in (landing / f"sample-{WEEK_A}.jsonl").read_bytes().splitlines()
        if line.startswith(b"{") and b"-bad-" not in line
    ][:REPEATED]
    write_week(landing, tmp_path / "truth", WEEK_B, n=60, seed=3)
    # The same texts asked again next week by other users.
    with open(landing / "repeats.jsonl", "w") as out:
        for k, record in enumerate(week_a):
            out.write(json.dumps({**record, "conversation_id": f"again-{k}", "started_at": "2026-11-18T09:00:00Z"}) + "\n")

    defs = build_definitions(
        lake=LakeResource(root=str(tmp_path / "lake")),
        settings=PipelineSettings(
            landing_dir=str(landing), classifiers=CLASSIFIERS, reuse_labels_weeks=1, batching_strategy=strategy
        ),
        endpoint_pool=EndpointPoolResource(endpoints_file="sim"),
    )
    job = defs.resolve_job_def("weekly_pipeline")
    with DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(partition_key=str(WEEK_A), instance=instance).success
        assert job.execute_in_process(partition_key=str(WEEK_B), instance=instance).success

    responses = _read(tmp_path, "llm_responses", WEEK_B)
    reused = responses.filter(pl.col("endpoint") == ENDPOINT)
    repeated_ids = {f"again-{k}" for k in range(REPEATED)}
    clusters = _read(tmp_path, "conversation_clusters", WEEK_B)
    reps_repeated = clusters.filter(pl.col("is_representative") & pl.col("conversation_id").is_in(sorted(repeated_ids)))
    # Every repeated text that represents its cluster this week is answered from last week, per classifier.
    assert reused.height >= reps_repeated.height * len(CLASSIFIERS) > 0
    assert reused["prompt_tokens"].sum() == 0 and set(reused["status"]) == {"ok"}
    assert responses["request_id"].n_unique() == responses.height  # one outcome per request

    labels_a = _read(tmp_path, "classifications", WEEK_A).select("conversation_id", "classifier", "label")
    labels_b = _read(tmp_path, "classifications", WEEK_B).select("conversation_id", "classifier", "label")
    originals = {f"again-{k}": record["conversation_id"] for k, record in enumerate(week_a)}
    pairs = (
        labels_b.filter(pl.col("conversation_id").is_in(sorted(repeated_ids)))
        .with_columns(pl.col("conversation_id").replace(originals).alias("original_id"))
        .join(labels_a, left_on=["original_id", "classifier"], right_on=["conversation_id", "classifier"], suffix="_a")
    )
    assert pairs.height == REPEATED * len(CLASSIFIERS)
    assert (pairs["label"] == pairs["label_a"]).all()
    # Row conservation still holds through the gates: every conversation x classifier has an outcome.
    rejects = _read(tmp_path, "classification_rejects", WEEK_B)
    assert labels_b.height + rejects.height == _read(tmp_path, "conversations", WEEK_B).height * len(CLASSIFIERS)
