"""Rate control at sub-minute quota enforcement: a pool whose per-minute TPM is enforced in 10 s buckets.

    python -m benchmarks.dispatch.run rate

Three endpoints of 200k / 100k / 40k TPM (a third of a 600k / 300k / 120k pool, with the same 10 s
buckets, so a bucket of the small one holds ~6 requests instead of ~20: harder, and a run of 600
conversations spans ~11 buckets instead of ~4), RPM 6 per 1,000 TPM evaluated per second, tailed latency.
600 real conversations (hh-rlhf ``harmless-base-test``, the ``chosen`` transcripts through the repo's
ingest adapter and transcript rendering), one classifier (``topic``, its real prompt and schema).

Four clients run at the same time, each on its own copy of the pool (12 simulated endpoints in one
simulator process, reset together so the buckets of all start when the clients do), each in its own
process, started together once all have their requests ready: ours with the quotas declared (``tpm``, ``rpm``, ``quota_interval_s: 10``), ours with nothing
declared (limits from headers, the interval learned from 429s), a fixed-concurrency loop (8 per
endpoint) with the OpenAI client's own retries (``max_retries=5``, which honour ``Retry-After``), and a
LiteLLM Router over the three deployments (tpm/rpm given, its default routing, ``num_retries=5``, 24
requests at a time).

Utilization is server-side: the tokens each pool admitted (prompt + max_tokens, the quota unit) in the
buckets from the first to the last but one that admitted anything (the last is partial: the work ran
out), over what those buckets allow. 429 share: refusals / (admissions + refusals), at the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.dispatch.run import LATENCY, ROOT, WEEK, Simulator
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.ingest.adapters import from_hh_rlhf
from semtel_dagster.core.llm.dispatch import Dispatcher
from semtel_dagster.core.llm.endpoints import Endpoint
from semtel_dagster.core.llm.requests import LLMRequest, request_id
from semtel_dagster.core.llm.settings import DispatchSettings
from semtel_dagster.core.prepare.tokens import count_tokens
from semtel_dagster.core.prepare.truncate import render_transcript

DATA = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
if not DATA.exists():
    DATA = Path("/work/shared/data/hh-rlhf/harmless-base-test.jsonl.gz")
CONVERSATIONS = 600
INTERVAL_S = 10.0
POOL = {"large": 200_000, "medium": 100_000, "small": 40_000}  # 600k / 300k / 120k TPM scaled by 1/3
CLIENTS = ("declared", "undeclared", "openai_loop", "litellm_router")
BASELINE_CONCURRENCY = 8  # per endpoint


def conversation_requests() -> list[LLMRequest]:
    """One ``topic`` request per real conversation, built as the classify stage builds them."""
    classifier = load_classifiers(names=["topic"])["topic"]
    out = []
    with gzip.open(DATA, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == CONVERSATIONS:
                break
            transcript = render_transcript(from_hh_rlhf(json.loads(line))["messages"])
            transcript, _ = classifier.fit(transcript, count_tokens(transcript))
            messages = classifier.messages(transcript)
            cid = f"hh-{i}"
            out.append(
                LLMRequest(
                    request_id=request_id([cid], [classifier.name], classifier.version),
                    week_start=WEEK,
                    conversation_ids=(cid,),
                    classifiers=(classifier.name,),
                    prompt_name=classifier.name,
                    prompt_version=classifier.version,
                    messages=messages,
                    response_format=classifier.response_format(),
                    max_tokens=classifier.max_tokens,
                    temperature=classifier.temperature,
                    prompt_tokens=sum(count_tokens(m["content"]) + 4 for m in messages) + 3,
                )
            )
    return out


def _sim_endpoints() -> list[dict]:
    return [
        {
            "name": f"{client}-{name}",
            "model": "gpt-4o-mini",
            "tpm": tpm,
            "rpm": tpm * 6 // 1000,
            "tpm_interval_s": INTERVAL_S,
            "rpm_interval_s": 1.0,
            "seed": sum(map(ord, name)),
            **LATENCY,
        }
        for client in CLIENTS
        for name, tpm in POOL.items()
    ]


def bench() -> dict:
    with Simulator(_sim_endpoints()) as sim:
        procs = {
            client: subprocess.Popen(
                [sys.executable, "-m", "benchmarks.dispatch.rate", "_client", client, str(sim.port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
            )
            for client in CLIENTS
        }
        for proc in procs.values():  # every client has its requests and imports ready ...
            assert proc.stdout.readline().strip() == "ready"
        sim.reset()  # ... then every pool's buckets start as the clients do
        for proc in procs.values():
            proc.stdin.write("go\n")
            proc.stdin.flush()
        clients = {}
        for client, proc in procs.items():
            out, _ = proc.communicate(timeout=900)
            clients[client] = json.loads(out.strip().splitlines()[-1])
        stats = sim.stats()["endpoints"]
    out = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "pool_tpm": POOL,
        "interval_s": INTERVAL_S,
        "work_tokens": sum(request.cost for request in conversation_requests()),
    }
    for client in CLIENTS:
        served = {name: stats[f"{client}-{name}"] for name in POOL}
        entry = {**clients[client], **server_side(served)}
        out[client] = entry
        print("rate", client, entry, flush=True)
    return out


def server_side(served: dict[str, dict]) -> dict:
    """Utilization of the buckets the run filled (first to last but one), and the 429 share."""
    per_bucket = {name: {b["bucket"]: b["charged_tokens"] for b in s["tokens_per_bucket"]} for name, s in served.items()}
    used = [b for buckets in per_bucket.values() for b in buckets]
    first, last = min(used), max(used)
    full = range(first, last)
    admitted = sum(buckets.get(b, 0) for buckets in per_bucket.values() for b in full)
    allowed = sum(POOL[name] * INTERVAL_S / 60.0 for name in served) * len(full)
    refused = sum(s["rate_limited"] for s in served.values())
    admissions = sum(s["requests"] for s in served.values())
    return {
        "utilization": round(admitted / allowed, 4) if allowed else None,
        "buckets_measured": len(full),
        "server_429_share": round(refused / max(1, refused + admissions), 4),
        "server_429s": refused,
        "server_admissions": admissions,
        "per_endpoint_admitted": {name: s["requests"] for name, s in served.items()},
    }


# ----------------------------------------------------------------------------- the clients (one process each)


def _client(kind: str, port: str) -> None:
    requests = conversation_requests()
    urls = {name: f"http://127.0.0.1:{port}/{kind}-{name}/v1" for name in POOL}
    if kind == "litellm_router":
        import litellm  # noqa: F401 (imported before the start: it takes seconds)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    result = asyncio.run(CLIENT_RUNS[kind](requests, urls))
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["requests"] = len(requests)
    print(json.dumps(result))


async def _ours(requests: list[LLMRequest], urls: dict[str, str], declared: bool) -> dict:
    endpoints = [
        Endpoint(
            name=name,
            base_url=url,
            model="gpt-4o-mini",
            max_concurrency=64,
            tpm=POOL[name] if declared else None,
            rpm=POOL[name] * 6 // 1000 if declared else None,
            quota_interval_s=INTERVAL_S if declared else None,
        )
        for name, url in urls.items()
    ]
    dispatcher = Dispatcher(endpoints, DispatchSettings())
    rows: list[dict] = []
    stats = await dispatcher.run(requests, rows.append)
    learned = {s.endpoint.name: s.tpm.interval_s for s in dispatcher.states}
    return {
        "answered": sum(1 for r in rows if r["status"] == "ok"),
        "lost": len(requests) - sum(1 for r in rows if r["status"] == "ok"),
        "client_retries": stats.retries,
        "timeouts": stats.timeouts,
        "interval_s_used": learned,
    }


async def _openai_loop(requests: list[LLMRequest], urls: dict[str, str]) -> dict:
    import openai

    clients = [openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=5) for url in urls.values()]
    source = iter(requests)
    answered = lost = 0
    errors: Counter[str] = Counter()

    async def worker(client) -> None:
        nonlocal answered, lost
        for request in source:
            try:
                await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=request.messages,
                    max_tokens=request.max_tokens,
                    response_format=request.response_format,
                )
                answered += 1
            except openai.OpenAIError as exc:
                lost += 1
                errors[type(exc).__name__] += 1

    await asyncio.gather(*(worker(c) for c in clients for _ in range(BASELINE_CONCURRENCY)))
    for c in clients:
        await c.close()
    return {"answered": answered, "lost": lost, "errors": dict(errors)}


async def _litellm_router(requests: list[LLMRequest], urls: dict[str, str]) -> dict:
    import litellm
    from litellm import Router

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    router = Router(
        model_list=[
            {
                "model_name": "pool",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": url,
                    "api_key": "x",
                    "tpm": POOL[name],
                    "rpm": POOL[name] * 6 // 1000,
                },
            }
            for name, url in urls.items()
        ],
        num_retries=5,
    )
    source = iter(requests)
    answered = lost = 0
    errors: Counter[str] = Counter()

    async def worker() -> None:
        nonlocal answered, lost
        for request in source:
            try:
                await router.acompletion(
                    model="pool",
                    messages=request.messages,
                    max_tokens=request.max_tokens,
                    response_format=request.response_format,
                )
                answered += 1
            except Exception as exc:  # LiteLLM raises its own and the provider's errors: a request lost either way
                lost += 1
                errors[type(exc).__name__] += 1

    await asyncio.gather(*(worker() for _ in range(BASELINE_CONCURRENCY * len(urls))))
    return {"answered": answered, "lost": lost, "errors": dict(errors)}


CLIENT_RUNS = {
    "declared": lambda requests, urls: _ours(requests, urls, declared=True),
    "undeclared": lambda requests, urls: _ours(requests, urls, declared=False),
    "openai_loop": _openai_loop,
    "litellm_router": _litellm_router,
}


def render(r: dict) -> list[str]:
    pool = " / ".join(f"{v // 1000}k" for v in r["pool_tpm"].values())
    lines = [
        f"## 6. Rate control: quotas enforced in {r['interval_s']:.0f} s buckets, 600 real conversations, one classifier",
        "",
        f"Measured {r['date']}, the four clients at the same time, each on its own copy of the pool. Pool {pool} TPM "
        f"(600k / 300k / 120k scaled by 1/3 with the same {r['interval_s']:.0f} s buckets), RPM 6 per 1k TPM evaluated per "
        "second; hh-rlhf conversations, the `topic` classifier. Utilization: tokens admitted / tokens the buckets allowed, "
        "over the buckets from the first to the last but one (server-side).",
        "",
        "| client | utilization | 429s (server) | wall s | answered | lost | |",
        "|---|---|---|---|---|---|---|",
    ]
    for client in CLIENTS:
        e = r[client]
        extra = (
            f"interval used: {e['interval_s_used']}; retries {e['client_retries']}, timeouts {e['timeouts']}"
            if "interval_s_used" in e
            else f"errors: {e.get('errors') or 'none'}"
        )
        utilization = "n/a" if e["utilization"] is None else f"{e['utilization']:.3f}"
        lines.append(
            f"| {client} | {utilization} | {e['server_429_share']:.2%} ({e['server_429s']}) | {e['wall_s']} | "
            f"{e['answered']} / {e['requests']} | {e['lost']} | {extra} |"
        )
    d, u, o, lr = (r[c] for c in CLIENTS)
    lines += [
        "",
        f"**Rate control.** Against quotas enforced in {r['interval_s']:.0f} s buckets, the dispatcher used "
        f"{d['utilization']:.3f} of what the buckets allowed with the interval declared ({d['server_429_share']:.1%} 429s) and "
        f"{u['utilization']:.3f} with nothing declared ({u['server_429_share']:.1%} 429s, the interval learned from the first "
        f"429s: {sorted(set(u['interval_s_used'].values()))} s), every request answered; goals >= 0.95 / >= 0.90 with <= 2 % "
        f"429s. In the same run the fixed-concurrency loop with the OpenAI client's retries used {o['utilization']:.3f} "
        f"(declared / loop: {d['utilization'] / o['utilization']:.2f}x) with {o['server_429_share']:.0%} of its requests refused "
        f"and {o['lost']} lost after five retries; the LiteLLM Router (default routing, `num_retries=5`) lost "
        f"{lr['lost']} of {lr['requests']} (`RouterRateLimitError` once its deployments were cooling down after 429s), "
        f"so its run ended after {lr['wall_s']:.0f} s ({lr['buckets_measured']} whole bucket(s) to measure). "
        "How: each quota mirror keeps, besides the sliding minute, spans of the interval (at most limit x interval / 60 "
        "of our charges in any interval, whatever the provider's bucket phase) and of a fifth of it (at most 40 % of "
        "that: sends are spread); a 429 while the minute's `remaining` header still shows room names a bucket boundary "
        "(arrival + `Retry-After`), and the interval is the longest standard one that the boundaries fit and the "
        "longest wait does not exceed (one boundary: the shortest at least that wait; a shorter span never over-spends "
        "a bucket it divides). What is lost against 1.0: the request that does not fit the end of a bucket (a bucket "
        "of the small endpoint holds ~6), a 1 % arrival margin, and the start (our sliding spans do not know where the "
        "provider's buckets begin: the second bucket shares a span with the first's sends). Wall times are the quota's: the work is "
        f"{r['work_tokens']:,} tokens, {r['work_tokens'] / sum(r['pool_tpm'].values()) * 60:.0f} s at the pool's TPM.",
        "",
    ]
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_client":
        _client(sys.argv[2], sys.argv[3])
