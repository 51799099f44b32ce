"""``semtel classify`` as a subprocess against endpoints that are broken, dead, oversized or redirecting
(scripted aiohttp servers and the simulator on loopback): it ends in bounded time, says failed when
requests failed, finishes every request elsewhere when one endpoint is left, and reads no huge answer."""

from __future__ import annotations

import re
import socket
import time
from contextlib import ExitStack

import polars as pl
import pytest
from aiohttp import web
from harness import classify_command, endpoints_file, finish, landing, raw_responses, run, start, table_strings
from scripted_http import HandlerServer, always_500, completion, empty_200, html_200, mid_body_close, no_choices, ok, stall

from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.timeout(300)]

HUGE_BYTES = 5 * 1024 * 1024
TIMEOUT_S = 5  # the endpoints' request timeout: a stall costs this, not the default 60 s
# ... and their queue limit: streamed, a server that never answers has not started the work
LIMITS = {"timeout_s": TIMEOUT_S, "timeout_queue_s": TIMEOUT_S}


async def huge_5mb(request, call):
    return web.json_response(completion(content='{"label": "' + "x" * HUGE_BYTES + '"}'))


BROKEN = {
    "every answer 500": always_500,
    "HTML 200": html_200,
    "empty 200": empty_200,
    "no choices": no_choices,
    "stall": stall,
    "mid-body close": mid_body_close,
    "5 MB answer": huge_5mb,
}


@pytest.fixture(scope="module")
def conversations(tmp_path_factory):
    return landing(tmp_path_factory.mktemp("landing"), n=30)


def test_sole_broken_endpoint_ends_in_bounded_time_with_a_failure(tmp_path, conversations, figure):
    """Every kind of broken sole endpoint at once, one ``semtel classify`` each: non-zero exit within a
    minute, a failure on stderr and no answer claimed, nothing stored as answered, no oversized cell."""
    with ExitStack() as stack:
        runs = {}
        for i, (kind, handler) in enumerate(BROKEN.items()):
            server = stack.enter_context(HandlerServer(handler))
            folder = tmp_path / f"kind{i}"
            folder.mkdir()
            endpoints = endpoints_file(folder, {"name": "sole", "base_url": server.base_url, **LIMITS})
            runs[kind] = (server, folder, time.monotonic(), start(classify_command(conversations, folder / "out", endpoints)))
        finished = {kind: finish(proc, started, timeout_s=240) for kind, (_, _, started, proc) in runs.items()}
        calls = {kind: len(server.calls) for kind, (server, _, _, _) in runs.items()}
    measured = {}
    for kind, done in finished.items():
        folder = runs[kind][1]
        stored = table_strings(folder / "out")
        answered = (
            pl.read_delta(str(folder / "out" / "llm_responses")).filter(pl.col("status") == "ok").height
            if "llm_responses" in stored
            else 0
        )
        longest = max((len(v) for values in stored.values() for v in values), default=0)
        figure(
            "1. sole endpoint broken" if kind != "5 MB answer" else "4. huge answer (5 MB), sole endpoint",
            "non-zero exit in seconds, failure said, nothing answered" + (", not read, RSS bounded" if "MB" in kind else ""),
            kind=kind,
            seconds=done.seconds,
            exit_code=done.code,
            failing_before_stop_s=_failing_for(done.stderr),
            http_calls=calls[kind],
            answered=answered,
            peak_rss_mb=done.peak_rss_mb,
            longest_stored_string=longest,
        )
        measured[kind] = answered, longest
    for kind, done in finished.items():
        answered, longest = measured[kind]
        assert done.code in (1, 4), (kind, done.code, done.stderr[-2000:])
        # the stop comes stop_after_failing_s (30 s) after the first failure; the rest of the time is seven
        # processes starting and writing at once on two shared cores (45 s alone, up to 2 min under load)
        assert (_failing_for(done.stderr) or 0) <= 45 and done.seconds < 200, kind
        assert "dispatch stopped: every endpoint failing" in done.stderr or "failed" in done.stderr, kind
        assert answered == 0 and (done.summary is None or done.summary["answered_requests"] == 0), kind
        assert longest < 512 * 1024, kind  # the 5 MB answer is never stored
    rss = {kind: done.peak_rss_mb for kind, done in finished.items()}
    assert rss["5 MB answer"] < rss["every answer 500"] + 100  # reading stops at the cap: no 5 MB parse


def _failing_for(stderr: str) -> int | None:
    """The seconds every endpoint had failed when dispatch stopped, as the stop message says."""
    said = re.search(r"every endpoint failing for (\d+)s", stderr)
    return int(said.group(1)) if said else None


def _refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more


@pytest.mark.parametrize("dead", ["connection refused", "stall"])
def test_one_of_two_endpoints_dead_every_request_completes_on_the_other(tmp_path, conversations, figure, dead):
    with ExitStack() as stack:
        sim = stack.enter_context(SimulatorThread(SimConfig(endpoints=[SimEndpointConfig(name="live")])))
        stalled = stack.enter_context(HandlerServer(stall)) if dead == "stall" else None
        dead_url = stalled.base_url if stalled else _refused_url()
        endpoints = endpoints_file(
            tmp_path,
            {"name": "dead", "base_url": dead_url, **LIMITS},
            {"name": "live", "base_url": sim.base_url("live"), **LIMITS},
        )
        done = run(classify_command(conversations, tmp_path / "out", endpoints))
        sent_to_live = sim.stats()["totals"]["ok_requests"]
    summary = done.summary
    assert done.code == 0, done.stderr[-2000:]
    raw = raw_responses(tmp_path / "out" / "llm_responses")
    final = pl.read_delta(str(tmp_path / "out" / "llm_responses"))
    lost = summary["requests"] - final.filter(pl.col("status") == "ok")["request_id"].n_unique()
    duplicated = raw.height - raw["request_id"].n_unique()
    figure(
        "2. one of two endpoints dead",
        "every request completes on the other; 0 lost, 0 duplicated",
        dead=dead,
        seconds=done.seconds,
        requests=summary["requests"],
        lost=lost,
        duplicated=duplicated,
        answered_by_live=summary["endpoints"]["live"]["ok"],
        http_to_live=sent_to_live,
        http_to_dead=len(stalled.calls) if stalled else None,
    )
    assert lost == 0 and duplicated == 0
    assert summary["answered_requests"] == summary["requests"] == summary["endpoints"]["live"]["ok"]
    assert done.seconds < 45


def test_redirect_to_another_host_sends_it_nothing(tmp_path, conversations, figure):
    with HandlerServer(ok) as elsewhere:

        async def redirect(request, call):
            raise web.HTTPTemporaryRedirect(f"{elsewhere.base_url}/chat/completions")

        with HandlerServer(redirect) as moved:
            endpoints = endpoints_file(tmp_path, {"name": "moved", "base_url": moved.base_url})
            done = run(classify_command(conversations, tmp_path / "out", endpoints))
            redirected = len(moved.calls)
        reached = len(elsewhere.calls)
    figure(
        "5. redirect to another host",
        "the other host receives nothing; non-zero exit",
        seconds=done.seconds,
        exit_code=done.code,
        calls_redirected=redirected,
        calls_reaching_other_host=reached,
    )
    assert reached == 0
    assert done.code == 4 and f"redirect to {elsewhere.origin} not followed" in done.stderr
