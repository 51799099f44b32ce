"""A `single` week laid out conversation first: the simulator's prefix cache serves the shared prefix,
``llm_responses`` records the cached tokens, and the week costs less than in the prompt files' order."""

import datetime as dt
import json

import polars as pl
import pytest
from dagster import DagsterInstance

from semtel_dagster.core.lake import delta, tables
from semtel_dagster.core.llm.budget import responses_cost
from semtel_dagster.core.llm.endpoints import ModelPrice
from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import EndpointPoolResource, LakeResource, PipelineSettings

pytestmark = pytest.mark.integration

WEEK = dt.date(2026, 11, 16)
CLASSIFIERS = ["intent", "knowledge_work", "user_expertise"]  # no transcript budgets of their own: whole prefixes shared
PRICE = ModelPrice(prompt_per_1m=0.40, cached_input_per_1m=0.10, completion_per_1m=1.60)


N = 40  # more than the endpoint's 32 requests at once: the first pass is processed before the others read it


def _long_conversations(landing, n=N):
    """Conversations of about 1,500 tokens: past the 1,024 tokens a prompt cache needs."""
    landing.mkdir(parents=True)
    with open(landing / "long.jsonl", "w") as out:
        for k in range(n):
            question = " ".join(f"step{k}x{j} of the migration plan" for j in range(250))
            record = {
                "conversation_id": f"long-{k}",
                "started_at": "2026-11-17T10:00:00Z",
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Here is a plan."}],
            }
            out.write(json.dumps(record) + "\n")


def _week_responses(tmp_path, layout):
    home = tmp_path / layout
    _long_conversations(home / "landing")
    # One deployment: a prompt cache is per deployment, so a second endpoint would split the prefixes.
    (home / "endpoints.yaml").write_text("endpoints:\n  - {name: one, kind: sim, model: sim-model}\n")
    defs = build_definitions(
        lake=LakeResource(root=str(home / "lake")),
        settings=PipelineSettings(landing_dir=str(home / "landing"), classifiers=CLASSIFIERS, prompt_layout=layout),
        endpoint_pool=EndpointPoolResource(endpoints_file=str(home / "endpoints.yaml")),
    )
    with DagsterInstance.ephemeral() as instance:
        assert defs.resolve_job_def("weekly_pipeline").execute_in_process(partition_key=str(WEEK), instance=instance).success
    return delta.read_weeks(delta.table_uri(str(home / "lake"), "llm_responses"), tables.LLM_RESPONSES, [WEEK])


def test_conversation_first_week_records_cached_tokens_and_costs_less(tmp_path):
    plain = _week_responses(tmp_path, "classifier_first")
    laid_out = _week_responses(tmp_path, "conversation_first")
    assert plain.height == laid_out.height == N * len(CLASSIFIERS)
    assert set(plain.get_column("request_id")).isdisjoint(laid_out.get_column("request_id"))
    assert plain.get_column("cached_tokens").sum() == 0  # each classifier's instructions are under 1,024 tokens
    cached = laid_out.get_column("cached_tokens")
    assert cached.null_count() == 0
    # The first classifier of each conversation writes its prefix; the other two read it.
    assert (cached > 0).sum() >= 0.9 * N * (len(CLASSIFIERS) - 1)
    assert cached.sum() / laid_out.get_column("prompt_tokens").sum() > 0.5
    models = {"sim-model": PRICE}
    assert responses_cost(laid_out, models) < 0.75 * responses_cost(plain, models)
    assert laid_out.filter(pl.col("status") == "ok").height == laid_out.height
