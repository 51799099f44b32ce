"""Ingest, truncate and exact dedupe at scale on the Polars engine, with baselines and bounds in one run.

    python benchmarks/scale/run.py --n 100000 --weeks 3      # writes RESULTS.json beside this file
    python benchmarks/scale/run.py --n 1000000 --weeks 3 --no-baselines --out RESULTS-1m.json

The landing folder holds ``--weeks`` weeks of ``--n`` generated conversations each (one file per
week, as producers that land daily or weekly files do), written by the streaming sample writer in
one process per core; the last week is measured. Each stage is the product's with default settings
(read the week from the lake, compute, replace the week): ingest streamed through the landing index,
``Pipeline.truncate`` (PII scrubbed, then head_tail:3000), ``Pipeline.dedupe`` (exact). Baselines (``--no-baselines`` skips them, they dominate at 1M):
ingest parsing every file against the landing index (built by an earlier week's run, timed
separately), and parsing in this process against parse worker processes (both through the index); exact-dedupe hashing row by row (``map_elements(text_hash)``) against the vectorized
``cluster_exact``; truncation one conversation at a time (``truncate_messages``) against the week at
once, on an even sample of the week. Beside truncate: the tokenizer's own bound, tiktoken alone
encoding the week's transcripts on every core (MB/s on the same even sample, and the seconds that
rate implies for the whole week's text), and the same for the counter the stage uses (the bpe crate,
a process per core). Peak RSS is this process's, read after each stage, and the
process tree's (with ingest's parse workers) sampled during each stage; the bound and the baselines
run after the stages' figures are taken.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import polars as pl

from semtel_dagster.core.ingest.index import INDEX_TABLE
from semtel_dagster.core.ingest.landing import stream_landing
from semtel_dagster.core.lake import delta
from semtel_dagster.core.lake.streams import CORES, process_pool
from semtel_dagster.core.prepare.dedupe import cluster_exact, clusters_by_hash, text_hash
from semtel_dagster.core.prepare.scrub import scrub_messages
from semtel_dagster.core.prepare.tokens import count_tokens, encoding
from semtel_dagster.core.prepare.truncate import TruncationConfig, render_transcripts, truncate_conversations, truncate_messages
from semtel_dagster.engines.pipeline import Pipeline
from semtel_dagster.engines.polars_engine import PolarsEngine
from semtel_dagster.resources import PipelineSettings
from semtel_dagster.sim.sample import write_week

HERE = Path(__file__).parent
LAST_WEEK = dt.date(2026, 11, 16)
SAMPLE_ROWS = 20_000  # conversations of the even sample the tokenizer bound and the truncate baseline read


def row_by_row_clusters(truncated: pl.DataFrame) -> pl.DataFrame:
    """Exact clusters as computed before vectorizing: one Python call per row."""
    hashed = truncated.select(
        "conversation_id", "week_start", pl.col("transcript").map_elements(text_hash, return_dtype=pl.String).alias("text_hash")
    )
    return clusters_by_hash(hashed)


def hashing_baseline(truncated: pl.DataFrame) -> dict:
    """Exact-dedupe hashing row by row and vectorized, on the same week; both give the same clusters."""
    before, before_s = timed(lambda: row_by_row_clusters(truncated))
    after, after_s = timed(lambda: cluster_exact(truncated))
    assert before.sort("conversation_id").equals(after.sort("conversation_id"))
    return {"row_by_row_hashing_s": before_s, "vectorized_hashing_s": after_s, "hashing_speedup": round(before_s / after_s, 2)}


def week_digest(engine: PolarsEngine) -> int:
    """The committed week's rows, order aside: two ingests of the same week compare equal."""
    return engine.read("conversations", LAST_WEEK).hash_rows().sum()


def timed(step):
    started = time.perf_counter()
    value = step()
    return value, round(time.perf_counter() - started, 2)


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


