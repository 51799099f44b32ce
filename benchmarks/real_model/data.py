"""Real conversations for runs against the real server: short OpenAssistant paths from ``../shared/data``.

Short ones (all turns within a few hundred characters, about 100 SmolLM2 tokens of transcript) keep a
run of a serial 135M-parameter server within minutes on two cores.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from semtel_dagster.core.ingest.adapters import from_oasst

DATA = Path(os.environ.get("SEMTEL_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
OASST = DATA / "oasst" / "en_100_tree.jsonl"
MIN_CHARS, MAX_CHARS = 150, 600
WEEK = dt.date(2026, 11, 16)  # the tree file has no timestamps: conversations are replayed into this week


def real_conversations(n: int, skip: int = 0, week: dt.date = WEEK) -> list[dict]:
    """``n`` OpenAssistant conversations in canonical form: the first short path of each tree, in file
    order, after ``skip`` trees, started a minute apart from the Monday of ``week``."""
    picked: list[dict] = []
    with OASST.open() as lines:
        for line in lines:
            short = [
                c for c in from_oasst(json.loads(line)) if MIN_CHARS <= sum(len(m["content"]) for m in c["messages"]) <= MAX_CHARS
            ]
            if short:
                picked.append({"conversation_id": short[0]["conversation_id"], "messages": short[0]["messages"]})
    monday = dt.datetime.combine(week, dt.time(), tzinfo=dt.UTC)
    return [
        {**conversation, "started_at": (monday + dt.timedelta(minutes=i)).isoformat().replace("+00:00", "Z")}
        for i, conversation in enumerate(picked[skip : skip + n])
    ]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
