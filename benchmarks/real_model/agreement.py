"""The real model against both simulator labelers and against human labels, through `semtel eval`.

    python -m benchmarks.real_model.agreement   # ~15 min on 2 shared cores; needs the real-llm and embeddings extras

Starts llama-cpp-python serving SmolLM2-135M-Instruct on loopback, then runs, as a user would::

    semtel eval --a name=smollm2,endpoints=<server> --b name=keyword,labeler=keyword \\
        --b name=embedding,labeler=embedding --b name=nearest,labeler=embedding,noise_scale=0 \\
        --sample real --n 36 --max-chars 1500 --seed 7 --golden clinc150,mt_bench --golden-n 200

The real sample is the one `benchmarks.real_model.calibrate` holds out, so the calibrated labeler is
checked on conversations it was not fitted to. The report (report.md, result.json, confusion PNGs)
lands in ``benchmarks/real_model/eval/``; ``run.json`` there records machine, date and load average, and
the section ``SECTION`` of RESULTS.md is rewritten from both.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.real_model.calibrate import EVAL_N, EVAL_SEED
from benchmarks.real_model.data import DATA
from benchmarks.real_model.llama_server import llama_server
from benchmarks.real_model.run import ENDPOINT_FIELDS
from semtel_dagster.cli import main as semtel

HERE = Path(__file__).resolve().parent
OUT = HERE / "eval"
MAX_CHARS = 1500
GOLDEN_N = 200
SECTION = "## Agreement with human labels and with the simulator (`semtel eval`)"
SIMULATORS = {"keyword": "keyword", "embedding": "embedding, calibrated noise", "nearest": "embedding, nearest definition"}


def _majority_share(confusion: list[list[int]]) -> float:
    """Accuracy of always answering the most frequent human label (rows of the confusion are the truth)."""
    rows = [sum(row) for row in confusion]
    return max(rows) / sum(rows)


def results_section(result: dict, record: dict) -> str:
    """RESULTS.md's section on this run: machine, load, command, the real model against human labels, then
    against each simulator labeler."""
    load = f"load average (as `uptime` shows it) {record['load_average_start']} at the start, {record['load_average_end']} at the end"
    lines = [
        SECTION,
        "",
        f"Date: {record['date']}. Machine: {record['machine']}; {load}. Reproduce: `python -m benchmarks.real_model.agreement` "
        f"({record['wall_seconds']:.0f} s wall), which starts the server above and runs `{record['command']}`. "
        "Report, confusion matrices and every figure: `eval/report.md`, `eval/result.json`.",
        "",
        "Human labels: CLINC150 test utterances (human-written, human-labelled domains) and MT-bench + Vicuna-bench "
        "first turns (human-assigned task categories), each mapped to `topic` where a counterpart exists (the rest "
        "is left out and listed in the report); no data set here has human labels for the other five classifiers. "
        "Majority: the share of the most frequent human label, what answering it always would score.",
        "",
        "| golden set | items | SmolLM2-135M accuracy / macro-F1 | " + " | ".join(SIMULATORS.values()) + " | majority |",
        "|---|---:|---:|" + "---:|" * (len(SIMULATORS) + 1),
    ]
    for name, runs in result["golden"].items():
        real = runs["smollm2"]["topic"]
        cells = [f"{runs[s]['topic']['accuracy']:.3f} / {runs[s]['topic']['macro_f1']:.3f}" for s in SIMULATORS]
        lines.append(
            f"| {name} (topic) | {real['items']} | {real['accuracy']:.3f} / {real['macro_f1']:.3f} | "
            + " | ".join(cells)
            + f" | {_majority_share(real['confusion']):.3f} |"
        )
    classifiers = sorted(result["comparison"]["keyword"])
    lines += [
        "",
        f"On {result['sample']['conversations']} {result['sample']['description']} (seed {result['sample']['seed']}, held out "
        "from the calibration), raw agreement / Cohen's kappa of each simulator labeler with SmolLM2-135M:",
        "",
        "| simulator labeler | " + " | ".join(classifiers) + " |",
        "|---|" + "---|" * len(classifiers),
    ]
    for name, shown in SIMULATORS.items():
        pairs = result["comparison"][name]
        lines.append(
            f"| {shown} | "
            + " | ".join(f"{pairs[c]['raw_agreement']:.2f} / {pairs[c]['cohen_kappa']:.2f}" for c in classifiers)
            + " |"
        )
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replaces ``SECTION`` in ``path`` (up to the next heading of its level), or adds it at the end."""
    text = path.read_text()
    start = text.find(SECTION)
    if start < 0:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = text.find("\n## ", start + len(SECTION))
    path.write_text(text[:start] + section + (text[end:] if end >= 0 else ""))


def main() -> None:
    load = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="semtel-agreement-") as work, llama_server(Path(work) / "server.log") as server:
        endpoints = server.endpoints_file(Path(work) / "endpoints.yaml", **ENDPOINT_FIELDS)
        args = ["eval", "--a", f"name=smollm2,endpoints={endpoints}"]
        for spec in (
            "name=keyword,labeler=keyword",
            "name=embedding,labeler=embedding",
            "name=nearest,labeler=embedding,noise_scale=0",
        ):
            args += ["--b", spec]
        args += ["--sample", "real", "--n", str(EVAL_N), "--max-chars", str(MAX_CHARS), "--seed", str(EVAL_SEED)]
        args += ["--golden", "clinc150,mt_bench", "--golden-n", str(GOLDEN_N), "--data", str(DATA)]
        shutil.rmtree(OUT, ignore_errors=True)
        code = semtel([*args, "--out", str(OUT)])
    if code != 0:
        raise SystemExit(f"semtel eval exited {code}")
    shown = [a if not a.startswith("name=smollm2") else "name=smollm2,endpoints=<llama-cpp-python on loopback>" for a in args]
    record = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, Python {platform.python_version()}",
        "load_average_start": [round(x, 2) for x in load],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.monotonic() - started, 1),
        "command": "semtel " + " ".join(shown).replace(str(DATA), "../shared/data"),
    }
    (OUT / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    section = results_section(json.loads((OUT / "result.json").read_text()), record)
    write_section(HERE / "RESULTS.md", section)
    print(section)


if __name__ == "__main__":
    main()