class TreeMemory:
    """Peak resident memory of this process and its children (ingest's parse workers) together, sampled
    from /proc every 0.2 s: what the machine must hold, which ``ru_maxrss`` (one process) does not say."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.now())

    @staticmethod
    def now() -> int:
        me, total = os.getpid(), 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(entry) == me or int(fields[1]) == me:  # this process or a direct child
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return total

    def take_gb(self) -> float:
        """The peak since the last take, in GB; sampling starts over."""
        peak, self.peak = max(self.peak, self.now()), 0
        return round(peak / 2**30, 2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def generate(landing: Path, truth: Path, weeks: list[dt.date], n: int) -> float:
    """The landing files, one process per core (each streams its week: memory of a few conversations)."""
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(CORES, len(weeks))) as pool:
        list(pool.map(partial(write_week, landing, truth, n=n, seed=1), weeks))
    return round(time.perf_counter() - started, 1)


def even_sample(conversations: pl.DataFrame) -> pl.DataFrame:
    return conversations.gather_every(max(1, conversations.height // SAMPLE_ROWS))


def week_text_mb(conversations: pl.DataFrame) -> float:
    """UTF-8 megabytes of the week's transcripts before truncation: what truncate must encode."""
    chunks = conversations.get_column("messages").to_frame().iter_slices(50_000)
    return sum(render_transcripts(chunk.to_series()).str.len_bytes().sum() for chunk in chunks) / 1e6


def tokenizer_bound(sample: pl.DataFrame, week_mb: float) -> dict:
    """tiktoken alone on the sample's transcripts, on every core: MB/s and the seconds it implies for the week."""
    texts = render_transcripts(sample.get_column("messages")).to_list()
    enc = encoding()
    enc.encode_ordinary("warm up")

    def encode(block: list[str]) -> int:
        return sum(enc.encode_to_numpy(text, disallowed_special=()).size for text in block)

    blocks = [texts[start : start + 64] for start in range(0, len(texts), 64)]
    with ThreadPoolExecutor(max_workers=CORES) as pool:
        tokens, seconds = timed(lambda: sum(pool.map(encode, blocks)))
    sample_mb = sum(len(text.encode()) for text in texts) / 1e6
    mb_per_s = sample_mb / seconds
    return {
        "threads": CORES,
        "sample_conversations": len(texts),
        "sample_mb": round(sample_mb, 1),
        "sample_tokens": tokens,
        "mb_per_s": round(mb_per_s, 2),
        "week_text_mb": round(week_mb, 1),
        "implied_s": round(week_mb / mb_per_s, 2),
    }


def _counted(texts: list[str]) -> int:
    return sum(count_tokens(text) for text in texts)


def counter_bound(sample: pl.DataFrame, week_mb: float) -> dict:
    """The stage's own counter (the bpe crate, ``count_tokens``) alone on the sample's transcripts, in a
    process per core as the stage runs it (started before the clock): MB/s and the seconds implied."""
    texts = render_transcripts(sample.get_column("messages")).to_list()
    blocks = [texts[start : start + 64] for start in range(0, len(texts), 64)]
    with process_pool(CORES) as pool:
        list(pool.map(_counted, [["warm up"]] * CORES))
        tokens, seconds = timed(lambda: sum(pool.map(_counted, blocks)))
    sample_mb = sum(len(text.encode()) for text in texts) / 1e6
    mb_per_s = sample_mb / seconds
    return {
        "processes": CORES,
        "sample_tokens": tokens,
        "mb_per_s": round(mb_per_s, 2),
        "implied_s": round(week_mb / mb_per_s, 2),
    }


