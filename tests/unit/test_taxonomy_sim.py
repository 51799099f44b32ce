"""The simulator answers taxonomy steps by the marker in the answer schema, through the real dispatcher."""

import json

import polars as pl

from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.taxonomy.asking import Asker
from semtel_dagster.core.taxonomy.rounds import step_input, summarize
from semtel_dagster.core.taxonomy.tasks import load_tasks
from semtel_dagster.resources.endpoint_pool import EMBEDDED_SIMULATOR, simulator_endpoints
from semtel_dagster.sim import SimulatorThread
from semtel_dagster.sim import taxonomy as sim
from semtel_dagster.sim.server import produce_answer

PROMPTS = load_tasks()
SUMMARIES = pl.DataFrame(
    {
        "conversation_id": [f"c{i}" for i in range(6)],
        "summary": [
            "Book a cheap flight to Rome",
            "Which flight to Paris is fastest",
            "Fix my python loop error",
            "Python function raises a KeyError",
            "A recipe for banana bread",
            "Flight delayed, what are my rights",
        ],
    }
)


def _body(request):
    return {"messages": request.messages, "response_format": request.response_format}


def test_the_marker_not_the_wording_selects_the_answer():
    request = PROMPTS["generate"].request(["x"], step_input(3, batch=SUMMARIES))
    answer = json.loads(produce_answer(EMBEDDED_SIMULATOR.endpoints[0], _body(request), b"")[0])
    assert [label["name"] for label in answer["labels"]][:2] == ["flight", "python"]
    unmarked = {
        **_body(request),
        "response_format": {
            **request.response_format,
            "json_schema": {**request.response_format["json_schema"], "name": "something_else"},
        },
    }
    assert "labels" not in json.loads(produce_answer(EMBEDDED_SIMULATOR.endpoints[0], unmarked, b"")[0])
    assert sim.task_of(request.response_format) == "generate" and sim.task_of(None) is None


def test_update_keeps_current_labels_unless_clearly_displaced():
    current = [{"name": "recipe", "definition": "Cooking.", "example": "bread"}]
    labels = sim.propose(SUMMARIES["summary"].to_list(), 2, current)
    assert [label["name"] for label in labels] == ["recipe", "flight"] and labels[0]["definition"] == "Cooking."


def test_summaries_go_through_the_dispatcher_and_a_rerun_resumes(tmp_path):
    transcripts = pl.DataFrame(
        {
            "conversation_id": ["a", "b"],
            "transcript": ["User: Plan a three-day trip to Rome for me.\n\nAssistant: Day one: the Colosseum.", "User: hi"],
        }
    )
    with SimulatorThread(EMBEDDED_SIMULATOR) as simulator:
        calls = Calls(simulator_endpoints(simulator))
        store = str(tmp_path / "answers")
        first = Asker(calls, store=store)
        summaries = summarize(transcripts, PROMPTS["summarize"], first.ask)
        assert dict(summaries.iter_rows()) == {"a": "Plan a three-day trip to Rome for me. Day one: the Colosseum.", "b": "hi"}
        assert first.totals["ok"] == 2 and first.resumed == 0
        again = Asker(calls, store=store)
        assert summarize(transcripts, PROMPTS["summarize"], again.ask).equals(summaries)
        assert again.resumed == 2 and again.totals["requests"] == 0
