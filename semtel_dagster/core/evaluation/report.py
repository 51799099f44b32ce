"""The evaluation report: markdown tables plus confusion-matrix pictures (PNG, matplotlib)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from semtel_dagster.extras import require


def confusion_png(path: Path, matrix: list[list[int]], labels: list[str], xlabel: str, ylabel: str, title: str) -> None:
    used = [i for i in range(len(labels)) if any(matrix[i]) or any(row[i] for row in matrix)] or list(range(len(labels)))
    sub = [[matrix[i][j] for j in used] for i in used]
    names = [labels[i] for i in used]
    size = max(4.0, 0.42 * len(names) + 2.0)
    # imported here, not at import: the code location loads this module and never plots
    require("matplotlib", "eval", "the evaluation pictures").use("Agg")  # files only, no display
    plt = require("matplotlib.pyplot", "eval", "the evaluation pictures")
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(sub, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    peak = max((v for row in sub for v in row), default=0)
    for i, row in enumerate(sub):
        for j, value in enumerate(row):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color="white" if value > peak / 2 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"


def write_report(out_dir: Path, result: dict) -> Path:
    """``report.md``, ``result.json`` and the PNGs under ``out_dir``; returns the report path.

    ``result``: {"runs": [{...}, ...] (the first is the reference), "sample": {...}, "comparison": {run name:
    {classifier: {...}}}, "golden": {set name: {run name: {classifier: {...}}}}} as ``experiment.evaluate``
    builds it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = result["runs"]
    a = runs[0]
    lines = [
        f"# Classifier evaluation: {', '.join(run['name'] for run in runs[1:])} against {a['name']}",
        "",
        f"Sample: {result['sample']['description']} ({result['sample']['conversations']} conversations, seed {result['sample']['seed']}).",
        "",
        "| configuration | strategy | prompts | endpoints | calls/conv | prompt tok/conv | completion tok/conv | parse-failure rate | reject share | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        c = run["costs"]
        lines.append(
            f"| {run['name']} | {run['strategy']} | {run['prompts']} | {run['endpoints']} | {c['calls_per_conversation']:.2f} | "
            f"{c['prompt_tokens_per_conversation']:.0f} | {c['completion_tokens_per_conversation']:.1f} | "
            f"{c['parse_failure_rate']:.2%} | {c['reject_share']:.2%} | {c['wall_seconds']:.1f} |"
        )
    for b_name, comparison in result["comparison"].items():
        lines += [
            "",
            f"## Agreement of {b_name} with {a['name']}",
            "",
            "| classifier | compared | raw agreement | Cohen's kappa | JS divergence (bits) | confusion |",
            "|---|---|---|---|---|---|",
        ]
        for name, cmp in comparison.items():
            png = f"confusion-{_slug(name)}-{_slug(a['name'])}-vs-{_slug(b_name)}.png"
            confusion_png(
                out_dir / png, cmp["confusion"], cmp["labels"], b_name, a["name"], f"{name}: {a['name']} (rows) vs {b_name}"
            )
            lines.append(
                f"| {name} | {cmp['compared']} | {_f(cmp['raw_agreement'])} | {_f(cmp['cohen_kappa'])} | {_f(cmp['js_divergence'])} | [png]({png}) |"
            )
    for set_name, by_config in result["golden"].items():
        info = result["golden_info"][set_name]
        lines += ["", f"## Golden set `{set_name}`", "", info["description"], ""]
        if info["left_out"]:
            lines += [
                f"Left out (no counterpart in our labels): {', '.join(f'{k} ({v})' for k, v in info['left_out'].items())}.",
                "",
            ]
        lines += ["| configuration | classifier | items | accuracy | macro-F1 | confusion |", "|---|---|---|---|---|---|"]
        for config_name, scores in by_config.items():
            for name, score in scores.items():
                png = f"golden-{_slug(set_name)}-{_slug(config_name)}-{_slug(name)}.png"
                confusion_png(
                    out_dir / png,
                    score["confusion"],
                    score["labels"],
                    "predicted",
                    "human label",
                    f"{set_name}: {name} ({config_name})",
                )
                lines.append(
                    f"| {config_name} | {name} | {score['items']} | {_f(score['accuracy'])} | {_f(score['macro_f1'])} | [png]({png}) |"
                )
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return report
