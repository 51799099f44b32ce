"""The taxonomy sample keeps every week x length stratum in proportion, and the held-out sample apart."""

import datetime as dt

import polars as pl

from semtel_dagster.core.taxonomy.sampling import STRATUM, discovery_samples, stratum_counts, with_strata


def _conversations() -> pl.DataFrame:
    """600 conversations over three weeks of 300 / 200 / 100, lengths spread evenly within each week."""
    rows = []
    for week, count in ((dt.date(2026, 11, 2), 300), (dt.date(2026, 11, 9), 200), (dt.date(2026, 11, 16), 100)):
        rows += [(f"{week}-{i:03d}", week, 10 + (i * 37) % 3000) for i in range(count)]
    return pl.DataFrame(rows, schema={"conversation_id": pl.String, "week_start": pl.Date, "n_chars": pl.Int64}, orient="row")


def test_every_week_and_length_keeps_its_share():
    sample, _ = discovery_samples(_conversations(), 60, 30, seed=7)
    assert 57 <= sample.height <= 63
    weeks = dict(sample.group_by("week_start").len().iter_rows())
    assert all(abs(weeks[w] - want) <= 1 for w, want in zip(sorted(weeks), [30, 20, 10]))
    counts = stratum_counts(sample)
    assert len(counts) == 9  # three weeks x three lengths, none left out
    population = stratum_counts(with_strata(_conversations()))
    for stratum, n in counts.items():
        assert abs(n - 60 * population[stratum] / 600) <= 1, stratum


def test_holdout_is_disjoint_stratified_and_the_draw_is_reproducible():
    sample, held = discovery_samples(_conversations(), 60, 30, seed=7)
    assert set(sample["conversation_id"]).isdisjoint(held["conversation_id"])
    assert 27 <= held.height <= 33 and held.get_column(STRATUM).n_unique() == 9
    again, _ = discovery_samples(_conversations(), 60, 30, seed=7)
    assert again["conversation_id"].to_list() == sample["conversation_id"].to_list()
    other, _ = discovery_samples(_conversations(), 60, 30, seed=8)
    assert other["conversation_id"].to_list() != sample["conversation_id"].to_list()


def test_a_small_input_is_sampled_whole_and_holdout_zero_is_empty():
    small = _conversations().head(40)
    sample, held = discovery_samples(small, 300, 0, seed=1)
    assert sample.height == 40 and held.height == 0
