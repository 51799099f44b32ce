"""The code location the backfill-order test loads: the weekly job with label reuse from earlier weeks on.

Resources come from the environment the test sets (``SEMTEL_LAKE``, ``SEMTEL_LANDING``,
``SEMTEL_ENDPOINTS``); the settings are fixed here, as a deployment would fix them, because an asset
backfill carries no run config.
"""

from semtel_dagster.definitions import build_definitions
from semtel_dagster.resources import PipelineSettings

CLASSIFIERS = ["topic", "satisfaction"]
REUSE_WEEKS = 3


def settings() -> PipelineSettings:
    return PipelineSettings(classifiers=CLASSIFIERS, reuse_labels_weeks=REUSE_WEEKS)


defs = build_definitions(settings=settings())
