"""Fewer calls, fewer tokens, same labels: measured cost-quality of every saving, through the product.

    python -m benchmarks.savings.run            # everything (embeddings cached under .semtel/bench-cache)
    python -m benchmarks.savings.run --quick    # smaller real/human sets, for a smoke run
    python -m benchmarks.savings.run --savings  # only the savings tables (add --quick for the smaller real set)
    python -m benchmarks.savings.run --scaling  # only the dedupe stage throughput (~6 min)

Every setting is pipeline settings and prompt files run through ``engines.pipeline.Pipeline.run_week``
(the stage chain the assets, ``semtel classify`` and ``semtel eval`` run) on a fresh lake, against the
simulator over HTTP (labels deterministic from content; its embedding labeler unless ``--labeler keyword``).
Real conversations are the headline, the generated sample second. The no-savings baseline sends every
conversation, head_tail at 3000 tokens, no compression, no per-classifier budgets. Each setting reports
the share of LLM calls and prompt tokens it avoids and Cohen's kappa of its stored labels against the
baseline's, per classifier (mean and min). Writes results.json, RESULTS.md and cost_quality.png here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import cohen_kappa_score

from benchmarks.embedding_cache import CachedEmbedder
from benchmarks.real_model.data import DATA
from semtel_dagster.core.classify.answering import Calls
from semtel_dagster.core.classify.embedding_classifier import train
from semtel_dagster.core.evaluation.golden import real_conversations
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.prepare.dedupe import cluster_exact, near_duplicates
from semtel_dagster.core.prepare.truncate import TruncationConfig, render_transcript
from semtel_dagster.engines.pipeline import Pipeline
from semtel_dagster.engines.polars_engine import PolarsEngine
from semtel_dagster.resources.endpoint_pool import simulator_endpoints
from semtel_dagster.resources.settings import PipelineSettings
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.embeddings import hashed_embedding
from semtel_dagster.sim.sample import generate_week

HERE = Path(__file__).resolve().parent
PROMPTS = HERE.parents[1] / "prompts"
WEEK = dt.date(2026, 11, 16)
TRAIN_WEEK = WEEK - dt.timedelta(weeks=1)
BASELINE = "head_tail:3000"
PER_CLASSIFIER = {"topic": "head:256", "intent": "head:256", "user_expertise": "head_tail:512", "satisfaction": "tail:256"}
# ... as prompt-file budgets, which cut the transcript (head, tail, head_tail; turns work on messages only)
PROMPT_FILE_BUDGETS = "prompt-file"  # the shipped prompts: each classifier's metadata.transcript_budget
UNIFORM = "uniform"  # prompt files without a budget of their own: the stage's cut only
PER_CLASSIFIER_BUDGETS = "per-classifier"  # prompt files with the PER_CLASSIFIER budgets
_BUDGET_LINE = re.compile(r"^\s*transcript_budget:.*\n", re.M)
SCALING_SIZES = [10_000, 30_000, 100_000]
KAPPA_GOAL = 0.9
LABELER_NOTES = {
    "embedding": "Labels: the simulator over HTTP with its embedding labeler (the nearest label definition by sentence "
    "embedding, with per-classifier noise calibrated against a real model: `semtel_dagster/sim/calibration.json`; "
    "deterministic, and sharing no vocabulary with the sample generator). It stands in for an LLM whose labels "
    "move with the conversation's meaning, not for a good classifier.",
    "keyword": "Labels: the simulator over HTTP with its keyword labeler (words of the label definitions, which the "
    "sample generator writes with: figures on the generated sample are flattered).",
}
SHOWN_MODELS = "embedding classifier target 0.95"  # the setting whose trained models RESULTS.md lists  # every classifier's kappa against the baseline, not only the mean


# ----------------------------------------------------------------------------- datasets


@dataclass
class Dataset:
    name: str
    test: pl.DataFrame  # conversations of the measured week
    train: pl.DataFrame  # the week before: the embedding classifiers learn the LLM's labels here


def sample_dataset() -> Dataset:
    def week(w: dt.date) -> pl.DataFrame:
        import tempfile

        folder = Path(tempfile.mkdtemp())
        (folder / "w.jsonl").write_bytes(b"\n".join(generate_week(w, 400).records))
        return read_landing(folder, w).conversations

    earlier = pl.concat([week(WEEK - dt.timedelta(weeks=k)) for k in (1, 2, 3)])
    return Dataset("generated sample (400 conversations)", week(WEEK), earlier)


def real_dataset(quick: bool) -> Dataset:
    """hh-rlhf (chosen, the first 900), OpenAssistant root-to-leaf paths and arena-hard question+answer, shuffled."""
    frame = real_conversations(DATA, per_source=900).sample(fraction=1.0, shuffle=True, seed=7)
    n_test = 300 if quick else 600
    n_train = 600 if quick else 1200
    return Dataset(
        f"real: hh-rlhf + oasst + arena-hard ({n_test} test, {n_train} train)", frame.head(n_test), frame.slice(n_test, n_train)
    )


# ----------------------------------------------------------------------------- the product, per setting


def prompts_folder(root: Path, budgets: str) -> Path:
    """The shipped prompts (``PROMPT_FILE_BUDGETS``), or a copy whose files carry no budget of their own
    (``UNIFORM``: the stage's cut only) or the ``PER_CLASSIFIER`` budgets: a setting is prompt files."""
    if budgets == PROMPT_FILE_BUDGETS:
        return PROMPTS
    folder = root / f"prompts-{budgets}"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        for file in sorted(PROMPTS.glob("*.prompty")):
            text = _BUDGET_LINE.sub("", file.read_text(encoding="utf-8"))
            if budgets == PER_CLASSIFIER_BUDGETS and file.stem in PER_CLASSIFIER:
                text = text.replace(
                    f"  classifier: {file.stem}\n",
                    f'  classifier: {file.stem}\n  transcript_budget: "{PER_CLASSIFIER[file.stem]}"\n',
                )
            (folder / file.name).write_text(text, encoding="utf-8")
    return folder


class ProductRuns:
    """Each setting is ``PipelineSettings`` and prompt files, run through ``Pipeline.run_week`` (truncate,
    dedupe, answer, parse) on a fresh lake against the simulator over HTTP: the calls and prompt tokens
    are what the pipeline sent and the endpoint counted, the labels what it stored."""

    def __init__(self, data: Dataset, calls: Calls, embedder: CachedEmbedder, root: Path) -> None:
        self.data, self.calls, self.embedder, self.root = data, calls, embedder, root
        self.ids = data.test["conversation_id"].to_list()
        self._histories: dict[str, Path] = {}
        self.models: dict[str, dict] = {}  # per setting with embedding classifiers: what was trained
        self.base = self.run("baseline (no savings)")
        self.baseline = self.labels(self.base.pop("_run"))
        self.base |= {"kappa_mean": 1.0, "kappa_min": 1.0, "kappa": dict.fromkeys(self.baseline, 1.0)}

    def settings(self, *, dedupe: str, threshold: float, truncation: str, budgets: str, target: float | None):
        cut = TruncationConfig.parse(truncation)
        return PipelineSettings(
            prompts_dir=str(prompts_folder(self.root, budgets)),
            max_transcript_tokens=cut.max_tokens,
            truncation_strategy=cut.strategy,
            compress=cut.compress,
            dedupe_method=dedupe,
            dedupe_threshold=threshold,
            embedding_classifier=target is not None,
            embedding_classifier_target_agreement=target or 0.95,
            embedding_classifier_train_weeks=1,
        )

    def lake(self, settings: PipelineSettings, week: dt.date, conversations: pl.DataFrame, history: Path | None):
        lake = Path(tempfile.mkdtemp(dir=self.root, prefix="lake-"))
        if history is not None:
            shutil.copytree(history, lake, dirs_exist_ok=True)
        engine = PolarsEngine(str(lake))
        engine.write("conversations", conversations.with_columns(week_start=pl.lit(week)), week)
        return lake, Pipeline(engine, settings, calls=self.calls, embedder=lambda: self.embedder)

    def history(self, budgets: str) -> Path:
        """The week before, answered by the LLM under the baseline cut and these prompt files (labels of
        the same prompt versions): what an embedding classifier trains on."""
        if budgets not in self._histories:
            settings = self.settings(dedupe="none", threshold=0.95, truncation=BASELINE, budgets=budgets, target=None)
            lake, pipeline = self.lake(settings, TRAIN_WEEK, self.data.train, None)
            pipeline.run_week(TRAIN_WEEK)
            self._histories[budgets] = lake
        return self._histories[budgets]

    def run(
        self,
        label: str,
        *,
        dedupe: str = "none",
        threshold: float = 0.95,
        truncation: str = BASELINE,
        budgets: str = UNIFORM,
        target: float | None = None,
    ) -> dict:
        settings = self.settings(dedupe=dedupe, threshold=threshold, truncation=truncation, budgets=budgets, target=target)
        history = self.history(budgets) if target is not None else None
        lake, pipeline = self.lake(settings, WEEK, self.data.test, history)
        try:
            run = pipeline.run_week(WEEK)
        finally:
            shutil.rmtree(lake)
        report = run.classified.report
        row = {"setting": label, "calls": report.sent, "tokens": report.stats["prompt_tokens"]}
        if target is not None:
            row["answered_by_embedding_classifiers"] = dict(report.embedded)
            self.models[label] = run.classified.embedding_classifiers
        if label == "baseline (no savings)":
            return row | {"_run": run}
        labels = self.labels(run)
        kappas = {name: _kappa(self.baseline[name], labels[name]) for name in self.baseline}
        return row | {
            "kappa_mean": float(np.mean(list(kappas.values()))),
            "kappa_min": float(min(kappas.values())),
            "kappa": kappas,
        }

    def labels(self, run) -> dict[str, list[str]]:
        """Per classifier, the stored label of every test conversation (``-`` where the pipeline rejected it)."""
        frame = run.classifications.frame
        out = {}
        for name in sorted(set(frame.get_column("classifier").to_list())):
            got = dict(frame.filter(pl.col("classifier") == name).select("conversation_id", "label").iter_rows())
            out[name] = [got.get(cid, "-") for cid in self.ids]
        return out


def _kappa(a: list[str], b: list[str]) -> float:
    if a == b:
        return 1.0
    value = cohen_kappa_score(a, b)
    return 0.0 if np.isnan(value) else float(value)


def savings_table(runs: ProductRuns) -> list[dict]:
    rows = [runs.run("exact dedupe", dedupe="exact")]
    rows += [runs.run(f"embedding dedupe @{t}", dedupe="embedding", threshold=t) for t in (0.98, 0.95, 0.92, 0.9, 0.85)]
    for spec in (
        "head_tail:1024",
        "head_tail:512",
        "head_tail:256",
        "head:256",
        "tail:256",
        "turns:256",
        "turns:512",
        "head_tail:3000+compress",
        "turns:512+compress",
    ):
        rows.append(runs.run(f"truncate {spec}", truncation=spec))
    rows.append(runs.run("per-classifier budgets " + json.dumps(PER_CLASSIFIER), budgets=PER_CLASSIFIER_BUDGETS))
    for target in (0.99, 0.95, 0.9, 0.8):
        rows.append(runs.run(f"embedding classifier target {target}", target=target))
    rows.append(runs.run("prompt-file budgets (shipped)", budgets=PROMPT_FILE_BUDGETS))
    rows.append(
        runs.run(
            "exact + per-classifier budgets + compression",
            dedupe="exact",
            truncation=BASELINE + "+compress",
            budgets=PER_CLASSIFIER_BUDGETS,
        )
    )
    rows.append(
        runs.run(
            "exact + emb@0.95 + per-classifier budgets + compression + classifier target 0.95",
            dedupe="embedding",
            truncation=BASELINE + "+compress",
            budgets=PER_CLASSIFIER_BUDGETS,
            target=0.95,
        )
    )
    for dedupe, threshold, name in (
        ("exact", 0.95, "exact"),
        ("embedding", 0.95, "exact + emb@0.95"),
        ("embedding", 0.92, "exact + emb@0.92"),
    ):
        rows.append(
            runs.run(
                f"{name} + prompt-file budgets + classifier target 0.95",
                dedupe=dedupe,
                threshold=threshold,
                budgets=PROMPT_FILE_BUDGETS,
                target=0.95,
            )
        )
    rows.append(
        runs.run(
            "exact + emb@0.95 + head_tail:1024 + classifier target 0.95",
            dedupe="embedding",
            truncation="head_tail:1024",
            target=0.95,
        )
    )
    rows.append(
        runs.run(
            "exact + emb@0.95 + prompt-file budgets + classifier target 0.9",
            dedupe="embedding",
            budgets=PROMPT_FILE_BUDGETS,
            target=0.9,
        )
    )
    base = runs.base
    rows = [base, *rows]
    for row in rows:
        row["calls_avoided"] = 1 - row["calls"] / base["calls"]
        row["tokens_avoided"] = 1 - row["tokens"] / base["tokens"]
    rows.append({"models": runs.models})
    return rows


# ----------------------------------------------------------------------------- human labels


def human_label_eval(embedder: CachedEmbedder, quick: bool) -> dict:
    out = {}
    clinc = json.loads((DATA / "clinc150" / "data_full.json").read_text())
    domains = {i: d for d, intents in json.loads((DATA / "clinc150" / "domains.json").read_text()).items() for i in intents}
    tr, te, oos = clinc["train"], clinc["test"], clinc["oos_test"]
    if quick:
        tr, te, oos = tr[::5], te[::5], oos[::5]
    xtr, xte, xoos = (embedder.embed([t for t, _ in part]) for part in (tr, te, oos))
    model = train(
        "clinc_intent",
        xtr,
        [i for _, i in tr],
        prompt_version="human",
        llm_model="human",
        embedder="all-MiniLM-L6-v2",
        target_agreement=0.95,
    )
    pred, conf = model.predict(xte)
    truth = np.array([i for _, i in te])
    _, oconf = model.predict(xoos)
    t = model.card.threshold
    out["clinc150"] = {
        "train": len(tr),
        "test_in_scope": len(te),
        "test_oos": len(oos),
        "intent_accuracy": float((pred == truth).mean()),
        "domain_accuracy": float(np.mean([domains[p] == domains[g] for p, g in zip(pred, truth)])),
        "calibrated_threshold": t,
        "in_scope_coverage_at_threshold": float((conf >= t).mean()),
        "intent_accuracy_at_threshold": float((pred[conf >= t] == truth[conf >= t]).mean()),
        "oos_abstained_at_threshold": float((oconf < t).mean()),  # oos sent to the LLM instead of mislabelled
    }
    for name, path in (("banking77", DATA / "banking77"),):
        train_df, test_df = pl.read_csv(path / "train.csv"), pl.read_csv(path / "test.csv")
        if quick:
            train_df, test_df = train_df.gather_every(5), test_df.gather_every(5)
        xtr, xte = embedder.embed(train_df["text"].to_list()), embedder.embed(test_df["text"].to_list())
        model = train(
            name,
            xtr,
            train_df["category"].to_list(),
            prompt_version="human",
            llm_model="human",
            embedder="all-MiniLM-L6-v2",
            target_agreement=0.95,
        )
        pred, conf = model.predict(xte)
        truth = test_df["category"].to_numpy()
        t = model.card.threshold
        out[name] = {
            "train": train_df.height,
            "test": test_df.height,
            "accuracy": float((pred == truth).mean()),
            "calibrated_threshold": t,
            "coverage_at_threshold": float((conf >= t).mean()),
            "accuracy_at_threshold": float((pred[conf >= t] == truth[conf >= t]).mean()),
        }
    return out


# ----------------------------------------------------------------------------- dedupe scaling


def dedupe_scaling(sizes: list[int]) -> list[dict]:
    """Dedupe stage cost (exact hash + LSH near-duplicates) from 10k to 100k generated conversations.

    Vectors are the simulator's hashed bag-of-words embeddings (384-d) so the measurement isolates
    the dedupe stage; the model's own throughput is reported separately. The near-duplicate part is
    ``core.dedupe.near_duplicates``, the one the Polars engine runs (the Spark engine runs its parts
    per bucket and per component).
    """
    rows = []
    for n in sizes:
        weeks = [generate_week(WEEK + dt.timedelta(weeks=k), min(n, 20_000), seed=k) for k in range(-(-n // 20_000))]
        records = [_json_or_none(r) for w in weeks for r in w.records]  # the generator mixes in malformed lines
        records = [r for r in records if isinstance(r, dict) and isinstance(r.get("messages"), list)][:n]
        texts = [render_transcript(r["messages"]) for r in records]
        ids = [f"c{i:07d}" for i in range(len(texts))]
        vectors = np.array([hashed_embedding(t) for t in texts], dtype=np.float32)
        frame = pl.DataFrame({"conversation_id": ids, "week_start": [WEEK] * len(ids), "transcript": texts})
        start = time.perf_counter()
        exact = cluster_exact(frame)
        reps = exact.filter(pl.col("is_representative")).sort("conversation_id")
        hashed = time.perf_counter()
        index = {c: i for i, c in enumerate(ids)}
        moved = near_duplicates(reps["conversation_id"], vectors[[index[c] for c in reps["conversation_id"]]], 0.95)
        end = time.perf_counter()
        rows.append(
            {
                "conversations": len(ids),
                "seconds": round(end - start, 2),
                "conversations_per_second": round(len(ids) / (end - start)),
                "exact_seconds": round(hashed - start, 2),
                "near_duplicate_seconds": round(end - hashed, 2),
                "exact_representatives": reps.height,
                "embedding_representatives": reps.height - moved.height,
            }
        )
        print(rows[-1], flush=True)
    return rows


def _json_or_none(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None


# ----------------------------------------------------------------------------- report


def recommend(rows: list[dict]) -> dict:
    """The cheapest setting (prompt tokens = calls x tokens per call) whose kappa against the baseline is at
    least ``KAPPA_GOAL`` for every classifier: a mean would hide one classifier's labels going bad."""
    return min((r for r in rows if "setting" in r and r["kappa_min"] >= KAPPA_GOAL), key=lambda r: r["tokens"])


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, key in zip(axes, ("real", "sample")):
        rows = [r for r in results[key] if "setting" in r]
        base = rows[0]["tokens"]
        for r in rows:
            x = r["tokens"] / base
            marker = "*" if r["setting"] == recommend(rows)["setting"] else "o"
            ax.scatter(x, r["kappa_min"], s=140 if marker == "*" else 30, marker=marker)
            ax.annotate(
                r["setting"].replace("truncate ", "").replace("embedding ", "emb ")[:34],
                (x, r["kappa_min"]),
                fontsize=6,
                xytext=(3, 2),
                textcoords="offset points",
            )
        ax.axhline(KAPPA_GOAL, ls="--", lw=0.8, color="grey")
        ax.axvline(0.5, ls=":", lw=0.8, color="grey")
        ax.set_xlabel("prompt tokens sent (share of baseline) = cost")
        ax.set_ylabel("Cohen's kappa vs baseline labels (lowest classifier)")
        ax.set_title(results["datasets"][key])
        ax.set_xlim(0, 1.05)
    fig.suptitle(f"semtel savings: cost vs label agreement (simulator over HTTP, {results.get('labeler', 'keyword')} labeler)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def _load_note(results: dict) -> str:
    """Wall time and load average (1/5/15 min at the start, then at the end) of the savings run: others may share the machine."""
    load = results.get("savings_load_average")
    if not load:
        return ""
    return f" ({results['savings_wall_seconds']:.0f} s; load average {load[:3]} at the start, {load[3:]} at the end)"


def markdown(results: dict) -> str:
    lines = [
        "# Savings benchmark: fewer calls, fewer tokens, same labels",
        "",
        f"Machine: {results['machine']}. Date: {results['date']}. Mode: {results.get('mode', 'full')}. "
        f"Reproduce: `python -m benchmarks.savings.run{' --quick' if results.get('mode', '').startswith('quick') else ''}`"
        f" ({results['wall_seconds']:.0f} s wall, embeddings cached under .semtel/bench-cache).",
        "",
        f"Savings tables measured {results.get('savings_measured', results['date'])}{_load_note(results)}: every "
        "setting is pipeline "
        "settings and prompt files, run through the product's stage chain (`Pipeline.run_week`: truncate, dedupe, "
        "answer, parse) on a fresh lake; reproduce them alone with `python -m benchmarks.savings.run --savings [--quick]`.",
        "",
        f"{LABELER_NOTES[results.get('labeler', 'keyword')]} LLM calls: requests the "
        "pipeline sent; prompt tokens: as the endpoint counted them. Baseline: every conversation sent (dedupe none), "
        "head_tail at 3000 tokens, no compression, prompt files without budgets of their own. Embedding classifiers "
        "train on the LLM's labels of the week before (the train set) and answer where confident enough for the "
        "target held-out agreement. kappa: Cohen's kappa of each setting's stored labels against the baseline's, per "
        "classifier (all six prompts in prompts/); the goal is every classifier at kappa >= 0.9.",
        "",
        "![cost-quality curve](cost_quality.png)",
        "",
    ]
    for key in ("real", "sample"):
        lines += [
            f"## {results['datasets'][key]}",
            "",
            "| setting | LLM calls | calls avoided | prompt tokens | tokens avoided | kappa mean | kappa min |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results[key]:
            if "setting" in r:
                lines.append(
                    f"| {r['setting']} | {r['calls']:,} | {r['calls_avoided']:.1%} | {r['tokens']:,} | "
                    f"{r['tokens_avoided']:.1%} | {r['kappa_mean']:.3f} | {r['kappa_min']:.3f} |"
                )
        best = recommend(results[key])
        lines += [
            "",
            f"Recommended here (cheapest with every classifier's kappa >= {KAPPA_GOAL}): **{best['setting']}**: "
            f"{best['calls_avoided']:.1%} of calls and {best['tokens_avoided']:.1%} of prompt tokens avoided, "
            f"kappa mean {best['kappa_mean']:.3f} (min {best['kappa_min']:.3f}).",
        ]
        models = next((r["models"] for r in results[key] if "models" in r), {}).get(SHOWN_MODELS, {})
        if models:
            lines += ["", f"Embedding classifiers of `{SHOWN_MODELS}` (trained on the LLM's labels of the week before):", ""]
            for n, m in models.items():
                lines.append(
                    f"- {n}: {m['reason']}, threshold "
                    f"{'none reached' if m['threshold'] is None else format(m['threshold'], '.3f')}, held-out agreement "
                    f"{m['heldout_agreement']:.3f} at coverage {m['heldout_coverage']:.1%}"
                    if m["used"]
                    else f"- {n}: not used ({m['reason']})"
                )
        lines.append("")
    h = results["human"]
    c, b = h["clinc150"], h["banking77"]
    lines += [
        "## Embedding classifier against human labels",
        "",
        f"- CLINC150 (train {c['train']:,}, test {c['test_in_scope']:,} in scope + {c['test_oos']:,} out of scope): "
        f"intent accuracy {c['intent_accuracy']:.3f}, domain accuracy {c['domain_accuracy']:.3f}. At the calibrated "
        f"threshold {c['calibrated_threshold']:.3f}: {c['in_scope_coverage_at_threshold']:.1%} of in-scope test "
        f"answered at intent accuracy {c['intent_accuracy_at_threshold']:.3f}; {c['oos_abstained_at_threshold']:.1%} "
        "of out-of-scope utterances abstain (go to the LLM instead of getting a wrong intent).",
        f"- banking77 (train {b['train']:,}, test {b['test']:,}): accuracy {b['accuracy']:.3f}; at the calibrated "
        f"threshold {b['calibrated_threshold']:.3f}: coverage {b['coverage_at_threshold']:.1%}, accuracy "
        f"{b['accuracy_at_threshold']:.3f}.",
        "",
        *scaling_markdown(results),
    ]
    e = results["embedding_model"]
    lines += [
        "",
        f"Embedding model (all-MiniLM-L6-v2, CPU, this machine): load {e['load_seconds']:.1f} s, "
        f"{e['texts_per_second']:.1f} transcripts/s on conversations of the generated sample "
        f"({e['texts']} texts, up to 256 word pieces each).",
        "",
    ]
    return "\n".join(lines)


def scaling_markdown(results: dict) -> list[str]:
    lines = [
        "## Dedupe stage throughput (exact hash + LSH near-duplicates, threshold 0.95)",
        "",
        f"Measured {results['scaling_measured']}; reproduce alone with `python -m benchmarks.savings.run --scaling`.",
        "",
        "| conversations | seconds | conversations/s | exact hash s | near-duplicates s | exact representatives | after embedding |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["scaling"]:
        lines.append(
            f"| {r['conversations']:,} | {r['seconds']} | {r['conversations_per_second']:,} | "
            f"{r['exact_seconds']} | {r['near_duplicate_seconds']} | "
            f"{r['exact_representatives']:,} | {r['embedding_representatives']:,} |"
        )
    return lines


def measure_savings(sample: Dataset, real: Dataset, embedder: CachedEmbedder, labeler: str) -> dict:
    """Both datasets' savings tables, every setting through the product (``ProductRuns``) against the
    simulator over HTTP (deterministic labels from content, no latency) with ``labeler``."""
    sim = SimConfig(endpoints=[SimEndpointConfig(name="bench", model="sim", latency_ms=0.0, jitter=0.0, labeler=labeler)])
    out: dict = {"datasets": {"sample": sample.name, "real": real.name}, "labeler": labeler}
    thread = SimulatorThread(sim, embedder=embedder if labeler == "embedding" else None)
    with thread as server, tempfile.TemporaryDirectory(prefix="semtel-savings-") as root:
        calls = Calls(simulator_endpoints(server, sim), flush_rows=10_000, flush_seconds=60.0)
        for key, data in (("real", real), ("sample", sample)):
            started = time.perf_counter()
            out[key] = savings_table(ProductRuns(data, calls, embedder, Path(root) / key))
            print(f"{key}: {time.perf_counter() - started:.0f} s", flush=True)
    return out


def resavings(quick: bool, labeler: str) -> None:
    """Re-measures the savings tables only; the human-label and scaling figures stay as last measured."""
    results = json.loads((HERE / "results.json").read_text())
    load = os.getloadavg()
    start = time.perf_counter()
    results |= measure_savings(sample_dataset(), real_dataset(quick), CachedEmbedder(), labeler)
    results["savings_load_average"] = [round(x, 2) for x in (*load, *os.getloadavg())]
    results["savings_wall_seconds"] = time.perf_counter() - start
    results["savings_measured"] = f"{dt.date.today().isoformat()} on {_machine()}, mode {'quick' if quick else 'full'}"
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    plot(results, HERE / "cost_quality.png")
    (HERE / "RESULTS.md").write_text(markdown(results))
    print(markdown(results))


def rescale() -> None:
    """Re-measures the dedupe scaling only; the other figures stay as last measured."""
    results = json.loads((HERE / "results.json").read_text())
    results["scaling"] = dedupe_scaling(SCALING_SIZES)
    results["scaling_measured"] = f"{dt.date.today().isoformat()} on {_machine()}"
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report = (HERE / "RESULTS.md").read_text()
    head, _, rest = report.partition(scaling_markdown(results)[0])
    tail = rest[rest.index("\nEmbedding model (") :]
    (HERE / "RESULTS.md").write_text(head + "\n".join(scaling_markdown(results)) + "\n" + tail)
    print("\n".join(scaling_markdown(results)))


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, shared"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scaling", action="store_true", help="re-measure only the dedupe stage throughput")
    parser.add_argument("--savings", action="store_true", help="re-measure only the savings tables (with --quick: smaller)")
    parser.add_argument(
        "--labeler", choices=["embedding", "keyword"], default="embedding", help="the simulator's labeler (keyword: flattered)"
    )
    args = parser.parse_args(argv)
    if args.scaling:
        return rescale()
    if args.savings:
        return resavings(args.quick, args.labeler)
    random.seed(0)
    start = time.perf_counter()
    mode = "quick (real 300 test/600 train; CLINC150 and banking77 every 5th row)" if args.quick else "full"
    if not DATA.is_dir():
        raise SystemExit(f"real data not found at {DATA} (set SEMTEL_SHARED_DATA)")
    embedder = CachedEmbedder()
    results: dict = {"date": dt.date.today().isoformat(), "mode": mode, "machine": _machine()}
    # Model throughput measured uncached, on the sample's transcripts.
    model = embedder.model()
    sample = sample_dataset()
    texts = [render_transcript(m) for m in sample.test["messages"].to_list()]
    model.stats.texts = 0
    model.stats.seconds = 0.0
    model.embed(texts)
    results["embedding_model"] = model.stats.as_dict()
    results |= measure_savings(sample, real_dataset(args.quick), embedder, args.labeler)
    results["human"] = human_label_eval(embedder, args.quick)
    results["scaling"] = dedupe_scaling(SCALING_SIZES)
    results["scaling_measured"] = f"{results['date']} on {results['machine']}"
    results["wall_seconds"] = time.perf_counter() - start
    results["savings_measured"] = f"{results['date']} on {results['machine']}, mode {'quick' if args.quick else 'full'}"
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    plot(results, HERE / "cost_quality.png")
    (HERE / "RESULTS.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
