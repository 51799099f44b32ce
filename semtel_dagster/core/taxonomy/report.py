"""The discovery report: how the taxonomy evolved, what the draft does on held-out conversations,
what it cost, and room for the reviewer's decisions (the draft is a proposal, not a classifier yet)."""

from __future__ import annotations

from pathlib import Path

from semtel_dagster.core.taxonomy.discover import Discovery
from semtel_dagster.core.taxonomy.labels import OTHER, with_other


def _names(items: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{n}`" for n in items) or "-"


def _merge(merge: dict) -> str:
    return f"{_names(merge['from'])} -> `{merge['into']}`"


def _split(split: dict) -> str:
    return f"`{split['from']}` -> {_names(split['into'])}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def report_markdown(result: Discovery) -> str:
    """The report as markdown (pure: the same discovery gives the same text)."""
    config, evolution, held = result.config, result.evolution, result.holdout
    lines = [
        f"# Taxonomy draft `{config.name}`",
        "",
        f"- input: `{result.input}`; method: **{config.method}**; labels asked for: {config.labels} (+ `{OTHER}`)",
        f"- sample: {sum(result.strata.values())} conversations over {len(result.strata)} week x length strata; "
        f"{result.summaries} summaries",
        f"- rounds: {len(evolution.rounds)}; stopped: {evolution.stopped or '-'}",
        f"- draft: `{result.draft}`" if result.draft else "- draft: none written (no labels were discovered)",
    ]
    if result.budget_reached:
        lines.append("- **budget reached**: the labels are those of the last round answered; rerun with more budget to go on")
    lines += ["", "## Strata sampled", "", "| week / length | conversations |", "|---|---:|"]
    lines += [f"| {stratum} | {count} |" for stratum, count in result.strata.items()]
    lines += [
        "",
        "## How the taxonomy evolved",
        "",
        "| round | step | summaries | labels | added | removed | note |",
        "|---:|---|---:|---:|---|---|---|",
    ]
    lines += [
        f"| {r.number} | {r.task} | {r.summaries} | {len(r.names)} | {_names(r.added)} | {_names(r.removed)} | {r.note} |"
        for r in evolution.rounds
    ]
    grown, final = {label.name for label in evolution.before_review}, {label.name for label in evolution.labels}
    lines += [
        "",
        "## Review: merged, split, renamed",
        "",
        f"- merged: {'; '.join(_merge(m) for m in evolution.merged) or 'none'}",
        f"- split: {'; '.join(_split(s) for s in evolution.split) or 'none'}",
        f"- dropped by the review: {_names(sorted(grown - final))}",
        f"- new in the review: {_names(sorted(final - grown))}",
    ]
    if evolution.review_note:
        lines.append(f"- note: {evolution.review_note}")
    shares = held.get("shares", {})
    lines += ["", "## Labels and their share of held-out conversations", ""]
    if held:
        lines.append(
            f"{held['conversations']} held-out conversations (not in the sample) labelled with the draft through the "
            f"pipeline; `{OTHER}`: **{_share(held['other_share'])}**; rejects: {held['rejects']}."
        )
    else:
        lines.append("Not measured (no held-out conversations, or the budget was reached).")
    lines += ["", "| label | share | definition | example |", "|---|---:|---|---|"]
    lines += [
        f"| `{label.name}` | {_share(shares.get(label.name)) if held else '-'} | {label.definition} | {label.example} |"
        for label in with_other(evolution.labels)
    ]
    totals = result.totals
    lines += [
        "",
        "## Cost",
        "",
        f"- discovery: {totals.get('ok', 0)} answered calls ({totals.get('requests', 0)} HTTP requests), "
        f"{totals.get('prompt_tokens', 0):,} prompt + {totals.get('completion_tokens', 0):,} completion tokens; "
        f"{result.resumed} answers resumed from an earlier run",
    ]
    if held:
        lines.append(
            f"- held-out labelling: {held['calls']} calls, {held['prompt_tokens']:,} prompt + "
            f"{held['completion_tokens']:,} completion tokens"
        )
    lines += [f"- endpoint `{name}`: {e.get('ok', 0)} answers" for name, e in sorted(totals.get("endpoints", {}).items())]
    lines += [
        "",
        "## Reviewer notes",
        "",
        "Decide per label before adding the draft to `prompts/`: keep, rename, merge with, split, drop.",
        "",
        "- reviewer:",
        "- date:",
        "- overall decision (accept / revise / reject):",
        "",
        "| label | decision | notes |",
        "|---|---|---|",
    ]
    lines += [f"| `{label.name}` | | |" for label in with_other(evolution.labels)]
    return "\n".join(lines) + "\n"


def write_report(path: Path, result: Discovery) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_markdown(result), encoding="utf-8")
    return path