def truncate_baseline(sample: pl.DataFrame, config: TruncationConfig) -> dict:
    """The sample scrubbed (the stage's first step), then truncated one conversation at a time (the
    previous implementation) and all at once."""
    scrubbed, scrub_s = timed(lambda: scrub_messages(sample)[0])
    one_at_a_time, before_s = timed(lambda: [truncate_messages(m, config) for m in scrubbed.get_column("messages").to_list()])
    at_once, after_s = timed(lambda: truncate_conversations(scrubbed, config))
    assert at_once.get_column("transcript").to_list() == [row[0] for row in one_at_a_time]
    return {
        "conversations": sample.height,
        "scrub_s": scrub_s,
        "row_by_row_s": before_s,
        "week_at_once_s": after_s,
        "speedup": round(before_s / after_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000, help="conversations per week")
    parser.add_argument("--weeks", type=int, default=3, help="weeks in the landing folder")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false", help="measure only the stages and the bound")
    parser.add_argument("--out", default="RESULTS.json", help="file beside this script for the results")
    args = parser.parse_args()
    weeks = [LAST_WEEK - dt.timedelta(days=7 * k) for k in reversed(range(args.weeks))]
    settings = PipelineSettings()  # the product's defaults: PII scrubbed, then head_tail:3000; exact dedupe
    config = settings.truncation()
    with tempfile.TemporaryDirectory(prefix="semtel-scale-") as tmp:
        landing, lake = Path(tmp) / "landing", Path(tmp) / "lake"
        generated = generate(landing, Path(tmp) / "truth", weeks, args.n)
        memory = TreeMemory()  # from here: the generator's processes are gone
        engine = PolarsEngine(str(lake))
        index = delta.table_uri(str(lake), INDEX_TABLE)
        ingest: dict = {}
        if args.baselines:
            full, ingest["every_file_s"] = timed(
                lambda: engine.ingest(LAST_WEEK, str(landing), partial(stream_landing, week_start=LAST_WEEK))
            )
            every_file = (week_digest(engine), full[1].rows, full[2])
            del full
        earlier = partial(stream_landing, week_start=weeks[0], index_uri=index)
        _, ingest["index_build_s"] = timed(lambda: engine.ingest(weeks[0], str(landing), earlier))  # an earlier week's run
        read = partial(stream_landing, week_start=LAST_WEEK, index_uri=index)
        indexed, ingest["indexed_s"] = timed(lambda: engine.ingest(LAST_WEEK, str(landing), read))
        conversations = indexed[0].rows
        if args.baselines:
            assert (week_digest(engine), indexed[1].rows) == every_file[:2]
            ingest["speedup"] = round(ingest["every_file_s"] / ingest["indexed_s"], 2)
            ingest["files_read"] = {"every_file": every_file[2], "indexed": indexed[2]}
            here = partial(stream_landing, week_start=LAST_WEEK, index_uri=index, parse_workers=1)
            serial, ingest["parsed_in_one_process_s"] = timed(lambda: engine.ingest(LAST_WEEK, str(landing), here))
            assert (week_digest(engine), serial[1].rows) == every_file[:2]
            ingest["parse_workers_speedup"] = round(ingest["parsed_in_one_process_s"] / ingest["indexed_s"], 2)
            del serial
        del indexed
        peak = {"ingest": peak_rss_gb()}
        tree = {"ingest": memory.take_gb()}
        pipeline = Pipeline(engine, settings)
        truncated, truncate_s = timed(lambda: pipeline.truncate(LAST_WEEK))
        peak["truncate"], tree["truncate"] = peak_rss_gb(), memory.take_gb()
        clusters, dedupe_s = timed(lambda: pipeline.dedupe(LAST_WEEK).clusters)
        peak["dedupe"], tree["dedupe"] = peak_rss_gb(), memory.take_gb()
        memory.close()
        dedupe = {"stage_s": dedupe_s, "clusters": clusters.frame.get_column("representative_id").n_unique()}
        if args.baselines:
            dedupe |= hashing_baseline(engine.read("conversations_truncated", LAST_WEEK))
        del truncated, clusters
        week = engine.read("conversations", LAST_WEEK)
        sample = even_sample(week)
        week_mb = week_text_mb(week)
        bound, counter = tokenizer_bound(sample, week_mb), counter_bound(sample, week_mb)
        baseline = truncate_baseline(sample, config) if args.baselines else None
    stages_s = round(ingest["indexed_s"] + truncate_s + dedupe_s, 1)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{round(os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30)} GiB",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "conversations_per_week": args.n,
        "weeks_in_landing": args.weeks,
        "generate_s": generated,
        "week_conversations": conversations,
        "ingest": ingest,
        "truncate": {
            "stage_s": truncate_s,
            "conversations_per_s": round(conversations / truncate_s),
            "tokenizer_bound": bound,
            "ratio_to_tokenizer_bound": round(truncate_s / bound["implied_s"], 2),
            "counter_bound": counter,
            "ratio_to_counter_bound": round(truncate_s / counter["implied_s"], 2),
            "one_at_a_time_vs_week_at_once": baseline,
        },
        "dedupe": dedupe,
        "ingest_truncate_dedupe_s": stages_s,
        "conversations_per_s": {
            "ingest": round(conversations / ingest["indexed_s"]),
            "truncate": round(conversations / truncate_s),
            "dedupe": round(conversations / dedupe_s),
            "ingest_truncate_dedupe": round(conversations / stages_s),
        },
        "peak_rss_gb_after": peak,
        "peak_process_tree_gb_during": tree,
    }
    (HERE / args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
