"""PII scrubbing: precision and recall per type on real conversations with planted PII, throughput, and
the simulator's label agreement with and without scrubbing.

    python -m benchmarks.pii.run                      # writes results.json beside this file
    python -m benchmarks.pii.run --write-set --n 1600 # regenerates planted.jsonl (spans, ids, seed)

Recall of a type: its plants whose message scrubs exactly as if the value had been its placeholder
(``scrub(planted) == scrub(planted with the placeholder in place)``), so a value cut in part, or taken for
another type, is missed. Precision of a type: those hits over every placeholder of the type the plants
added (``counts(planted) - counts(original)``), near misses (a Luhn-failing 16-digit number, dates,
version strings, a wrong IBAN check, times, C++ scopes, timestamps, prices) included. What the scrubber
replaces in the real text as it is (unlabelled) is reported apart.

Throughput: ``scrub_texts`` over every message of the three data sets, repeated to ``--mb`` megabytes,
against the same rules with Python's ``re`` on every text instead of on the candidates Rust flags; then
the truncate stage (``scrubbed_truncation``) with scrubbing on and off on the same conversations.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import polars as pl

from benchmarks.pii.data import PLANTED_NAMES, planted_conversations, real_conversations, write_planted_set
from semtel_dagster.core.evaluation.experiment import RunConfig, compare_runs, run_configuration
from semtel_dagster.core.lake import tables
from semtel_dagster.core.prepare.scrub import KINDS, PLACEHOLDERS, RULES, Validate, scrub_texts
from semtel_dagster.core.prepare.truncate import TruncationConfig
from semtel_dagster.engines.pipeline import scrubbed_truncation

HERE = Path(__file__).parent


def evaluate(originals: list[dict], planted: list[dict], plants, names: bool = False) -> dict:
    """Precision, recall per type and near misses taken, all texts scrubbed in one call."""
    original, with_value, expected = [], [], []
    for before, after, p in zip(originals, planted, plants):
        text = after["messages"][p.message]["content"]
        original.append(before["messages"][p.message]["content"])
        with_value.append(text)
        expected.append(text if p.kind == "near_miss" else text[: p.start] + PLACEHOLDERS[p.kind] + text[p.end :])
    n = len(plants)
    scrubbed, counts = scrub_texts(pl.Series(original + with_value + expected, dtype=pl.String), names=names)
    texts = scrubbed.to_list()
    base, added = counts.slice(0, n).rows(named=True), counts.slice(n, n).rows(named=True)
    hits = dict.fromkeys(KINDS, 0)
    false = dict.fromkeys(KINDS, 0)
    forms: dict[str, list[int]] = {}  # kind/form -> [planted, found]
    near_miss_taken: dict[str, int] = {}
    for i, p in enumerate(plants):
        hit = p.kind != "near_miss" and texts[n + i] == texts[2 * n + i]
        hits[p.kind] = hits.get(p.kind, 0) + hit
        if p.kind != "near_miss":
            counted = forms.setdefault(f"{p.kind}/{p.form}", [0, 0])
            counted[0] += 1
            counted[1] += hit
        for kind in KINDS:
            extra = added[i][kind] - base[i][kind] - (hit and kind == p.kind)
            false[kind] += max(0, extra)
            if p.kind == "near_miss" and extra > 0:
                near_miss_taken[f"{p.form} as {kind}"] = near_miss_taken.get(f"{p.form} as {kind}", 0) + extra
    planted_n = {kind: sum(p.kind == kind for p in plants) for kind in [*KINDS, "near_miss"]}
    per_kind = {
        kind: {
            "planted": planted_n[kind],
            "found": hits[kind],
            "false_positives": false[kind],
            "recall": round(hits[kind] / planted_n[kind], 4) if planted_n[kind] else None,
            "precision": round(hits[kind] / (hits[kind] + false[kind]), 4) if hits[kind] + false[kind] else None,
        }
        for kind in KINDS
        if planted_n[kind]
    }
    return {
        "per_kind": per_kind,
        "near_misses": planted_n["near_miss"],
        "near_misses_taken": near_miss_taken,
        "recall_per_form": {form: {"planted": n, "recall": round(found / n, 4)} for form, (n, found) in sorted(forms.items())},
    }


def unlabelled_redactions(conversations: list[dict]) -> dict:
    """What the scrubber replaces in the real text as it is: no truth, so neither precision nor recall."""
    contents = [m["content"] for c in conversations for m in c["messages"]]
    _, counts = scrub_texts(pl.Series(contents, dtype=pl.String))
    return {"messages": len(contents), **{kind: int(counts.get_column(kind).sum()) for kind in KINDS}}


def _python_everywhere(texts: pl.Series) -> pl.Series:
    """The baseline: the same rules, Python's ``re`` on every text for the validated types (no Rust filter)."""
    for rule in RULES:
        if isinstance(rule, Validate):
            texts = pl.Series([rule.exact.sub(rule.replace, t) for t in texts.to_list()], dtype=pl.String)
        else:
            texts = texts.str.replace_all(rule.pattern, rule.replacement)
    return texts


