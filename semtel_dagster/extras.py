"""Optional features and the extras that install them.

The base install runs the demo (Polars, exact dedupe, the simulator); Spark, the local embedding model,
the embedding classifier and the evaluation pictures come with extras. Using one of those without its
extra is an error that names the extra, not a bare ``ModuleNotFoundError`` from deep inside a run.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """A feature was used whose optional dependencies are not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``module``, imported; or ``MissingExtra`` saying which extra installs ``feature``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{feature} needs the '{extra}' extra, which is not installed: pip install 'semtel[{extra}]' "
            f"(missing module: {exc.name or module})"
        ) from exc
