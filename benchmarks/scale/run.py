"""Ingest, truncate and exact dedupe at scale on the Polars engine, before and after, in one run.

    python benchmarks/scale/run.py --n 100000 --weeks 3      # writes RESULTS.json beside this file

The landing folder holds ``--weeks`` weeks of ``--n`` generated conversations each (one file per
week, as producers that land daily or weekly files do); the last week is measured. Ingest: every file
parsed (no index) against the landing index (built by an earlier week's run, timed separately). Exact
dedupe: hashing row by row (``map_elements(text_hash)``, the previous implementation) against the
vectorized ``cluster_exact``; both must give identical clusters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import tempfile
import time
from functools import partial
from pathlib import Path

import polars as pl

from semtel_dagster.core.ingest.index import INDEX_TABLE
from semtel_dagster.core.ingest.landing import read_landing
from semtel_dagster.core.lake import delta
from semtel_dagster.core.prepare.dedupe import cluster_exact, clusters_by_hash, text_hash
from semtel_dagster.core.prepare.truncate import TruncationConfig, truncate_conversations
from semtel_dagster.engines.polars_engine import PolarsEngine
from semtel_dagster.sim.sample import generate_week

HERE = Path(__file__).parent
LAST_WEEK = dt.date(2026, 11, 16)


def row_by_row_clusters(truncated: pl.DataFrame) -> pl.DataFrame:
    """Exact clusters as computed before vectorizing: one Python call per row."""
    hashed = truncated.select(
        "conversation_id", "week_start", pl.col("transcript").map_elements(text_hash, return_dtype=pl.String).alias("text_hash")
    )
    return clusters_by_hash(hashed)


def timed(step):
    started = time.perf_counter()
    value = step()
    return value, round(time.perf_counter() - started, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000, help="conversations per week")
    parser.add_argument("--weeks", type=int, default=3, help="weeks in the landing folder")
    args = parser.parse_args()
    weeks = [LAST_WEEK - dt.timedelta(days=7 * k) for k in reversed(range(args.weeks))]
    with tempfile.TemporaryDirectory(prefix="semtel-scale-") as tmp:
        landing, lake = Path(tmp) / "landing", Path(tmp) / "lake"
        landing.mkdir()
        started = time.perf_counter()
        for week in weeks:
            records = generate_week(week, n=args.n, seed=1).records
            (landing / f"{week}.jsonl").write_bytes(b"".join(r + b"\n" for r in records))
        generated = round(time.perf_counter() - started, 1)
        engine = PolarsEngine(str(lake))
        index = delta.table_uri(str(lake), INDEX_TABLE)
        full, full_s = timed(lambda: engine.ingest(LAST_WEEK, str(landing), partial(read_landing, week_start=LAST_WEEK)))
        _, build_s = timed(lambda: read_landing(landing, weeks[0], index_uri=index))  # an earlier week's run
        read = partial(read_landing, week_start=LAST_WEEK, index_uri=index)
        indexed, indexed_s = timed(lambda: engine.ingest(LAST_WEEK, str(landing), read))
        assert indexed[0].frame.equals(full[0].frame) and indexed[1].rows == full[1].rows
        config = partial(truncate_conversations, config=TruncationConfig())
        truncated, truncate_s = timed(lambda: engine.map_week("conversations", "conversations_truncated", LAST_WEEK, config))
        before, before_s = timed(lambda: row_by_row_clusters(truncated.frame))
        after, after_s = timed(lambda: cluster_exact(truncated.frame))
        assert before.sort("conversation_id").equals(after.sort("conversation_id"))
        _, written_s = timed(lambda: engine.cluster_exact(LAST_WEEK))
    conversations = full[0].rows
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{round(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30)} GiB, shared with other work",
        "conversations_per_week": args.n,
        "weeks_in_landing": args.weeks,
        "generate_s": generated,
        "week_conversations": conversations,
        "ingest": {
            "every_file_s": full_s,
            "indexed_s": indexed_s,
            "speedup": round(full_s / indexed_s, 2),
            "files_read": {"every_file": full[2], "indexed": indexed[2]},
            "index_build_s": build_s,
        },
        "truncate_s": truncate_s,
        "dedupe_hashing": {"row_by_row_s": before_s, "vectorized_s": after_s, "speedup": round(before_s / after_s, 2)},
        "dedupe_stage_with_write_s": written_s,
        "ingest_truncate_dedupe_s": {
            "before": round(full_s + truncate_s + before_s, 1),
            "after": round(indexed_s + truncate_s + after_s, 1),
        },
        "conversations_per_s_after": {
            "ingest": round(conversations / indexed_s),
            "truncate": round(conversations / truncate_s),
            "dedupe": round(conversations / after_s),
        },
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    (HERE / "RESULTS.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
