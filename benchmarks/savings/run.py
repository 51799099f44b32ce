"""Fewer calls, fewer tokens, same labels: measured cost-quality of every saving.

    python -m benchmarks.savings.run            # everything (~15 min on 2 cores; embeddings cached)
    python -m benchmarks.savings.run --quick    # smaller real/human sets, for a smoke run
    python -m benchmarks.savings.run --scaling  # only the dedupe stage throughput (~6 min)

Labels come from the simulator over HTTP (deterministic from content). The no-savings baseline sends
every conversation, head_tail at 3000 tokens, no compression. Each setting reports the share of LLM
calls and prompt tokens it avoids and Cohen's kappa of its labels against the baseline, per
classifier (mean and min). Writes results.json, RESULTS.md and cost_quality.png next to this file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from openai import OpenAI
from sklearn.metrics import cohen_kappa_score
from tqdm.auto import tqdm

from semtel_dagster.core.classify.embedding_classifier import train
from semtel_dagster.core.classify.prompts import load_classifiers
from semtel_dagster.core.ingest.adapters import AdapterOptions
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.prepare.dedupe import cluster_embedding, cluster_exact, near_duplicates
from semtel_dagster.core.prepare.embeddings import LocalEmbedder
from semtel_dagster.core.prepare.tokens import count_tokens
from semtel_dagster.core.prepare.truncate import TruncationConfig, render_transcript, truncate_messages
from semtel_dagster.sim import SimConfig, SimEndpointConfig, SimulatorThread
from semtel_dagster.sim.embeddings import hashed_embedding
from semtel_dagster.sim.sample import generate_week

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SEMTEL_SHARED_DATA", HERE.parents[2] / "shared" / "data"))
CACHE = HERE.parents[1] / ".semtel" / "bench-cache"
WEEK = dt.date(2026, 11, 16)
BASELINE = "head_tail:3000"
PER_CLASSIFIER = {"topic": "head:256", "intent": "head:256", "user_expertise": "turns:512", "satisfaction": "tail:256"}
PROMPT_FILE_BUDGETS = "prompt-file"  # each classifier's metadata.transcript_budget, as the pipeline applies it
SCALING_SIZES = [10_000, 30_000, 100_000]
KAPPA_GOAL = 0.9  # every classifier's kappa against the baseline, not only the mean


# ----------------------------------------------------------------------------- oracles


class SimLabels:
    """LLM labels over HTTP from the simulator, cached per (classifier, transcript): it is deterministic."""

    def __init__(self, base_url: str, classifiers: dict) -> None:
        self.client = OpenAI(base_url=base_url, api_key="sim", max_retries=5)
        self.classifiers = classifiers
        self.cache: dict[tuple[str, str], str] = {}

    def _ask(self, name: str, transcript: str) -> str:
        c = self.classifiers[name]
        r = self.client.chat.completions.create(
            model="sim", messages=c.messages(transcript), response_format=c.response_format(), max_tokens=c.max_tokens
        )
        return json.loads(r.choices[0].message.content)["label"]

    def labels(self, name: str, transcripts: list[str]) -> list[str]:
        todo = sorted({t for t in transcripts if (name, t) not in self.cache})
        if todo:
            with ThreadPoolExecutor(16) as pool:
                answers = list(
                    tqdm(pool.map(lambda t: self._ask(name, t), todo), total=len(todo), desc=f"sim labels {name}", leave=False)
                )
            self.cache.update({(name, t): a for t, a in zip(todo, answers)})
        return [self.cache[(name, t)] for t in transcripts]


class CachedEmbedder:
    """The local model with an on-disk cache (text hash -> vector), so reruns skip the model."""

    def __init__(self) -> None:
        self._model: LocalEmbedder | None = None
        CACHE.mkdir(parents=True, exist_ok=True)
        self.path = CACHE / "minilm.npz"
        self.store: dict[str, np.ndarray] = dict(np.load(self.path)) if self.path.exists() else {}
        self.seconds = 0.0
        self.embedded = 0

    def model(self) -> LocalEmbedder:
        if self._model is None:
            self._model = LocalEmbedder()
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.store}.items())
        if missing:
            start = time.perf_counter()
            vectors = self.model().embed([t for _, t in missing])
            self.seconds += time.perf_counter() - start
            self.embedded += len(missing)
            self.store.update({k: v for (k, _), v in zip(missing, vectors)})
            np.savez(self.path, **self.store)
        return np.stack([self.store[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)


# ----------------------------------------------------------------------------- datasets


@dataclass
class Dataset:
    name: str
    test: pl.DataFrame  # conversation_id, week_start, messages
    train: pl.DataFrame  # earlier weeks: the embedding classifier learns the LLM's labels here


def sample_dataset() -> Dataset:
    def week(w: dt.date) -> pl.DataFrame:
        import tempfile

        folder = Path(tempfile.mkdtemp())
        (folder / "w.jsonl").write_bytes(b"\n".join(generate_week(w, 400).records))
        return read_landing(folder, w).conversations

    earlier = pl.concat([week(WEEK - dt.timedelta(weeks=k)) for k in (1, 2, 3)])
    return Dataset("generated sample (400 conversations)", week(WEEK), earlier)


def real_dataset(quick: bool) -> Dataset:
    """hh-rlhf (chosen), OpenAssistant root-to-leaf paths and arena-hard question+answer, shuffled."""
    parts = [
        read_landing(DATA / "hh-rlhf", WEEK, input_format="hh_rlhf", default_week=WEEK).conversations.head(900),
        read_landing(
            DATA / "oasst", WEEK, input_format="oasst", adapter_options=AdapterOptions(oasst_mode="path"), default_week=WEEK
        ).conversations,
        read_landing(DATA / "arena-hard", WEEK, input_format="arena_hard", default_week=WEEK).conversations,
    ]
    frame = pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=7)
    n_test = 300 if quick else 600
    n_train = 600 if quick else 1200
    return Dataset(
        f"real: hh-rlhf + oasst + arena-hard ({n_test} test, {n_train} train)", frame.head(n_test), frame.slice(n_test, n_train)
    )


# ----------------------------------------------------------------------------- evaluation


def base_tokens(classifier) -> int:
    return sum(count_tokens(m["content"]) + 4 for m in classifier.messages(""))


class Evaluator:
    def __init__(self, data: Dataset, oracle: SimLabels, embedder: CachedEmbedder) -> None:
        self.data, self.oracle, self.embedder = data, oracle, embedder
        self.names = list(oracle.classifiers)
        self.base = {n: base_tokens(c) for n, c in oracle.classifiers.items()}
        self.ids = data.test["conversation_id"].to_list()
        self.messages = dict(zip(self.ids, data.test["messages"].to_list()))
        self._cut: dict[tuple[str, str], tuple[str, int]] = {}
        self.baseline = {n: self.labels_for(n, self.ids, BASELINE) for n in self.names}
        truncated = self.truncated(BASELINE)
        self.exact = cluster_exact(truncated)
        self.vectors = dict(zip(self.ids, embedder.embed(truncated["transcript"].to_list())))
        self.models = {}

    def cut(self, cid: str, spec: str, classifier: str | None = None) -> tuple[str, int]:
        """The transcript a classifier reads under ``spec``; ``PROMPT_FILE_BUDGETS`` is the shipped pipeline:
        the stage's head_tail:3000 cut, then the classifier's own ``transcript_budget`` from its prompt file."""
        key = (cid, spec if spec != PROMPT_FILE_BUDGETS else f"{spec}:{classifier}")
        if key not in self._cut:
            if spec == PROMPT_FILE_BUDGETS:
                self._cut[key] = self.oracle.classifiers[classifier].fit(*self.cut(cid, BASELINE))
            else:
                text, _, _, after, _, _ = truncate_messages(self.messages[cid], TruncationConfig.parse(spec))
                self._cut[key] = (text, after)
        return self._cut[key]

    def truncated(self, spec: str) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "conversation_id": self.ids,
                "week_start": [WEEK] * len(self.ids),
                "transcript": [self.cut(c, spec)[0] for c in self.ids],
            }
        )

    def labels_for(self, name: str, ids: list[str], spec: str) -> list[str]:
        return self.oracle.labels(name, [self.cut(c, spec, name)[0] for c in ids])

    def clusters(self, threshold: float | None) -> dict[str, str]:
        if threshold is None:
            frame = self.exact
        else:
            frame = cluster_embedding(self.exact, self.truncated(BASELINE), lambda texts: self.embedder.embed(texts), threshold)
        return dict(zip(frame["conversation_id"], frame["representative_id"]))

    def train_models(self, target: float) -> None:
        train_frame = self.data.train
        ids = train_frame["conversation_id"].to_list()
        msgs = dict(zip(ids, train_frame["messages"].to_list()))
        transcripts = [truncate_messages(msgs[c], TruncationConfig.parse(BASELINE))[0] for c in ids]
        vectors = self.embedder.embed(transcripts)
        for name in self.names:
            labels = self.oracle.labels(name, transcripts)
            if len(set(labels)) < 2:
                continue
            self.models[name] = train(
                name,
                vectors,
                labels,
                prompt_version=self.oracle.classifiers[name].version,
                llm_model="sim",
                embedder="all-MiniLM-L6-v2",
                target_agreement=target,
            )

    def run(
        self,
        label: str,
        *,
        dedupe: str = "none",
        threshold: float | None = None,
        budgets: dict[str, str] | str = BASELINE,
        confidence: float | str | None = None,
    ) -> dict:
        reps = {c: c for c in self.ids} if dedupe == "none" else self.clusters(threshold)
        rep_ids = sorted(set(reps.values()))
        calls = tokens = 0
        kappas = {}
        for name in self.names:
            spec = budgets if isinstance(budgets, str) else budgets.get(name, BASELINE)
            rep_label: dict[str, str] = {}
            to_llm = rep_ids
            model = self.models.get(name)
            if confidence is not None and model is not None:
                cut = model.card.threshold if confidence == "calibrated" else float(confidence)
                predicted, conf = model.predict(np.stack([self.vectors[r] for r in rep_ids]))
                rep_label = {r: p for r, p, c in zip(rep_ids, predicted, conf) if c >= cut}
                to_llm = [r for r in rep_ids if r not in rep_label]
            rep_label.update(zip(to_llm, self.labels_for(name, to_llm, spec)))
            calls += len(to_llm)
            tokens += sum(self.base[name] + self.cut(r, spec, name)[1] for r in to_llm)
            labels = [rep_label[reps[c]] for c in self.ids]
            kappas[name] = _kappa(self.baseline[name], labels)
        return {
            "setting": label,
            "calls": calls,
            "tokens": tokens,
            "kappa_mean": float(np.mean(list(kappas.values()))),
            "kappa_min": float(min(kappas.values())),
            "kappa": kappas,
        }


def _kappa(a: list[str], b: list[str]) -> float:
    if a == b:
        return 1.0
    value = cohen_kappa_score(a, b)
    return 0.0 if np.isnan(value) else float(value)


def savings_table(ev: Evaluator) -> list[dict]:
    ev.train_models(target=0.95)
    rows = [ev.run("baseline (no savings)"), ev.run("exact dedupe", dedupe="exact")]
    rows += [ev.run(f"embedding dedupe @{t}", dedupe="embedding", threshold=t) for t in (0.98, 0.95, 0.92, 0.9, 0.85)]
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
        rows.append(ev.run(f"truncate {spec}", budgets=spec))
    rows.append(ev.run("per-classifier budgets " + json.dumps(PER_CLASSIFIER), budgets=PER_CLASSIFIER))
    for c in (0.99, 0.95, 0.9, 0.8, 0.7, "calibrated"):
        rows.append(ev.run(f"embedding classifier conf>={c}", confidence=c))
    rows.append(ev.run("prompt-file budgets (shipped)", budgets=PROMPT_FILE_BUDGETS))
    per_clf_compressed = {k: v + "+compress" for k, v in PER_CLASSIFIER.items()}
    rows.append(ev.run("exact + per-classifier budgets + compression", dedupe="exact", budgets=per_clf_compressed))
    rows.append(
        ev.run(
            "exact + emb@0.95 + per-classifier budgets + compression + classifier calibrated",
            dedupe="embedding",
            threshold=0.95,
            budgets=per_clf_compressed,
            confidence="calibrated",
        )
    )
    for dedupe, threshold, name in (
        ("exact", None, "exact"),
        ("embedding", 0.95, "exact + emb@0.95"),
        ("embedding", 0.92, "exact + emb@0.92"),
    ):
        rows.append(
            ev.run(
                f"{name} + prompt-file budgets + classifier calibrated",
                dedupe=dedupe,
                threshold=threshold,
                budgets=PROMPT_FILE_BUDGETS,
                confidence="calibrated",
            )
        )
    rows.append(
        ev.run(
            "exact + emb@0.95 + head_tail:1024 + classifier calibrated",
            dedupe="embedding",
            threshold=0.95,
            budgets="head_tail:1024",
            confidence="calibrated",
        )
    )
    rows.append(
        ev.run(
            "exact + emb@0.95 + prompt-file budgets + classifier conf>=0.9",
            dedupe="embedding",
            threshold=0.95,
            budgets=PROMPT_FILE_BUDGETS,
            confidence=0.9,
        )
    )
    base = rows[0]
    for row in rows:
        row["calls_avoided"] = 1 - row["calls"] / base["calls"]
        row["tokens_avoided"] = 1 - row["tokens"] / base["tokens"]
    rows.append({"models": {n: m.card.__dict__ for n, m in ev.models.items()}})
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
    for ax, key in zip(axes, ("sample", "real")):
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
    fig.suptitle("semtel savings: cost vs label agreement (simulator labels over HTTP)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def markdown(results: dict) -> str:
    lines = [
        "# Savings benchmark: fewer calls, fewer tokens, same labels",
        "",
        f"Machine: {results['machine']}. Date: {results['date']}. Mode: {results.get('mode', 'full')}. "
        f"Reproduce: `python -m benchmarks.savings.run{' --quick' if results.get('mode', '').startswith('quick') else ''}`"
        f" ({results['wall_seconds']:.0f} s wall, embeddings cached under .semtel/bench-cache).",
        "",
        "Labels: the simulator over HTTP (deterministic from content; a stand-in for an LLM). Baseline: every "
        "conversation sent, head_tail at 3000 tokens, no compression. kappa: Cohen's kappa of each setting's "
        "labels against the baseline's, per classifier (all six prompts in prompts/); the goal is every classifier at kappa >= 0.9.",
        "",
        "![cost-quality curve](cost_quality.png)",
        "",
    ]
    for key in ("sample", "real"):
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
        models = next((r["models"] for r in results[key] if "models" in r), {})
        if models:
            lines += [
                "",
                "Embedding classifiers (trained on the LLM's labels of earlier weeks, threshold for 95% held-out agreement):",
                "",
            ]
            for n, m in models.items():
                lines.append(
                    f"- {n}: trained on {m['trained_on']}, threshold {m['threshold']:.3f}, held-out "
                    f"agreement {m['heldout_agreement']:.3f} at coverage {m['heldout_coverage']:.1%}"
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
    args = parser.parse_args(argv)
    if args.scaling:
        return rescale()
    random.seed(0)
    start = time.perf_counter()
    mode = "quick (real 300 test/600 train; CLINC150 and banking77 every 5th row)" if args.quick else "full"
    if not DATA.is_dir():
        raise SystemExit(f"real data not found at {DATA} (set SEMTEL_SHARED_DATA)")
    embedder = CachedEmbedder()
    classifiers = load_classifiers()
    results: dict = {"date": dt.date.today().isoformat(), "mode": mode, "machine": _machine()}
    # Model throughput measured uncached, on the sample's transcripts.
    model = embedder.model()
    sample = sample_dataset()
    texts = [render_transcript(m) for m in sample.test["messages"].to_list()]
    model.stats.texts = 0
    model.stats.seconds = 0.0
    model.embed(texts)
    results["embedding_model"] = model.stats.as_dict()
    sim = SimConfig(endpoints=[SimEndpointConfig(name="bench", model="sim", latency_ms=0.0, jitter=0.0)])
    with SimulatorThread(sim) as server:
        oracle = SimLabels(server.base_url(), classifiers)
        real = real_dataset(args.quick)
        results["datasets"] = {"sample": sample.name, "real": real.name}
        for key, data in (("sample", sample), ("real", real)):
            results[key] = savings_table(Evaluator(data, oracle, embedder))
    results["human"] = human_label_eval(embedder, args.quick)
    results["scaling"] = dedupe_scaling(SCALING_SIZES)
    results["scaling_measured"] = f"{results['date']} on {results['machine']}"
    results["wall_seconds"] = time.perf_counter() - start
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    plot(results, HERE / "cost_quality.png")
    (HERE / "RESULTS.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
