"""Client CPU per call: the dispatcher's own aiohttp transport against ``openai.AsyncOpenAI``.

    python -m benchmarks.transport.run        # ~2 min on 2 shared cores, writes RESULTS.md and results.json

Both clients send the same requests (one system + one user message, ``max_tokens`` 8) at the same
concurrency to the simulator answering instantly (``latency_ms`` 0, no quota) in its own process, so
its CPU is not counted. Rounds alternate (ours, openai, ours, ...) so the machine's load hits both;
each round is timed with ``time.process_time`` (this process's CPU, user + system) and wall. The
ratio is the median openai round over the median ours round of the same run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.dispatch.run import Simulator, requests
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.settings import DispatchSettings

HERE = Path(__file__).resolve().parent
CALLS_PER_ROUND = 1_000
ROUNDS = 4  # per client
CONCURRENCY = 32
POOL = [("User: my python script raises a KeyError when I read the config table, why?", 30)]


async def ours(url: str, tag: str) -> int:
    """Dispatcher.run over the round's requests; returns the successful calls."""
    endpoint = Endpoint(name="zero", base_url=url, model="gpt-4o-mini", max_concurrency=CONCURRENCY)
    dispatcher = Dispatcher([endpoint], DispatchSettings())
    stats = await dispatcher.run(requests(CALLS_PER_ROUND, tag, max_tokens=8, pool=POOL), lambda row: None)
    return stats.ok


async def theirs(url: str, tag: str) -> int:
    """The same requests through ``AsyncOpenAI().chat.completions.create`` from CONCURRENCY workers."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    source = requests(CALLS_PER_ROUND, tag, max_tokens=8, pool=POOL)
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for request in source:
            answer = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=request.messages,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
            )
            ok += bool(answer.choices[0].message.content)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    await client.close()
    return ok


def timed(client, url: str, tag: str) -> dict:
    cpu, wall = time.process_time(), time.perf_counter()
    ok = asyncio.run(client(url, tag))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"ok": ok, "cpu_ms_per_call": cpu / CALLS_PER_ROUND * 1000, "wall_ms_per_call": wall / CALLS_PER_ROUND * 1000}


def main() -> None:
    load_before = os.getloadavg()
    rounds: dict[str, list[dict]] = {"ours": [], "openai": []}
    with Simulator([{"name": "zero", "model": "gpt-4o-mini", "latency_ms": 0.0}]) as sim:
        url = sim.url("zero")
        timed(ours, url, "warm-ours")  # imports, first connections
        timed(theirs, url, "warm-openai")
        for i in range(ROUNDS):
            for name, client in (("ours", ours), ("openai", theirs)) if i % 2 == 0 else (("openai", theirs), ("ours", ours)):
                result = timed(client, url, f"{name}-{i}")
                rounds[name].append(result)
                print(name, i, {k: round(v, 3) for k, v in result.items()}, flush=True)
    load_after = os.getloadavg()
    median = {
        name: {key: statistics.median(r[key] for r in rs) for key in ("cpu_ms_per_call", "wall_ms_per_call")}
        for name, rs in rounds.items()
    }
    out = {
        "date": dt.date.today().isoformat(),
        "machine": "2 cores / 24 GB, shared with other workloads",
        "python": platform.python_version(),
        "openai": __import__("openai").__version__,
        "aiohttp": __import__("aiohttp").__version__,
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        "calls_per_round": CALLS_PER_ROUND,
        "rounds_per_client": ROUNDS,
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "median": median,
        "openai_over_ours_cpu": median["openai"]["cpu_ms_per_call"] / median["ours"]["cpu_ms_per_call"],
        "openai_over_ours_wall": median["openai"]["wall_ms_per_call"] / median["ours"]["wall_ms_per_call"],
        "all_ok": all(r["ok"] == CALLS_PER_ROUND for rs in rounds.values() for r in rs),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    (HERE / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("median", "openai_over_ours_cpu", "openai_over_ours_wall", "all_ok")}))


if __name__ == "__main__":
    main()