def _timed(step):
    started = time.perf_counter()
    value = step()
    return value, time.perf_counter() - started


def throughput(conversations: list[dict], target_mb: float) -> dict:
    contents = pl.Series([m["content"] for c in conversations for m in c["messages"]], dtype=pl.String)
    mb_once = contents.str.len_bytes().sum() / 1e6
    texts = pl.concat([contents] * max(1, round(target_mb / mb_once))).rechunk()
    mb = texts.str.len_bytes().sum() / 1e6
    (scrubbed, _), fast_s = _timed(lambda: scrub_texts(texts))
    flagged = {
        f"{rule.kind}:{rule.candidate[:24]}": round(float(texts.str.contains(rule.candidate).mean() or 0), 4)
        for rule in RULES
        if isinstance(rule, Validate)
    }
    slow, slow_s = _timed(lambda: _python_everywhere(texts))
    assert slow.equals(scrubbed), "the Rust candidate filter changed what is replaced"
    frame = tables.conform(
        pl.DataFrame(
            {
                "conversation_id": [f"c{i}" for i in range(len(conversations))],
                "messages": [c["messages"] for c in conversations],
            }
        ).with_columns(
            week_start=pl.lit(dt.date(2026, 11, 16)),
            source=pl.lit("bench"),
            started_at=pl.lit(dt.datetime(2026, 11, 16, tzinfo=dt.UTC)),
            n_turns=pl.col("messages").list.len(),
            n_chars=pl.lit(0, pl.Int64),
        ),
        tables.CONVERSATIONS,
    )
    config = TruncationConfig()
    runs = {
        scrub: [_timed(lambda s=scrub: scrubbed_truncation(frame, config=config, scrub_pii=s)) for _ in range(3)]
        for scrub in (True, False)
    }
    scrubbed_stage = runs[True][0][0]
    on_s, off_s = (min(seconds for _, seconds in runs[scrub]) for scrub in (True, False))  # best of three: the machine is shared
    return {
        "texts": texts.len(),
        "mb": round(mb, 1),
        "scrub_s": round(fast_s, 2),
        "scrub_mb_per_s": round(mb / fast_s, 1),
        "python_everywhere_s": round(slow_s, 2),
        "python_everywhere_mb_per_s": round(mb / slow_s, 1),
        "speedup": round(slow_s / fast_s, 2),
        "texts_flagged_for_python": flagged,
        "truncate_stage": {
            "conversations": frame.height,
            "scrub_on_s": round(on_s, 2),
            "scrub_off_s": round(off_s, 2),
            "scrub_share_of_stage": round((on_s - off_s) / on_s, 3),
            "conversations_with_a_redaction": int(
                scrubbed_stage.select(pl.sum_horizontal(pl.col("redactions").struct.unnest()) > 0).to_series().sum()
            ),
        },
    }


