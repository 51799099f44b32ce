"""Real conversations from ``../shared/data`` (hh-rlhf, OpenAssistant paths, arena-hard) and the planted set.

The planted set (``planted.jsonl`` beside this file) holds the seed and, per plant, the conversation id,
message, offsets, type, format and a hash of the value: never conversation text. ``planted_conversations``
rebuilds the conversations with the same seed and checks every plant against the file.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

from benchmarks.pii.plant import Plant, plant, sha
from semtel_dagster.core.ingest.adapters import arena_answers, from_arena_hard, from_oasst, parse_hh_transcript
from semtel_dagster.core.prepare.scrub import PATTERN_KINDS

DATA = Path(os.environ.get("SEMTEL_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
PLANTED = Path(__file__).parent / "planted.jsonl"
PLANTED_NAMES = Path(__file__).parent / "planted-names.jsonl"  # person names: for the pii-ner extra
PLANTED_KINDS = [*PATTERN_KINDS, "near_miss"]


def real_conversations(data: Path = DATA) -> list[dict]:
    """Every conversation of the three sets (``conversation_id``, ``messages``), in file order."""
    out = []
    with gzip.open(data / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt") as lines:
        for i, line in enumerate(lines):
            out.append({"conversation_id": f"hh-rlhf:{i}", "messages": parse_hh_transcript(json.loads(line)["chosen"])})
    with (data / "oasst" / "en_100_tree.jsonl").open() as lines:
        for line in lines:
            out += [
                {"conversation_id": f"oasst:{c['conversation_id']}", "messages": c["messages"]}
                for c in from_oasst(json.loads(line))
            ]
    arena = data / "arena-hard"
    answers = arena_answers([json.loads(line) for line in (arena / "answers_gpt-4-0314.jsonl").open()])
    for line in (arena / "question.jsonl").open():
        c = from_arena_hard(json.loads(line), answers)
        out.append({"conversation_id": f"arena-hard:{c['conversation_id']}", "messages": c["messages"]})
    return [c for c in out if c["messages"] and all(m["content"] for m in c["messages"])]


def sample(conversations: list[dict], n: int, seed: int) -> list[dict]:
    return random.Random(seed).sample(conversations, n)


def write_planted_set(
    n: int, seed: int, kinds: list[str] = PLANTED_KINDS, path: Path = PLANTED, data: Path = DATA
) -> list[Plant]:
    _, plants = plant(sample(real_conversations(data), n, seed), kinds, seed)
    header = {"seed": seed, "n": n, "kinds": kinds, "sources": ["hh-rlhf", "oasst", "arena-hard"]}
    path.write_text("".join(json.dumps(row) + "\n" for row in [header, *(p.as_dict() for p in plants)]))
    return plants


def planted_conversations(path: Path = PLANTED, data: Path = DATA) -> tuple[list[dict], list[dict], list[Plant]]:
    """(the sampled real conversations, the same with the plants, the plants), checked against ``path``."""
    header, *rows = [json.loads(line) for line in path.read_text().splitlines()]
    originals = sample(real_conversations(data), header["n"], header["seed"])
    planted, plants = plant(originals, header["kinds"], header["seed"])
    if [p.as_dict() for p in plants] != rows:
        raise SystemExit(f"the data in {data} does not give the planted set of {path.name}: regenerate it (--write-set)")
    for conversation, p in zip(planted, plants):
        assert sha(conversation["messages"][p.message]["content"][p.start : p.end]) == p.value_sha
    return originals, planted, plants
