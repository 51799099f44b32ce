"""A real LLM server for the ``real_llm`` tests: llama-cpp-python serving SmolLM2-135M on loopback.

Skips with the reason when the ``real-llm`` extra is not installed or the shared data is absent.
"""

from __future__ import annotations

import pytest

from benchmarks.real_model.data import OASST
from benchmarks.real_model.llama_server import llama_server, unavailable_reason


def pytest_collection_modifyitems(items):
    reason = unavailable_reason() or (
        None if OASST.is_file() else f"real conversations not found at {OASST} (set SEMTEL_SHARED_DATA)"
    )
    for item in items:
        if reason and "real_llm" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def real_server(tmp_path_factory):
    with llama_server(tmp_path_factory.mktemp("llama") / "server.log") as server:
        yield server