def simulator_agreement(conversations: list[dict], label: str) -> dict:
    """Labels with and without scrubbing from the embedded simulator (a bag-of-words stand-in for a model):
    how much the placeholders change what a labeller keyed on the text answers, not label quality."""
    from semtel_dagster.resources.endpoint_pool import EMBEDDED_SIMULATOR, simulator_endpoints
    from semtel_dagster.sim import SimulatorThread

    sample = pl.DataFrame(
        {"conversation_id": [c["conversation_id"] for c in conversations], "messages": [c["messages"] for c in conversations]},
        schema={"conversation_id": pl.String, "messages": tables.CONVERSATIONS["messages"]},
    )
    with ExitStack() as stack:
        endpoints = simulator_endpoints(stack.enter_context(SimulatorThread(EMBEDDED_SIMULATOR)), EMBEDDED_SIMULATOR)
        raw = run_configuration(RunConfig(name="raw", scrub_pii=False), sample, endpoints)
        scrubbed = run_configuration(RunConfig(name="scrubbed", scrub_pii=True), sample, endpoints)
    compared = compare_runs(raw, scrubbed)
    return {
        "conversations": sample.height,
        "set": label,
        "per_classifier": {
            name: {
                "compared": c["compared"],
                "raw_agreement": round(c["raw_agreement"], 4),
                "cohen_kappa": round(c["cohen_kappa"], 4),
            }
            for name, c in compared.items()
        },
    }


def name_figures() -> dict:
    """Recall and precision of ``<NAME>`` on planted names, names found in the real text as is, and MB/s."""
    originals, planted, plants = planted_conversations(PLANTED_NAMES)
    figures = evaluate(originals, planted, plants, names=True)
    contents = pl.Series([m["content"] for c in originals for m in c["messages"]], dtype=pl.String)
    (_, counts), seconds = _timed(lambda: scrub_texts(contents, names=True))
    mb = contents.str.len_bytes().sum() / 1e6
    figures["real_text_as_is"] = {"messages": contents.len(), "names": int(counts.get_column("name").sum())}
    figures["throughput"] = {"mb": round(mb, 2), "seconds": round(seconds, 1), "mb_per_s": round(mb / seconds, 3)}
    return figures


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "load_average_at_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "date": dt.date.today().isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-set", action="store_true", help="regenerate planted.jsonl from ../shared/data and stop")
    parser.add_argument("--n", type=int, default=1600, help="with --write-set: conversations to plant into")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--mb", type=float, default=200.0, help="megabytes of text for the throughput figures")
    parser.add_argument("--agreement-n", type=int, default=300, help="conversations per simulator agreement run")
    parser.add_argument("--names", action="store_true", help="only person names (needs the pii-ner extra): names.json")
    args = parser.parse_args()
    if args.write_set:
        plants = write_planted_set(args.n, args.seed)
        names = write_planted_set(args.n // 4, args.seed + 1, ["name"], PLANTED_NAMES)
        print(f"wrote {len(plants)} plants to planted.jsonl, {len(names)} to {PLANTED_NAMES.name}")
        return
    if args.names:
        names_results = {"machine": machine(), **name_figures()}
        (HERE / "names.json").write_text(json.dumps(names_results, indent=2) + "\n")
        print(json.dumps(names_results, indent=2))
        return
    results: dict = {"machine": machine()}
    originals, planted, plants = planted_conversations()
    results["planted_set"] = evaluate(originals, planted, plants)
    everything = real_conversations()
    results["real_text_as_is"] = unlabelled_redactions(everything)
    results["throughput"] = throughput(everything, args.mb)
    results["simulator_agreement"] = [
        simulator_agreement(planted[: args.agreement_n], "planted"),
        simulator_agreement(originals[: args.agreement_n], "as is"),
    ]
    results["machine"]["load_average_at_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
