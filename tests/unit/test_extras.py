"""A feature whose extra is missing says which extra to install."""

from __future__ import annotations

import pytest

from semtel_dagster.extras import MissingExtra, require


def test_present_module_is_returned():
    assert require("json", "eval", "json").dumps([1]) == "[1]"


def test_missing_module_names_the_extra_and_the_feature():
    with pytest.raises(MissingExtra, match=r"the Spark engine needs the 'spark' extra.*semtel\[spark\].*no_such_module_xyz"):
        require("no_such_module_xyz", "spark", "the Spark engine")
