"""No planted PII reaches an endpoint: a week through the pipeline's stage chain (embedding dedupe, so the
embeddings endpoint reads transcripts too, then classification) against a loopback server that records
every request body. With ``scrub_pii`` off the same values do arrive, so the check can fail."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest
from aiohttp import web
from scripted_http import HandlerServer, completion

from benchmarks.pii.plant import planted_sample
from semtel_dagster.cli import main
from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.evaluation.experiment import EVAL_WEEK, sample_week
from semtel_dagster.core.lake import tables
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.engines.pipeline import Pipeline
from semtel_dagster.engines.polars_engine import PolarsEngine
from semtel_dagster.resources import EmbedderResource, PipelineSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def answer(request, call):
    """Chat completions answer a topic; embeddings answer a vector drawn from the text's hash."""
    if call.path.endswith("/embeddings"):
        vectors = [
            np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).normal(size=8) for t in call.body["input"]
        ]
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        return web.json_response({"object": "list", "data": data, "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    return web.json_response(completion('{"label": "coding"}'))


def _planted(n: int) -> tuple[pl.DataFrame, list[str]]:
    planted, values = planted_sample(n)
    return sample_week(
        pl.DataFrame(planted, schema={"conversation_id": pl.String, "messages": tables.CONVERSATIONS["messages"]})
    ), values


def _bodies(tmp_path, conversations: pl.DataFrame, scrub_pii: bool) -> list[str]:
    with HandlerServer(answer) as server:
        engine = PolarsEngine(str(tmp_path / f"lake-{scrub_pii}"))
        engine.write("conversations", conversations, EVAL_WEEK)
        settings = PipelineSettings(classifiers=["topic"], dedupe_method="embedding", scrub_pii=scrub_pii)
        calls = Calls([Endpoint(name="loop", base_url=server.base_url, model="m")], flush_rows=50, flush_seconds=1.0)
        embedder = EmbedderResource(kind="openai", base_url=server.base_url, model="e").factory()
        Pipeline(engine, settings, calls=calls, embedder=embedder).run_week(EVAL_WEEK)
        return [json.dumps(call.body) for call in server.calls]


def test_no_planted_value_is_in_any_request_body_and_without_scrubbing_they_are(tmp_path):
    conversations, values = _planted(42)
    assert len(values) >= 30
    scrubbed = _bodies(tmp_path, conversations, scrub_pii=True)
    raw = _bodies(tmp_path, conversations, scrub_pii=False)

    def arrived(bodies: list[str]) -> list[str]:
        escaped = {v: json.dumps(v)[1:-1] for v in values}  # as the JSON body carries it (newlines of a key block)
        return [v for v in values if any(escaped[v] in body for body in bodies)]

    embedded = [b for b in scrubbed if '"input"' in b]
    assert embedded and len(scrubbed) > len(embedded)  # transcripts went to both endpoints
    assert arrived(scrubbed) == []
    assert sorted(arrived(raw)) == sorted(values)
    assert any("<EMAIL>" in b for b in embedded) and any("<CARD>" in b for b in scrubbed if b not in embedded)


@pytest.mark.parametrize("flag", [[], ["--no-scrub-pii"]], ids=["default", "--no-scrub-pii"])
def test_semtel_classify_scrubs_by_default_and_reports_redactions(tmp_path, flag, capsys):
    planted, values = planted_sample(14)
    records = [{**c, "started_at": "2026-11-17T10:00:00Z"} for c in planted]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    with HandlerServer(answer) as server:
        endpoints = tmp_path / "endpoints.yaml"
        endpoints.write_text(json.dumps({"endpoints": [{"name": "loop", "base_url": server.base_url, "model": "m"}]}))
        args = ["classify", "--input", str(source), "--output", str(tmp_path / "out"), "--endpoints", str(endpoints)]
        code = main([*args, "--classifiers", "topic", *flag])
        bodies = "\n".join(json.dumps(call.body) for call in server.calls)
    summary = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and summary["requests_sent"] > 0
    arrived = [v for v in values if json.dumps(v)[1:-1] in bodies]
    if flag:
        assert summary["redactions"] is None and sorted(arrived) == sorted(values)
    else:
        assert arrived == [] and sum(summary["redactions"].values()) >= len(values)
