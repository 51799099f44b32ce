"""The ``figure`` fixture: what an experiment measured, appended as one JSON line to the file named by
``SEMTEL_FAULTS_FIGURES`` (``python -m benchmarks.faults.run`` sets it and tabulates the lines)."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture()
def figure(request):
    def record(experiment: str, expectation: str, **measured) -> None:
        path = os.environ.get("SEMTEL_FAULTS_FIGURES")
        if path:
            line = {"test": request.node.nodeid, "experiment": experiment, "expectation": expectation, "measured": measured}
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(line, default=str) + "\n")

    return record
