"""The dispatcher against the simulator over real HTTP: requests, endpoints and timed runs the unit and
integration tests share."""

from __future__ import annotations

import asyncio
import datetime as dt

from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.requests import LLMRequest, request_id
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.server import prompt_tokens

WEEK = dt.date(2024, 1, 1)
FAST = dict(max_attempts=5, backoff_base_s=0.02, backoff_max_s=0.1)


def sim_requests(n: int, max_tokens: int = 40, tag: str = "q") -> list[LLMRequest]:
    out = []
    for i in range(n):
        messages = [{"role": "user", "content": f"User: question number {i} about python errors"}]
        cid = f"{tag}{i}"
        out.append(
            LLMRequest(
                request_id([cid], ["topic"], "v"),
                WEEK,
                (cid,),
                ("topic",),
                "topic",
                "v",
                messages,
                None,
                max_tokens,
                0.0,
                prompt_tokens(messages),
            )
        )
    return out


def sim_endpoint(sim: SimulatorThread, name: str, **kw) -> Endpoint:
    return Endpoint(name=name, base_url=sim.base_url(name), model="gpt-4o-mini", **{"timeout_s": 5, **kw})


async def run_for(dispatcher: Dispatcher, requests, seconds: float) -> list[dict]:
    rows: list[dict] = []
    task = asyncio.create_task(dispatcher.run(requests, rows.append))
    await asyncio.sleep(seconds)
    dispatcher.stop()
    await task
    return rows


def simulator(*endpoints: SimEndpointConfig) -> SimulatorThread:
    return SimulatorThread(SimConfig(endpoints=list(endpoints)))
